"""Datasets: folder / meta_info / LMDB agree, crops stay aligned, randomness comes only from the key."""
import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, shared_path

from srkit.core.errors import DataError, OptionError
from srkit.core.registry import DATASET_REGISTRY
from srkit.data.hr_bicubic_dataset import HRBicubicDataset
from srkit.data.image_io import read_image, tensor_to_img, write_image
from srkit.data.loader import LoaderOptions, build_dataloader
from srkit.data.paired_image_dataset import PairedImageDataset
from srkit.data.samplers import EnlargedSampler
from srkit.data.single_image_dataset import SingleImageDataset
from srkit.ops.imresize import bicubic_downscale

SCALE = 2
SIZES = {'a': (40, 36), 'b': (32, 48), 'c': (50, 50)}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / 'scripts' / 'data' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def pairs(tmp_path_factory) -> Path:
    """hr/{a,b,c}.png and lr/{a,b,c}x2.png where LR = HR[::2, ::2], so patch alignment is checkable,
    plus the same images as LMDBs and a meta_info file listing two of them."""
    root = tmp_path_factory.mktemp('pairs')
    rng = np.random.default_rng(1)
    for name, (h, w) in SIZES.items():
        hr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        write_image(root / 'hr' / f'{name}.png', hr)
        write_image(root / 'lr' / f'{name}x2.png', hr[::SCALE, ::SCALE])
    create = load_script('create_lmdb').create_lmdb
    create(root / 'hr', root / 'hr.lmdb')
    create(root / 'lr', root / 'lr.lmdb')
    (root / 'meta_info.txt').write_text('a.png (40,36,3) 1\nc.png (50,50,3) 1\n')
    return root


def paired(root: Path, backend: str = 'disk', **kwargs) -> PairedImageDataset:
    suffix = '.lmdb' if backend == 'lmdb' else ''
    kwargs.setdefault('phase', 'val')
    return PairedImageDataset(dataroot_gt=str(root / f'hr{suffix}'), dataroot_lq=str(root / f'lr{suffix}'),
                              io_backend={'type': backend}, scale=SCALE, filename_tmpl='{}x2', **kwargs)


def same(x: dict, y: dict) -> bool:
    return torch.equal(x['lq'], y['lq']) and torch.equal(x['gt'], y['gt'])


def test_datasets_are_registered():
    for name in ('PairedImageDataset', 'SingleImageDataset', 'HRBicubicDataset'):
        assert name in DATASET_REGISTRY


def test_folder_meta_info_and_lmdb_give_identical_samples(pairs):
    train = {'phase': 'train', 'gt_size': 16, 'use_hflip': True, 'use_rot': True, 'use_channel_shuffle': True}
    for kwargs in ({}, train):
        folder, lmdb = paired(pairs, **kwargs), paired(pairs, 'lmdb', **kwargs)
        meta = paired(pairs, meta_info_file=str(pairs / 'meta_info.txt'), **kwargs)
        meta_lmdb = paired(pairs, 'lmdb', meta_info_file=str(pairs / 'meta_info.txt'), **kwargs)
        assert len(folder) == len(lmdb) == 3 and len(meta) == len(meta_lmdb) == 2
        key = (lambda i: i) if not kwargs else (lambda i: (i, 5))
        for i in range(3):
            assert same(folder[key(i)], lmdb[key(i)])
        assert same(meta[key(1)], folder[key(2)]) and same(meta_lmdb[key(1)], folder[key(2)])  # c.png
    sample = folder[(0, 5)]
    assert sample['gt_path'] == str(pairs / 'hr' / 'a.png') and sample['lq_path'] == str(pairs / 'lr' / 'ax2.png')
    assert lmdb[(0, 5)]['lq_path'] == f'{pairs / "lr.lmdb"}/ax2'


def test_whole_pair_for_int_keys(pairs):
    sample = paired(pairs)[2]
    hr = read_image(pairs / 'hr' / 'c.png')
    assert sample['lq'].dtype == torch.float32 and sample['gt'].shape == (3, 50, 50)
    assert np.array_equal(tensor_to_img(sample['gt']), hr)
    assert np.array_equal(tensor_to_img(sample['lq']), hr[::2, ::2])


