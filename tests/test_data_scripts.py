"""The data-preparation scripts, run through their main() on tiny generated folders; a mistake in the input
is a user error (exit 2, one ``srkit: error:`` line) that leaves no output behind."""
import numpy as np
import pytest
from conftest import shared_path
from script_helpers import load_script, user_error

from srkit.data.file_backends import LmdbBackend, load_image
from srkit.data.image_io import read_image, write_image
from srkit.ops.imresize import bicubic_downscale


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / 'images'
    sizes = {'tall': (100, 70), 'wide': (36, 60)}
    for name, (h, w) in sizes.items():
        write_image(folder / f'{name}.png', rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return folder


def test_extract_subimages(images, tmp_path, capsys):
    script = load_script('data/extract_subimages.py')
    assert script.crop_positions(100, 32, 24, 4) == [0, 24, 48, 68]
    assert script.crop_positions(70, 32, 24, 20) == [0, 24]  # 14 pixels left over <= thresh 20
    assert script.crop_positions(20, 32, 24, 4) == []
    out = tmp_path / 'sub'
    argv = ['--input', str(images), '--output', str(out), '--crop-size', '32', '--step', '24', '--thresh-size', '4']
    script.main(argv)
    tall = read_image(images / 'tall.png')
    names = sorted(p.name for p in out.iterdir())
    assert len([n for n in names if n.startswith('tall_s')]) == 4 * 3  # rows 0,24,48,68 x cols 0,24,38
    assert len([n for n in names if n.startswith('wide_s')]) == 1 * 2  # rows 0 x cols 0,24 (4 left: not > 4)
    assert np.array_equal(read_image(out / 'tall_s004.png'), tall[24:56, 0:32])  # 3 per row: second row, first column
    assert np.array_equal(read_image(out / 'tall_s012.png'), tall[68:100, 38:70])
    before = (out / 'tall_s001.png').read_bytes()
    assert 'already exists' in user_error(script.main, argv, capsys)
    assert (out / 'tall_s001.png').read_bytes() == before
    assert 'must be positive' in user_error(script.main, [*argv[:2], '--output', str(tmp_path / 'x'), '--step', '0'],
                                            capsys)


def test_extract_subimages_with_workers_and_a_corrupt_image(images, tmp_path, capsys):
    script = load_script('data/extract_subimages.py')
    argv = ['--input', str(images), '--crop-size', '16', '--step', '16', '--workers', '2']
    script.main([*argv, '--output', str(tmp_path / 'ok')])
    assert len(list((tmp_path / 'ok').iterdir())) == 7 * 5 + 3 * 4  # thresh 0: every leftover gets a crop
    (images / 'broken.png').write_bytes(b'not a png')
    assert str(images / 'broken.png') in user_error(script.main, [*argv, '--output', str(tmp_path / 'bad')], capsys)
    assert not (tmp_path / 'bad').exists()  # no half-written output left in the way


def test_create_lmdb(images, tmp_path, capsys):
    script = load_script('data/create_lmdb.py')
    out = tmp_path / 'images.lmdb'
    script.main(['--input', str(images), '--output', str(out), '--batch', '1'])
    assert (out / 'meta_info.txt').read_text() == 'tall.png (100,70,3) 1\nwide.png (36,60,3) 1\n'
    backend = LmdbBackend(out)
    assert backend.keys() == ['tall', 'wide']
    for key in backend.keys():
        assert np.array_equal(load_image(backend, key), read_image(images / f'{key}.png'))
    assert 'already exists' in user_error(script.main, ['--input', str(images), '--output', str(out)], capsys)
    (images / 'tall.jpg').write_bytes((images / 'tall.png').read_bytes())
    message = user_error(script.main, ['--input', str(images), '--output', str(tmp_path / 'dup.lmdb')], capsys)
    assert "share the key 'tall'" in message and not (tmp_path / 'dup.lmdb').exists()


def test_generate_bicubic_basicsr_layout(images, tmp_path, capsys):
    script = load_script('data/generate_bicubic.py')
    out = tmp_path / 'set'
    script.main(['--hr', str(images), '--out', str(out), '--scales', '2', '3', '4'])
    assert sorted(p.name for p in out.iterdir()) == ['GTmod12', 'LRbicx2', 'LRbicx3', 'LRbicx4']
    gt = read_image(out / 'GTmod12' / 'tall.png')
    assert gt.shape == (96, 60, 3) and np.array_equal(gt, read_image(images / 'tall.png')[:96, :60])
    for s in (2, 3, 4):
        assert np.array_equal(read_image(out / f'LRbicx{s}' / 'tall.png'), bicubic_downscale(gt, s))
    assert 'already exists' in user_error(script.main, ['--hr', str(images), '--out', str(out), '--scales', '2'],
                                          capsys)
    assert '>= 2' in user_error(script.main, ['--hr', str(images), '--out', str(tmp_path / 'x'), '--scales', '1'],
                                capsys)


def test_generate_bicubic_edsr_layout_reproduces_set5(tmp_path):
    hr = shared_path('data', 'Set5', 'HR')
    reference = shared_path('data', 'Set5', 'LR_bicubic')
    script = load_script('data/generate_bicubic.py')
    out = tmp_path / 'Set5'
    script.main(['--hr', str(hr), '--out', str(out), '--style', 'edsr', '--scales', '2', '4'])
    assert np.array_equal(read_image(out / 'HR' / 'baby.png'), read_image(hr / 'baby.png'))
    for s in (2, 4):
        names = sorted(p.name for p in (out / 'LR_bicubic' / f'X{s}').iterdir())
        assert names == sorted(p.name for p in (reference / f'X{s}').iterdir()) and f'babyx{s}.png' in names
        for name in names:
            assert np.array_equal(read_image(out / 'LR_bicubic' / f'X{s}' / name),
                                  read_image(reference / f'X{s}' / name)), name
