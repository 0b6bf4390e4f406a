"""ImageNetPairedDataset (MMA pre-training): class folders are found, the LR is bicubic of the whole photo
cropped at the patch's position, flips reach LR and HR alike, small photos are stretched, and a sample
depends on its key only."""
import dataclasses
import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, shared_path

from srkit.core.errors import DataError, OptionError
from srkit.core.registry import DATASET_REGISTRY
from srkit.data.image_io import read_image, write_image
from srkit.data.imagenet_paired_dataset import ImageNetPairedDataset, stretch_short_sides
from srkit.data.loader import LoaderOptions
from srkit.ops.imresize import imresize, modcrop

SCALE, PATCH = 2, 16
CLASS_IMAGES = {'n01/a.png': (41, 37), 'n01/b.JPEG': (30, 52), 'n02/c.png': (50, 44)}


@pytest.fixture(scope='module')
def tree(tmp_path_factory) -> Path:
    """Two class folders of noise photos (so a patch has exactly one place it can come from), plus files
    the dataset must ignore: a text file, an image one level too deep, a hidden folder."""
    root = tmp_path_factory.mktemp('imagenet')
    rng = np.random.default_rng(7)
    for key, (h, w) in CLASS_IMAGES.items():
        write_image(root / key, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (root / 'n02' / 'notes.txt').write_text('not an image')
    write_image(root / 'n02' / 'deeper' / 'd.png', np.zeros((20, 20, 3), np.uint8))
    write_image(root / '.cache' / 'e.png', np.zeros((20, 20, 3), np.uint8))
    return root


def dataset(root: Path, **kwargs) -> ImageNetPairedDataset:
    kwargs.setdefault('scale', SCALE)
    if kwargs.setdefault('phase', 'train') == 'train':
        kwargs.setdefault('gt_size', PATCH)
    return ImageNetPairedDataset(str(root), **kwargs)


def whole_pair(path: Path, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The expected float HR (modcropped) and its LR, srkit's MATLAB bicubic of the whole photo."""
    hr = modcrop(read_image(path), scale).astype(np.float32) / 255
    return hr, imresize(hr, 1 / scale).astype(np.float32)


def hwc(tensor: torch.Tensor) -> np.ndarray:
    return tensor.numpy().transpose(1, 2, 0)


def dihedral(img: np.ndarray, hflip: bool, vflip: bool, transpose: bool) -> np.ndarray:
    if hflip:
        img = img[:, ::-1]
    if vflip:
        img = img[::-1]
    return img.transpose(1, 0, 2) if transpose else img


def find_patch(patch: np.ndarray, img: np.ndarray, step: int) -> tuple[int, int] | None:
    """Where ``patch`` sits in ``img`` (top, left on multiples of ``step``), or None."""
    size = patch.shape[0]
    for top in range(0, img.shape[0] - size + 1, step):
        for left in range(0, img.shape[1] - size + 1, step):
            if np.array_equal(img[top:top + size, left:left + size], patch):
                return top, left
    return None


def test_registered_under_the_official_name():
    assert DATASET_REGISTRY.get('ImageNetPairedDataset') is ImageNetPairedDataset


def test_finds_images_one_level_of_class_folders_deep(tree):
    data = dataset(tree)
    assert data.keys == sorted(CLASS_IMAGES) and len(data) == 3
    assert data[(1, 0)]['gt_path'] == data[(1, 0)]['lq_path'] == str(tree / 'n01' / 'b.JPEG')


def test_flat_folder_is_the_case_of_no_class_folders(tmp_path):
    for name in ('x.png', 'y.png'):
        write_image(tmp_path / name, np.full((20, 24, 3), 9, np.uint8))
    assert dataset(tmp_path).keys == ['x.png', 'y.png']


def test_meta_info_lists_keys_relative_to_the_root(tree, tmp_path):
    (tmp_path / 'meta.txt').write_text('n02/c.png (50,44,3) 1\n')
    assert dataset(tree, meta_info_file=str(tmp_path / 'meta.txt')).keys == ['n02/c.png']
    (tmp_path / 'bad.txt').write_text('n03/zzz.png\n')
    with pytest.raises(DataError, match=f'{tmp_path / "bad.txt"}: 1 listed image.*n03/zzz.png'):
        dataset(tree, meta_info_file=str(tmp_path / 'bad.txt'))


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_validation_gives_the_whole_photo_and_its_float_bicubic(tree, scale):
    data = dataset(tree, scale=scale, phase='val')
    for index, key in enumerate(data.keys):
        hr, lr = whole_pair(tree / key, scale)
        sample = data[index]
        assert np.array_equal(hwc(sample['gt']), hr) and np.array_equal(hwc(sample['lq']), lr)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_training_lr_is_the_whole_photo_lr_cropped_at_the_patch(tree, scale):
    data = dataset(tree, scale=scale, gt_size=12)
    crop_differs = 0
    for index, seed in itertools.product(range(len(data)), range(4)):
        sample = data[(index, seed)]
        gt, lq = hwc(sample['gt']), hwc(sample['lq'])
        assert gt.shape == (12, 12, 3) and lq.shape == (12 // scale, 12 // scale, 3)
        assert sample['gt'].dtype == sample['lq'].dtype == torch.float32
        hr, lr = whole_pair(tree / data.keys[index], scale)
        position = find_patch(gt, hr, scale)
        assert position is not None
        top, left = position[0] // scale, position[1] // scale
        assert np.array_equal(lq, lr[top:top + 12 // scale, left:left + 12 // scale])
        crop_differs += np.abs(lq - imresize(gt, 1 / scale)).max() > 1e-3
    assert crop_differs == len(data) * 4  # the official order shows: the patch's own bicubic is another LR


def test_flips_and_transposition_reach_lr_and_hr_alike(tree):
    data = dataset(tree, use_hflip=True, use_rot=True)
    hr, lr = whole_pair(tree / data.keys[2], SCALE)
    seen = set()
    for seed in range(24):
        sample = data[(2, seed)]
        gt, lq = hwc(sample['gt']), hwc(sample['lq'])
        for flags in itertools.product((False, True), repeat=3):
            position = find_patch(gt, dihedral(hr, *flags), SCALE)
            if position is not None:
                top, left = position[0] // SCALE, position[1] // SCALE
                size = PATCH // SCALE
                assert np.array_equal(lq, dihedral(lr, *flags)[top:top + size, left:left + size])
                seen.add(flags)
                break
        else:
            pytest.fail(f'seed {seed}: the HR patch is no flip or transposition of a patch of the photo')
    assert len(seen) >= 6  # all 8 are reachable; 24 seeds show most of them


def test_a_sample_is_a_function_of_its_key(tree):
    first, second = dataset(tree, use_hflip=True, use_rot=True), dataset(tree, use_hflip=True, use_rot=True)
    for key in [(0, 5), (2, 11)]:
        a, b = first[key], second[key]
        assert torch.equal(a['lq'], b['lq']) and torch.equal(a['gt'], b['gt'])
    patches = {first[(0, seed)]['gt'].numpy().tobytes() for seed in range(8)}
    assert len(patches) > 1


def test_stretch_is_opencv_bilinear_with_centres_aligned():
    column = np.array([0, 1, 3], np.float32).reshape(3, 1, 1)
    out = stretch_short_sides(column, 4)
    # x = (d + 0.5) * 3/4 - 0.5 = -0.125, 0.625, 1.375, 2.125; outside the first..last pixel: the edge pixel
    assert np.allclose(out[:, 0, 0], [0, 0.625, 1.75, 3], atol=1e-6)
    assert out.shape == (4, 4, 1) and np.array_equal(out, np.repeat(out[:, :1], 4, axis=1))
    assert out.dtype == np.float32
    wide = np.random.default_rng(0).random((10, 30, 3), dtype=np.float32)
    assert stretch_short_sides(wide, 10) is wide  # no short side: untouched
    tall = stretch_short_sides(wide, 20)
    assert tall.shape == (20, 30, 3)
    assert np.array_equal(tall[0], wide[0]) and np.array_equal(tall[-1], wide[-1])  # edge rows replicated


def test_small_photo_is_stretched_before_the_lr_is_made(tmp_path):
    write_image(tmp_path / 'small.png', np.random.default_rng(4).integers(0, 256, (11, 40, 3), dtype=np.uint8))
    hr = stretch_short_sides(modcrop(read_image(tmp_path / 'small.png'), SCALE).astype(np.float32) / 255, PATCH)
    lr = imresize(hr, 1 / SCALE).astype(np.float32)
    assert hr.shape == (16, 40, 3)
    sample = dataset(tmp_path)[(0, 3)]
    position = find_patch(hwc(sample['gt']), hr, SCALE)
    assert position is not None and position[0] == 0
    left = position[1] // SCALE
    assert np.array_equal(hwc(sample['lq']), lr[:PATCH // SCALE, left:left + PATCH // SCALE])


def test_small_photo_refused_or_skipped_without_stretching(tmp_path):
    rng = np.random.default_rng(5)
    write_image(tmp_path / 'a_small.png', rng.integers(0, 256, (11, 40, 3), dtype=np.uint8))
    write_image(tmp_path / 'b_large.png', rng.integers(0, 256, (20, 40, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=f'{tmp_path / "a_small.png"}: 10x40 .*16x16 training patch'):
        dataset(tmp_path, stretch_small_images=False)[(0, 0)]
    lenient = dataset(tmp_path, stretch_small_images=False, skip_bad_images=True)
    assert torch.equal(lenient[(0, 0)]['gt'], lenient[(1, 0)]['gt'])  # served by the next photo
    assert 'a_small.png' in lenient.skipped[0]


def test_lmdb_gives_the_same_samples(tmp_path):
    spec = importlib.util.spec_from_file_location('create_lmdb', REPO / 'scripts' / 'data' / 'create_lmdb.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(6)
    for name in ('x', 'y'):
        write_image(tmp_path / 'flat' / f'{name}.png', rng.integers(0, 256, (24, 30, 3), dtype=np.uint8))
    module.create_lmdb(tmp_path / 'flat', tmp_path / 'flat.lmdb')
    disk, lmdb = dataset(tmp_path / 'flat'), dataset(tmp_path / 'flat.lmdb', io_backend={'type': 'lmdb'})
    for key in [(0, 1), (1, 2)]:
        assert torch.equal(disk[key]['lq'], lmdb[key]['lq']) and torch.equal(disk[key]['gt'], lmdb[key]['gt'])


def test_errors_name_the_folder_file_or_key(tmp_path):
    (tmp_path / 'empty' / 'n01').mkdir(parents=True)
    (tmp_path / 'empty' / 'n01' / 'readme.txt').write_text('')
    with pytest.raises(DataError, match=f'{tmp_path / "empty"}: no HR images found.*class sub-folders'):
        dataset(tmp_path / 'empty')
    with pytest.raises(DataError, match=f'{tmp_path / "missing"}: image folder does not exist'):
        dataset(tmp_path / 'missing')
    (tmp_path / 'bad' / 'n01').mkdir(parents=True)
    (tmp_path / 'bad' / 'n01' / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
    write_image(tmp_path / 'bad' / 'n01' / 'thin.png', np.zeros((1, 30, 3), np.uint8))
    bad = dataset(tmp_path / 'bad')
    with pytest.raises(DataError, match=str(tmp_path / 'bad' / 'n01' / 'broken.png')):
        bad[(0, 0)]
    with pytest.raises(DataError, match=f'{tmp_path / "bad" / "n01" / "thin.png"}: 1x30 .*shorter than scale 2'):
        bad[(1, 0)]
    with pytest.raises(OptionError, match=r'"gt_size" \(15\) must be a multiple of scale \(2\)'):
        dataset(tmp_path / 'bad', gt_size=15)
    with pytest.raises(OptionError, match='exactly one of "gt_size" and "lq_size"'):
        dataset(tmp_path / 'bad', gt_size=None)
    with pytest.raises(OptionError, match='"use_rot" applies to training datasets only'):
        dataset(tmp_path / 'bad', phase='val', use_rot=True)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_official_train_block_builds(tree, scale):
    path = shared_path('seed_options', 'MMA', 'options', 'train', 'MMA', f'train_MMA_x{scale}_pretrain.yml')
    block = yaml.safe_load(path.read_text())['datasets']['train']
    loader_keys = {field.name for field in dataclasses.fields(LoaderOptions)}
    arguments = {k: v for k, v in block.items() if k not in loader_keys | {'type'}}
    data = ImageNetPairedDataset(**{**arguments, 'dataroot_gt': str(tree), 'scale': scale, 'phase': 'train'})
    assert (data.gt_size, data.use_hflip, data.use_rot) == (64 * scale, True, True)
    sample = data[(0, 0)]  # the fixture's photos are smaller than the patch: stretched, as officially
    assert sample['gt'].shape == (3, 64 * scale, 64 * scale) and sample['lq'].shape == (3, 64, 64)