def test_crop_by_gt_size_or_lq_size_is_aligned(pairs):
    by_gt = paired(pairs, phase='train', gt_size=16)
    by_lq = paired(pairs, phase='train', lq_size=8)
    for key in [(i, seed) for i in range(3) for seed in range(4)]:
        a, b = by_gt[key], by_lq[key]
        assert a['lq'].shape == (3, 8, 8) and a['gt'].shape == (3, 16, 16)
        assert same(a, b)  # the same draws, whichever size is given
        assert torch.equal(a['lq'], a['gt'][:, ::SCALE, ::SCALE])  # LR = HR[::2, ::2] survives the crop
    tops = {tuple(by_gt[(0, seed)]['gt'][:, 0, 0].tolist()) for seed in range(8)}
    assert len(tops) > 1  # the crop position really depends on the seed


def test_augmentation_is_a_function_of_the_seed(pairs):
    plain = paired(pairs, phase='train', gt_size=16)
    aug = paired(pairs, phase='train', gt_size=16, use_hflip=True, use_rot=True, use_channel_shuffle=True)
    assert same(aug[(1, 42)], aug[(1, 42)])
    assert any(not same(aug[(1, 42)], aug[(1, s)]) for s in range(43, 48))
    transforms = set()
    for seed in range(16):
        base, out = plain[(1, seed)], aug[(1, seed)]  # same seed -> same crop; then flips and a shuffle
        found = None
        for k in range(8):
            for perm in ([0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]):
                def t(x, k=k, perm=perm):
                    return torch.rot90(x if k < 4 else x.flip(-1), k % 4, (1, 2))[perm]
                if torch.equal(t(base['gt']), out['gt']) and torch.equal(t(base['lq']), out['lq']):
                    found = (k, tuple(perm))
        assert found is not None
        transforms.add(found)
    assert len(transforms) > 4


def test_samples_do_not_depend_on_worker_count(pairs):
    dataset = paired(pairs, 'lmdb', phase='train', gt_size=16, use_hflip=True, use_rot=True)
    dataset[0]  # the parent opens the LMDB before the workers fork
    batches = []
    for workers in (0, 2):
        options = LoaderOptions(batch_size_per_gpu=2, num_worker_per_gpu=workers, dataset_enlarge_ratio=4)
        sampler = EnlargedSampler(len(dataset), seed=3, enlarge_ratio=4)
        sampler.set_epoch(1)
        batches.append([b['gt'] for b in build_dataloader(dataset, options, sampler, 'train', seed=3)])
    assert len(batches[0]) == 6  # 12 samples, batch 2
    assert all(torch.equal(x, y) for x, y in zip(*batches))


def test_lr_hr_mismatch_names_both_files_and_sizes(tmp_path):
    write_image(tmp_path / 'hr' / 'x.png', np.zeros((40, 40, 3), np.uint8))
    write_image(tmp_path / 'lr' / 'x.png', np.zeros((15, 20, 3), np.uint8))
    dataset = PairedImageDataset(str(tmp_path / 'hr'), str(tmp_path / 'lr'), scale=2, phase='val')
    with pytest.raises(DataError) as info:
        dataset[0]
    message = str(info.value)
    for part in (str(tmp_path / 'hr' / 'x.png'), str(tmp_path / 'lr' / 'x.png'), '40x40', '15x20', '30x40'):
        assert part in message


def test_hr_larger_by_less_than_scale_is_cropped(tmp_path):
    hr = np.random.default_rng(2).integers(0, 256, (41, 43, 3), dtype=np.uint8)
    write_image(tmp_path / 'hr' / 'x.png', hr)
    write_image(tmp_path / 'lr' / 'x.png', hr[:40:2, :42:2])
    sample = PairedImageDataset(str(tmp_path / 'hr'), str(tmp_path / 'lr'), scale=2, phase='val')[0]
    assert np.array_equal(tensor_to_img(sample['gt']), hr[:40, :42])


