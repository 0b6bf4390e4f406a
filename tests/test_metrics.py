"""PSNR/SSIM: REFERENCE.md's bicubic rows reproduced, torch == float64 reference, BasicSR-compatible API."""
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

from srkit.core.registry import METRIC_REGISTRY
from srkit.metrics.color import rgb2ycbcr, rgb_to_y, ycbcr2rgb
from srkit.metrics.psnr_ssim import calculate_psnr, calculate_ssim, psnr_reference, ssim_reference
from srkit.ops.imresize import imresize

# REFERENCE.md, "Measured" table, bicubic rows: (PSNR, SSIM) on Y, crop_border = scale.
BICUBIC = {('Set5', 2): (33.6609, 0.9309), ('Set5', 3): (30.3847, 0.8691), ('Set5', 4): (28.3973, 0.8115),
           ('Set14', 2): (30.3182, 0.8700), ('Set14', 3): (27.6325, 0.7762), ('Set14', 4): (26.0881, 0.7050)}


@lru_cache(maxsize=None)
def read_rgb(path: Path) -> np.ndarray:
    """RGB uint8; grayscale files (Set14 HR bridge) come back as gray repeated to 3 channels."""
    return np.asarray(Image.open(path).convert('RGB'))


def to_nchw(img: np.ndarray) -> torch.Tensor:
    arr = img[..., None] if img.ndim == 2 else img
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float()[None]


def bicubic_sr(lr: np.ndarray, scale: int) -> np.ndarray:
    """LR upscaled back with the MATLAB bicubic (float), rounded to the uint8 a user would save."""
    return np.clip(np.floor(imresize(lr / 255.0, float(scale)) * 255.0 + 0.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize('name', ['Set5', 'Set14'])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_bicubic_rows_of_reference_table(name, scale):
    """Measured: every row equals REFERENCE.md to its 4 printed decimals; torch == reference to ~1e-14."""
    data = shared_path('data', name)
    psnrs, ssims = [], []
    for gt_path in sorted((data / 'GTmod12').glob('*.png')):
        gt = read_rgb(gt_path)
        sr = bicubic_sr(read_rgb(data / f'LRbicx{scale}' / gt_path.name), scale)
        psnr = calculate_psnr(to_nchw(sr), to_nchw(gt), crop_border=scale, test_y_channel=True)
        ssim = calculate_ssim(to_nchw(sr), to_nchw(gt), crop_border=scale, test_y_channel=True)
        assert psnr.dtype == torch.float64 and psnr.shape == (1,) and ssim.shape == (1,)
        assert abs(psnr.item() - psnr_reference(sr, gt, scale, test_y_channel=True)) < 1e-4, gt_path.name
        assert abs(ssim.item() - ssim_reference(sr, gt, scale, test_y_channel=True)) < 1e-6, gt_path.name
        psnrs.append(psnr.item())
        ssims.append(ssim.item())
    want_psnr, want_ssim = BICUBIC[(name, scale)]
    assert abs(np.mean(psnrs) - want_psnr) < 1e-3  # REFERENCE.md asks 0.01 dB
    assert abs(np.mean(ssims) - want_ssim) < 1e-4  # and 0.0005


def test_grayscale_scored_as_gray_repeated_to_rgb():
    """Set14's bridge is grayscale: a 1-channel image is scored as its 3-channel repeat."""
    hr = np.asarray(Image.open(shared_path('data', 'Set14', 'HR', 'bridge.png')))
    assert hr.ndim == 2
    gt = hr[:252, :252]
    sr = bicubic_sr(imresize(gt, 0.5), 2)
    rgb_sr, rgb_gt = np.repeat(sr[..., None], 3, 2), np.repeat(gt[..., None], 3, 2)
    for metric, reference in ((calculate_psnr, psnr_reference), (calculate_ssim, ssim_reference)):
        want = reference(rgb_sr, rgb_gt, 2, test_y_channel=True)
        assert reference(sr, gt, 2, test_y_channel=True) == pytest.approx(want, abs=1e-10)
        assert metric(to_nchw(sr), to_nchw(gt), 2, True).item() == pytest.approx(want, abs=1e-10)
        assert metric(to_nchw(rgb_sr), to_nchw(rgb_gt), 2, True).item() == pytest.approx(want, abs=1e-10)


def literal_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al.'s ssim.m line by line: a 2-D 11x11 window, filter2 'valid'."""
    grid = np.arange(-5.0, 6.0)
    window = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) / (2 * 1.5 ** 2))
    window /= window.sum()
    windows = np.lib.stride_tricks.sliding_window_view

    def filter2(x):
        return np.einsum('ijkl,kl->ij', windows(x, (11, 11)), window)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = filter2(a), filter2(b)
    var_a, var_b, cov = filter2(a * a) - mu_a ** 2, filter2(b * b) - mu_b ** 2, filter2(a * b) - mu_a * mu_b
    return float(np.mean(((2 * mu_a * mu_b + c1) * (2 * cov + c2))
                         / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))))


