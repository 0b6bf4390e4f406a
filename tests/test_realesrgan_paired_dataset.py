"""RealESRGANPairedDataset: Real-ESRGAN's pair list (``gt_path, lq_path`` per line, sub-folders allowed), else pairs
by name as PairedImageDataset."""
from __future__ import annotations

import numpy as np
import pytest

from srkit.core.errors import DataError
from srkit.data.image_io import write_image
from srkit.data.realesrgan_paired_dataset import RealESRGANPairedDataset


def _write(path, h, w, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture
def pairs(tmp_path):
    for i in range(3):
        _write(tmp_path / 'gt' / 'part1' / f'img{i}.png', 32, 40, i)
        _write(tmp_path / 'lq' / 'part1' / f'img{i}_x2.png', 16, 20, 10 + i)
    listing = tmp_path / 'pairs.txt'
    listing.write_text('\n'.join(f'part1/img{i}.png, part1/img{i}_x2.png' for i in (2, 0)) + '\n')
    return tmp_path, listing


def test_the_pair_list_decides_which_files_pair_in_its_order(pairs):
    root, listing = pairs
    dataset = RealESRGANPairedDataset(str(root / 'gt'), str(root / 'lq'), 2, meta_info=str(listing), gt_size=16,
                                      use_hflip=True)
    assert len(dataset) == 2
    sample = dataset[(0, 123)]
    assert sample['gt'].shape == (3, 16, 16) and sample['lq'].shape == (3, 8, 8)
    assert sample['gt_path'].endswith('part1/img2.png') and sample['lq_path'].endswith('part1/img2_x2.png')
    whole = RealESRGANPairedDataset(str(root / 'gt'), str(root / 'lq'), 2, meta_info=str(listing), phase='val')[1]
    assert whole['gt'].shape == (3, 32, 40) and whole['lq_path'].endswith('img0_x2.png')


def test_a_bad_pair_list_names_the_line_or_the_missing_file(pairs):
    root, listing = pairs
    listing.write_text('part1/img0.png part1/img0_x2.png\n')
    with pytest.raises(DataError, match=r'pairs.txt:1: expected "gt_path, lq_path"'):
        RealESRGANPairedDataset(str(root / 'gt'), str(root / 'lq'), 2, meta_info=str(listing), phase='val')
    listing.write_text('part1/img0.png, part1/img9_x2.png\n')
    with pytest.raises(DataError, match='img9_x2.png .*is not there'):
        RealESRGANPairedDataset(str(root / 'gt'), str(root / 'lq'), 2, meta_info=str(listing), phase='val')


def test_without_a_pair_list_names_pair_through_filename_tmpl(tmp_path):
    for i in range(2):
        _write(tmp_path / 'gt' / f'a{i}.png', 16, 16, i)
        _write(tmp_path / 'lq' / f'a{i}x2.png', 8, 8, i)
    dataset = RealESRGANPairedDataset(str(tmp_path / 'gt'), str(tmp_path / 'lq'), 2, filename_tmpl='{}x2',
                                      phase='val')
    assert [dataset[i]['lq_path'].rsplit('/', 1)[1] for i in range(2)] == ['a0x2.png', 'a1x2.png']


def test_a_meta_info_list_may_name_images_in_sub_folders(tmp_path):
    """Real-ESRGAN's meta_info files list paths like DF2K_HR_sub/0001_s001.png, relative to dataroot_gt."""
    from srkit.data.realesrgan_dataset import RealESRGANDataset
    from tests.test_gan_models import KERNELS

    _write(tmp_path / 'gt' / 'DF2K_HR_sub' / 'a.png', 40, 40, 0)
    _write(tmp_path / 'gt' / 'other.png', 40, 40, 1)
    listing = tmp_path / 'meta_info.txt'
    listing.write_text('DF2K_HR_sub/a.png\n')
    dataset = RealESRGANDataset(str(tmp_path / 'gt'), meta_info=str(listing), **KERNELS)
    assert len(dataset) == 1 and dataset[(0, 5)]['gt_path'].endswith('DF2K_HR_sub/a.png')
    listing.write_text('DF2K_HR_sub/b.png\n')
    with pytest.raises(DataError, match='1 listed image.*DF2K_HR_sub/b.png'):
        RealESRGANDataset(str(tmp_path / 'gt'), meta_info=str(listing), **KERNELS)