def test_folder_errors_name_the_path(pairs, tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataError, match=f'{tmp_path / "empty"}: no HR images'):
        PairedImageDataset(str(tmp_path / 'empty'), str(pairs / 'lr'), scale=2, phase='val')
    with pytest.raises(DataError, match=f'{tmp_path / "missing"}: image folder does not exist'):
        PairedImageDataset(str(tmp_path / 'missing'), str(pairs / 'lr'), scale=2, phase='val')
    with pytest.raises(DataError, match=r"3 HR image\(s\) have no LR partner with filename_tmpl '\{\}'"):
        PairedImageDataset(str(pairs / 'hr'), str(pairs / 'lr'), scale=2, phase='val')
    with pytest.raises(DataError, match=f'{tmp_path / "hr.lmdb"}: LMDB folder does not exist'):
        PairedImageDataset(str(tmp_path / 'hr.lmdb'), str(pairs / 'lr.lmdb'), scale=2, io_backend={'type': 'lmdb'},
                           phase='val')
    with pytest.raises(DataError, match='not an LMDB folder'):
        PairedImageDataset(str(pairs / 'hr'), str(pairs / 'lr'), scale=2, io_backend={'type': 'lmdb'}, phase='val')
    (tmp_path / 'meta.txt').write_text('a.png\nzzz.png\n')
    with pytest.raises(DataError, match=f'{tmp_path / "meta.txt"}: 1 listed image.*zzz.png'):
        paired(pairs, meta_info_file=str(tmp_path / 'meta.txt'))


def test_lmdb_missing_key_is_named(pairs):
    from srkit.data.file_backends import LmdbBackend
    with pytest.raises(DataError, match=r'lr.lmdb: no key "nope" in the LMDB'):
        LmdbBackend(pairs / 'lr.lmdb').get('nope')


def test_option_errors(pairs):
    with pytest.raises(OptionError, match='exactly one of "gt_size" and "lq_size"'):
        paired(pairs, phase='train')
    with pytest.raises(OptionError, match=r'"gt_size" \(15\) must be a multiple of scale \(2\)'):
        paired(pairs, phase='train', gt_size=15)
    with pytest.raises(OptionError, match='"use_hflip" applies to training datasets only'):
        paired(pairs, use_hflip=True)
    with pytest.raises(OptionError, match='io_backend.type'):
        paired(pairs, 'redis')


