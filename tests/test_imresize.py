"""MATLAB-faithful bicubic imresize: the benchmark LR files rebuilt, torch == numpy, shapes and edge cases."""
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

from srkit.ops.imresize import _contributions, bicubic_degrade, imresize, modcrop


@lru_cache(maxsize=None)
def read_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert('RGB'))


def to_nchw(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_edsr_lr_rebuilt_bit_for_bit(scale):
    """MATLAB's uint8 path (rounding between the passes) reproduces Set5 LR_bicubic exactly."""
    data = shared_path('data', 'Set5')
    for hr_path in sorted((data / 'HR').glob('*.png')):
        expected = read_rgb(data / 'LR_bicubic' / f'X{scale}' / f'{hr_path.stem}x{scale}.png')
        lr = bicubic_degrade(read_rgb(hr_path), scale, 'edsr')
        assert lr.dtype == np.uint8 and lr.shape == expected.shape
        np.testing.assert_array_equal(lr, expected, err_msg=f'{hr_path.name} x{scale}')


# Values (one channel of one pixel) in which bicubic_degrade(HR, s, 'basicsr') differs from the shipped
# LRbicx{s}: the figures docs/DATASETS.md states.
LRBIC_DIFFERENCES = {('Set5', 2): 31, ('Set5', 3): 0, ('Set5', 4): 1,
                     ('Set14', 2): 47, ('Set14', 3): 0, ('Set14', 4): 2}


@pytest.mark.parametrize('name, scale', sorted(LRBIC_DIFFERENCES))
def test_basicsr_lr_from_hr_matches_the_shipped_files_but_for_ties(name, scale):
    """The float pipeline with one rounding, from the original HR, rebuilds LRbicx{s} but for a few values,
    each one grey level off where the exact value lies within 1e-4 of a half: the files' generator rounded
    those ties the other way through its own float noise."""
    data = shared_path('data', name)
    differing = 0
    for hr_path in sorted((data / 'HR').glob('*.png')):
        hr = read_rgb(hr_path)
        gt = read_rgb(data / 'GTmod12' / hr_path.name)
        np.testing.assert_array_equal(modcrop(hr, 12), gt, err_msg=hr_path.name)
        expected = read_rgb(data / f'LRbicx{scale}' / hr_path.name)
        lr = bicubic_degrade(hr, scale, 'basicsr')
        assert lr.shape == expected.shape
        diff = lr.astype(int) - expected
        assert np.abs(diff).max() <= 1, hr_path.name
        exact = imresize(gt / 255.0, 1 / scale) * 255.0
        assert np.all(np.abs(exact[diff != 0] % 1 - 0.5) < 1e-4), f'{hr_path.name}: a mismatch is not a tie'
        differing += int((diff != 0).sum())
    assert differing == LRBIC_DIFFERENCES[name, scale]


def test_basicsr_style_crops_hr_to_gtmod12():
    data = shared_path('data', 'Set5')
    hr = read_rgb(data / 'HR' / 'woman.png')  # 228x344: not a multiple of 12
    assert hr.shape[0] % 12 or hr.shape[1] % 12
    np.testing.assert_array_equal(bicubic_degrade(hr, 4, 'basicsr'),
                                  bicubic_degrade(read_rgb(data / 'GTmod12' / 'woman.png'), 4, 'basicsr'))


CASES = [((37, 53, 3), 0.5), ((37, 53, 3), 1 / 3), ((40, 41, 3), 0.25), ((17, 23, 3), 2.0),
         ((17, 23, 3), 3.0), ((31, 29, 3), 0.37), ((31, 29, 3), (0.5, 1.7)), ((3, 2, 3), 0.25)]


@pytest.mark.parametrize('shape, scale', CASES)
def test_torch_matches_numpy(shape, scale):
    img = np.random.default_rng(0).random(shape)
    expected = imresize(img, scale)
    assert expected.dtype == np.float64
    out = imresize(to_nchw(img).float(), scale)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out[0].permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-5)
    out64 = imresize(to_nchw(img)[0], scale)  # CHW, float64
    np.testing.assert_allclose(out64.permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-12)