def test_ssim_matches_literal_matlab_definition_per_channel():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (30, 27, 3)).astype(np.uint8)
    sr = np.clip(gt + rng.normal(0, 12, gt.shape), 0, 255).round().astype(np.uint8)
    a, b = sr.astype(np.float64)[2:-2, 2:-2], gt.astype(np.float64)[2:-2, 2:-2]
    want = np.mean([literal_ssim(a[..., c], b[..., c]) for c in range(3)])
    assert ssim_reference(sr, gt, 2) == pytest.approx(want, abs=1e-12)
    assert calculate_ssim(to_nchw(sr), to_nchw(gt), 2).item() == pytest.approx(want, abs=1e-12)
    want_psnr = 10 * np.log10(255 ** 2 / np.mean((a - b) ** 2))
    assert psnr_reference(sr, gt, 2) == pytest.approx(want_psnr, abs=1e-12)
    assert calculate_psnr(to_nchw(sr), to_nchw(gt), 2).item() == pytest.approx(want_psnr, abs=1e-12)


def test_batch_gives_one_value_per_image_in_any_float_dtype():
    gen = torch.Generator().manual_seed(0)
    gt = torch.randint(0, 256, (3, 3, 40, 36), generator=gen).double()
    sr = (gt + torch.randn(gt.shape, generator=gen, dtype=torch.float64) * 8).clamp(0, 255).round()
    sr[1] = gt[1]
    for metric in (calculate_psnr, calculate_ssim):
        batch = metric(sr, gt, crop_border=3, test_y_channel=True)
        assert batch.dtype == torch.float64 and batch.shape == (3,)
        singles = torch.cat([metric(sr[k:k + 1], gt[k:k + 1], 3, True) for k in range(3)])
        torch.testing.assert_close(batch, singles, rtol=0, atol=1e-12)
        for dtype in (torch.float32, torch.float16):  # integer values up to 255 are exact in both
            torch.testing.assert_close(metric(sr.to(dtype), gt.to(dtype), 3, True), batch, rtol=0, atol=1e-12)
    assert calculate_psnr(sr, gt)[1] == float('inf')
    assert calculate_ssim(sr, gt)[1].item() == pytest.approx(1.0, abs=1e-12)
    assert torch.isfinite(calculate_psnr(sr, gt)[[0, 2]]).all()


def test_registered_under_basicsr_names_and_accepts_their_options():
    assert METRIC_REGISTRY.get('calculate_psnr') is calculate_psnr is METRIC_REGISTRY.get('psnr')
    assert METRIC_REGISTRY.get('calculate_ssim') is calculate_ssim is METRIC_REGISTRY.get('ssim')
    sr, gt = torch.full((1, 3, 16, 16), 100.0), torch.full((1, 3, 16, 16), 110.0)
    plain = calculate_psnr(sr, gt, crop_border=2)
    assert plain.item() == pytest.approx(10 * np.log10(255 ** 2 / 100))
    with pytest.raises(TypeError, match='crop_boder'):
        calculate_ssim(sr, gt, crop_boder=2)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r'\(1, 3, 16, 16\).*\(1, 3, 16, 15\)'):
        calculate_psnr(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 15))
    with pytest.raises(ValueError, match=r'\(8, 8, 3\).*\(8, 9, 3\)'):
        psnr_reference(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)), 0)
    with pytest.raises(ValueError, match='11x11'):
        calculate_ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16), crop_border=3)


def test_rgb2ycbcr_matches_matlab_values():
    rgb = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [10, 200, 30]]], np.float64)
    ycc = rgb2ycbcr(rgb)
    np.testing.assert_allclose(ycc[0, 0], [16, 128, 128], atol=1e-9)
    np.testing.assert_allclose(ycc[0, 1], [235, 128, 128], atol=1e-9)
    np.testing.assert_allclose(ycc[0, 2], [81.481, 90.203, 240.0], atol=1e-9)
    np.testing.assert_allclose(rgb_to_y(rgb), ycc[..., 0], atol=1e-12)
    np.testing.assert_allclose(ycbcr2rgb(ycc), rgb, atol=1e-9)
    tensor = to_nchw(rgb).double()
    np.testing.assert_allclose(rgb_to_y(tensor)[0, 0].numpy(), ycc[..., 0], atol=1e-12)
    np.testing.assert_allclose(rgb2ycbcr(tensor)[0].permute(1, 2, 0).numpy(), ycc, atol=1e-12)
    np.testing.assert_allclose(ycbcr2rgb(rgb2ycbcr(tensor)).numpy(), tensor.numpy(), atol=1e-9)