def test_corrupt_image_fails_with_its_name_or_is_skipped(tmp_path, caplog):
    rng = np.random.default_rng(3)
    for name in ('a', 'b', 'c'):
        hr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        write_image(tmp_path / 'hr' / f'{name}.png', hr)
        write_image(tmp_path / 'lr' / f'{name}.png', hr[::2, ::2])
    (tmp_path / 'hr' / 'b.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
    strict = PairedImageDataset(str(tmp_path / 'hr'), str(tmp_path / 'lr'), scale=2, gt_size=16)
    with pytest.raises(DataError, match=str(tmp_path / 'hr' / 'b.png')):
        strict[(1, 0)]
    lenient = PairedImageDataset(str(tmp_path / 'hr'), str(tmp_path / 'lr'), scale=2, gt_size=16,
                                 skip_bad_images=True)
    with caplog.at_level(logging.WARNING, logger='srkit'):
        sample = lenient[(1, 0)]
    assert same(sample, strict[(2, 0)])  # served by the next image, same seed
    assert len(lenient.skipped) == 1 and str(tmp_path / 'hr' / 'b.png') in lenient.skipped[0]
    assert 'b.png' in caplog.text
    with pytest.raises(DataError):
        lenient[1]  # validation keys never skip


def test_single_image_dataset(pairs):
    dataset = SingleImageDataset(str(pairs / 'lr'))
    assert len(dataset) == 3
    sample = dataset[1]
    assert set(sample) == {'lq', 'lq_path'} and sample['lq'].shape == (3, 16, 24)
    assert sample['lq_path'] == str(pairs / 'lr' / 'bx2.png')


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_hr_bicubic_reproduces_set5_lrbicx(scale):
    gt_dir = shared_path('data', 'Set5', 'GTmod12')
    dataset = HRBicubicDataset(str(gt_dir), scale=scale, phase='val')
    assert len(dataset) == 5
    for i in range(5):
        sample = dataset[i]
        reference = read_image(gt_dir.parent / f'LRbicx{scale}' / Path(sample['gt_path']).name)
        diff = np.abs(tensor_to_img(sample['lq']).astype(int) - reference)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
        assert np.array_equal(tensor_to_img(sample['gt']), read_image(sample['gt_path']))


def test_hr_bicubic_training_patch(pairs):
    with pytest.raises(OptionError, match='multiple of scale'):
        HRBicubicDataset(str(pairs / 'hr'), scale=4, gt_size=18)
    dataset = HRBicubicDataset(str(pairs / 'hr'), scale=4, gt_size=16)
    sample = dataset[(2, 9)]
    gt = tensor_to_img(sample['gt'])
    assert gt.shape == (16, 16, 3) and sample['lq'].shape == (3, 4, 4)
    assert np.array_equal(tensor_to_img(sample['lq']), bicubic_downscale(gt, 4))
    assert same(sample, dataset[(2, 9)])


def test_folder_datasets_never_import_lmdb(pairs):
    code = ('import sys, srkit; from srkit.core.registry import DATASET_REGISTRY; DATASET_REGISTRY.names(); '
            'from srkit.data.paired_image_dataset import PairedImageDataset as P; '
            f'P({str(pairs / "hr")!r}, {str(pairs / "lr")!r}, scale=2, filename_tmpl="{{}}x2", phase="val")[0]; '
            'assert "lmdb" not in sys.modules, "lmdb was imported"')
    subprocess.run([sys.executable, '-c', code], check=True, cwd=REPO)


def test_cpu_prefetcher_runs_epochs_with_reset(pairs):
    from srkit.data.prefetchers import CPUPrefetcher, build_prefetcher
    loader = build_dataloader(paired(pairs), LoaderOptions(), None, 'val', seed=0)
    prefetcher = build_prefetcher(loader, 'cpu')
    assert isinstance(prefetcher, CPUPrefetcher)
    first = [b['lq_path'][0] for b in prefetcher]
    assert len(first) == 3 and prefetcher.next() is None
    prefetcher.reset()
    assert prefetcher.next()['lq_path'][0] == first[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDAPrefetcher needs a CUDA device')
def test_cuda_prefetcher_moves_batches(pairs):
    from srkit.data.prefetchers import CUDAPrefetcher
    loader = build_dataloader(paired(pairs), LoaderOptions(pin_memory=True), None, 'val', seed=0)
    prefetcher = CUDAPrefetcher(loader)
    batches = list(prefetcher)
    assert len(batches) == 3 and all(b['lq'].is_cuda for b in batches)
    assert torch.equal(batches[0]['gt'].cpu(), paired(pairs)[0]['gt'][None])


def test_cache_images_decodes_once_and_is_read_only(tmp_path, monkeypatch):
    from srkit.data import file_backends
    from srkit.data.image_io import write_image
    write_image(tmp_path / 'a.png', np.full((8, 8, 3), 7, np.uint8))
    backend = file_backends.open_backend({'type': 'disk', 'cache_images': True}, tmp_path)
    calls = []
    real = file_backends.decode_image
    monkeypatch.setattr(file_backends, 'decode_image', lambda *a, **k: calls.append(1) or real(*a, **k))
    first = file_backends.load_image(backend, 'a.png')
    second = file_backends.load_image(backend, 'a.png')
    assert first is second and len(calls) == 1
    with pytest.raises(ValueError):
        first[0, 0, 0] = 1
    plain = file_backends.open_backend({'type': 'disk'}, tmp_path)
    assert file_backends.load_image(plain, 'a.png') is not file_backends.load_image(plain, 'a.png')