def test_batched_torch_equals_per_image():
    batch = torch.rand(4, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    for scale in (0.25, 1 / 3, 0.5, 2.0):
        out = imresize(batch, scale)
        for k in range(len(batch)):
            torch.testing.assert_close(out[k], imresize(batch[k], scale), rtol=0, atol=1e-6)


def test_shapes_and_sizes():
    img = np.zeros((7, 5, 3), np.uint8)
    assert imresize(img, 0.5).shape == (4, 3, 3)  # MATLAB: ceil(scale * size)
    assert imresize(img, 3).shape == (21, 15, 3)
    assert imresize(img[..., 0], output_shape=(9, 2)).shape == (9, 2)
    assert imresize(np.zeros((30, 30)), 0.1).shape == (3, 3)  # 0.1 * 30 is 3.0000000000000004 in floats
    assert imresize(torch.zeros(2, 3, 7, 5), (2, 0.5)).shape == (2, 3, 14, 3)


@pytest.mark.parametrize('scale', [0.25, 1 / 3, 0.5, 0.37, 2.0, 3.0, 4.0])
def test_constant_stays_constant_and_ramp_stays_linear(scale):
    """The weights of every output pixel sum to one; the cubic kernel reproduces linear ramps exactly."""
    const = np.full((23, 19, 3), 0.7)
    np.testing.assert_allclose(imresize(const, scale), 0.7, rtol=0, atol=1e-12)
    assert (imresize(np.full((13, 9), 77, np.uint8), scale) == 77).all()
    if scale > 1:  # away from the mirrored borders an upscaled ramp is the ramp sampled at MATLAB's centres
        ramp = np.tile(np.arange(20.0), (6, 1))
        out = imresize(ramp, scale)
        u = (np.arange(1, out.shape[1] + 1) / scale + 0.5 * (1 - 1 / scale)) - 1
        inner = (u > 2) & (u < 17)
        np.testing.assert_allclose(out[0, inner], u[inner], rtol=0, atol=1e-10)


def test_uint8_rounds_between_passes_smaller_scale_first():
    """uint8: MATLAB resizes the dimension with the smaller scale first and rounds after each pass."""
    img = np.random.default_rng(2).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    out = imresize(img, (2.0, 0.5))
    width_first = imresize(imresize(img, (1.0, 0.5)), (2.0, 1.0))
    height_first = imresize(imresize(img, (2.0, 1.0)), (1.0, 0.5))
    np.testing.assert_array_equal(out, width_first)
    assert (out != height_first).any()
    one_rounding = np.floor(imresize(img.astype(np.float64), (2.0, 0.5)) + 0.5).clip(0, 255)
    assert (out != one_rounding).any()


def test_uint8_rounds_halves_away_from_zero():
    # x2 downscale weights are multiples of 1/256, so integer images often land exactly on halves
    img = np.random.default_rng(3).integers(0, 256, (64, 64), dtype=np.uint8)
    float_out = imresize(img.astype(np.float64), (1.0, 0.5))
    ties = float_out % 1 == 0.5
    assert ties.sum() >= 2
    expected = np.where(ties, np.floor(float_out) + 1, np.round(float_out)).clip(0, 255)
    np.testing.assert_array_equal(imresize(img, (1.0, 0.5)), expected)
    assert (expected != np.round(float_out).clip(0, 255)).any()  # numpy's half-to-even would differ


def test_tiny_input_wraps_mirror_padding():
    img = np.arange(6, dtype=np.float64).reshape(2, 3)  # kernel far wider than the image
    out = imresize(img, 0.25)
    assert out.shape == (1, 1) and 0 <= out[0, 0] <= 5


def test_tables_are_cached():
    _contributions.cache_clear()
    imresize(np.zeros((16, 16)), 0.5)
    imresize(np.zeros((16, 16)), 0.5)
    info = _contributions.cache_info()
    assert info.misses == 1 and info.hits >= 1  # both dimensions and the second call share one table


def test_modcrop_numpy_and_torch():
    assert modcrop(np.zeros((13, 26, 3)), 12).shape == (12, 24, 3)
    assert modcrop(np.zeros((13, 26)), 4).shape == (12, 24)
    assert modcrop(torch.zeros(2, 3, 13, 26), 12).shape == (2, 3, 12, 24)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match='exactly one'):
        imresize(np.zeros((4, 4)), 0.5, output_shape=(2, 2))
    with pytest.raises(ValueError, match='exactly one'):
        imresize(np.zeros((4, 4)))
    with pytest.raises(TypeError, match='int16'):
        imresize(np.zeros((4, 4), np.int16), 0.5)
    with pytest.raises(TypeError, match='float'):
        imresize(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError, match='style'):
        bicubic_degrade(np.zeros((24, 24, 3), np.uint8), 2, 'opencv')
