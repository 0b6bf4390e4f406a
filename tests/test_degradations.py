"""Real-ESRGAN's degradations: kernels, batch ops, DiffJPEG, the second-order pipeline, the pair pool, the dataset."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path
from PIL import Image

from srkit.core.errors import CheckpointError, DataError
from srkit.core.registry import DATASET_REGISTRY
from srkit.data import degradations as D
from srkit.data.jpeg import diff_jpeg
from srkit.data.realesrgan_degradation import SecondOrderDegradation, TrainingPairPool, paired_random_crop_batch

GOLDEN = Path(__file__).parent / 'fixtures' / 'realesrgan' / 'official_golden.pt'
KERNEL_LIST = list(D.KERNEL_TYPES)
KERNEL_PROB = [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]
# the top-level options of Real-ESRGAN's (and EIMN's) x4plus files
PIPELINE = dict(resize_prob=[0.2, 0.7, 0.1], resize_range=[0.15, 1.5], gaussian_noise_prob=0.5, noise_range=[1, 30],
                poisson_scale_range=[0.05, 3], gray_noise_prob=0.4, jpeg_range=[30, 95], second_blur_prob=0.8,
                resize_prob2=[0.3, 0.4, 0.3], resize_range2=[0.3, 1.2], gaussian_noise_prob2=0.5,
                noise_range2=[1, 25], poisson_scale_range2=[0.05, 2.5], gray_noise_prob2=0.4, jpeg_range2=[30, 95])
DATASET = dict(blur_kernel_size=21, kernel_list=KERNEL_LIST, kernel_prob=KERNEL_PROB, sinc_prob=0.1,
               blur_sigma=[0.2, 3], betag_range=[0.5, 4], betap_range=[1, 2], blur_kernel_size2=21,
               kernel_list2=KERNEL_LIST, kernel_prob2=KERNEL_PROB, sinc_prob2=0.1, blur_sigma2=[0.2, 1.5],
               betag_range2=[0.5, 4], betap_range2=[1, 2], final_sinc_prob=0.8)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _second_moments(kernel: np.ndarray) -> tuple[float, float]:
    half = kernel.shape[0] // 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    return float((kernel * x ** 2).sum()), float((kernel * y ** 2).sum())


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def _pillow_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, 'JPEG', quality=quality)
    return np.asarray(Image.open(buffer).convert('RGB'))


def _synthetic_photo(h: int, w: int) -> np.ndarray:
    """Smooth shading, hard edges, fine stripes and a mild texture: what JPEG is made for, without ../shared."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(0)
    texture = F.avg_pool2d(torch.from_numpy(rng.random((1, 3, h + 2, w + 2))), 3, stride=1).numpy()[0]
    img = np.stack([0.5 + 0.4 * np.sin(6 * x + 2 * y), 0.3 + 0.5 * y, 0.6 - 0.3 * x], -1)
    img[h // 3: 2 * h // 3, w // 4: w // 2] = (0.9, 0.2, 0.1)
    img[h // 2:, w // 2:] += 0.2 * np.sin(2 * np.pi * np.arange(w - w // 2) / 2.6)[:, None]  # fine vertical stripes
    img = img + 0.15 * (texture.transpose(1, 2, 0) - 0.5)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float().unsqueeze(0) / 255


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    return (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


# ------------------------------------------------------------------------------------------------- kernels

@pytest.mark.parametrize('kind', D.KERNEL_TYPES)
@pytest.mark.parametrize('size', [7, 21])
def test_every_kernel_type_sums_to_one_with_the_asked_size(kind, size):
    for seed in range(5):
        kernel = D.random_mixed_kernels(np.random.default_rng(seed), [kind], [1.0], size, (0.2, 3), (0.5, 4), (1, 2))
        assert kernel.shape == (size, size)
        assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
        assert (kernel >= 0).all() and kernel.argmax() == size * size // 2  # peaked at the centre


@pytest.mark.parametrize('kind', ['iso', 'generalized_iso', 'plateau_iso'])
def test_isotropic_kernels_are_symmetric_in_every_direction(kind):
    kernel = D.random_mixed_kernels(np.random.default_rng(1), [kind], [1.0], 21, (0.5, 3), (0.5, 4), (1, 2))
    np.testing.assert_allclose(kernel, kernel.T, atol=1e-15)
    np.testing.assert_allclose(kernel, kernel[::-1], atol=1e-15)


@pytest.mark.parametrize('kind', ['aniso', 'generalized_aniso', 'plateau_aniso'])
def test_anisotropic_kernels_are_point_symmetric_only(kind):
    kernel = D.random_mixed_kernels(np.random.default_rng(2), [kind], [1.0], 21, (0.5, 3), (0.5, 4), (1, 2))
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-15)
    assert np.abs(kernel - kernel.T).max() > 1e-4


@pytest.mark.parametrize('sigma', [1.0, 1.5, 2.5])
def test_isotropic_gaussian_sigma_is_the_measured_second_moment(sigma):
    var_x, var_y = _second_moments(D.bivariate_gaussian(21, sigma))
    assert var_x == pytest.approx(sigma ** 2, rel=0.02)
    assert var_y == pytest.approx(sigma ** 2, rel=0.02)


def test_anisotropic_gaussian_axes_and_rotation():
    var_x, var_y = _second_moments(D.bivariate_gaussian(21, 2.5, 1.0, 0.0))
    assert (var_x, var_y) == (pytest.approx(6.25, rel=0.03), pytest.approx(1.0, rel=0.03))
    turned = D.bivariate_gaussian(21, 2.5, 1.0, math.pi / 2)
    np.testing.assert_allclose(turned, D.bivariate_gaussian(21, 2.5, 1.0, 0.0).T, atol=1e-12)


def test_generalized_gaussian_with_beta_one_is_the_gaussian_and_beta_shapes_it():
    np.testing.assert_allclose(D.bivariate_generalized_gaussian(21, 2.0, 1.2, 0.4, 1.0),
                               D.bivariate_gaussian(21, 2.0, 1.2, 0.4), atol=1e-15)
    flat_top = D.bivariate_generalized_gaussian(21, 2.0, beta=4.0)
    peaked = D.bivariate_generalized_gaussian(21, 2.0, beta=0.5)
    assert flat_top[10, 11] / flat_top[10, 10] > peaked[10, 11] / peaked[10, 10]


@pytest.mark.parametrize('cutoff, size', [(math.pi / 3, 7), (1.3, 13), (math.pi / 5, 21)])
def test_sinc_kernel_sums_to_one_and_pads_centred(cutoff, size):
    kernel = D.circular_lowpass_kernel(cutoff, size, pad_to=21)
    assert kernel.shape == (21, 21)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(kernel, kernel.T, atol=1e-15)
    pad = (21 - size) // 2
    assert not kernel[:pad].any() and not kernel[:, 21 - pad:].any()
    assert kernel.argmax() == 21 * 21 // 2 and kernel.min() < 0  # the ringing lobes of a sinc


def test_kernels_filter2d_and_usm_match_basicsr():
    golden = torch.load(GOLDEN, weights_only=True)
    for name, (call, expected) in golden['kernels'].items():
        args, kwargs = call['args'], call['kwargs']
        if call['function'] == 'circular_lowpass_kernel':
            mine = D.circular_lowpass_kernel(*args, pad_to=kwargs.get('pad_to'))
            tolerance = 1e-7
        else:
            function = {'bivariate_Gaussian': D.bivariate_gaussian, 'bivariate_plateau': D.bivariate_plateau,
                        'bivariate_generalized_Gaussian': D.bivariate_generalized_gaussian}[call['function']]
            size, sigma_x, sigma_y, theta, *beta = args
            mine = function(size, sigma_x, None if kwargs['isotropic'] else sigma_y, theta, *beta)
            tolerance = 1e-12
        np.testing.assert_allclose(mine, expected.numpy(), atol=tolerance, err_msg=name)
    torch.testing.assert_close(D.filter2d(golden['filter_input'], golden['filter_kernels']), golden['filter_each'],
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(D.filter2d(golden['filter_input'], golden['filter_kernels'][:1]),
                               golden['filter_shared'], atol=1e-6, rtol=0)
    torch.testing.assert_close(D.usm_sharp(golden['usm_input']), golden['usm_out'], atol=1e-5, rtol=0)


def test_random_kernels_depend_only_on_the_generator():
    def draw(seed):
        return D.random_mixed_kernels(np.random.default_rng(seed), KERNEL_LIST, KERNEL_PROB, 21, (0.2, 3), (0.5, 4),
                                      (1, 2))
    np.testing.assert_array_equal(draw(7), draw(7))
    assert not np.array_equal(draw(7), draw(8))


@pytest.mark.parametrize('changes, option', [
    ({'blur_kernel_size': 20}, 'blur_kernel_size must be odd'),
    ({'blur_kernel_size2': 1}, 'blur_kernel_size2 must be odd'),
    ({'kernel_list': ['iso', 'gauss']}, 'kernel_list has unknown'),
    ({'kernel_list2': ['box'], 'kernel_prob2': [1.0]}, 'kernel_list2 has unknown'),
    ({'kernel_prob': [0.5, 0.5]}, r'kernel_prob must have 6 probabilities \(one per entry of kernel_list\), got 2'),
    ({'kernel_prob2': [0.5, 0.25, 0.12, 0.03, 0.12, 0.03]}, 'kernel_prob2 must be non-negative probabilities summing'),
    ({'blur_sigma': [3, 0.2]}, 'blur_sigma must have min <= max'),
    ({'blur_sigma2': [0, 1.5]}, 'blur_sigma2 must be positive'),
    ({'betag_range': [1.5, 4]}, 'betag_range must contain 1'),
    ({'betap_range2': [2, 1]}, 'betap_range2 must have min <= max'),
    ({'sinc_prob': 1.2}, 'sinc_prob must be a probability'),
    ({'final_sinc_prob': -0.1}, 'final_sinc_prob must be a probability'),
])
def test_bad_kernel_options_name_the_option(tmp_path, changes, option):
    _write_images(tmp_path, [(40, 40)])
    with pytest.raises(ValueError, match=option):
        DATASET_REGISTRY.get('RealESRGANDataset')(dataroot_gt=str(tmp_path), **{**DATASET, **changes})


# ------------------------------------------------------------------------------------------- batch operations

def test_filter2d_pulse_is_identity_and_per_sample_kernels_are_per_image_convolutions():
    img = torch.rand(3, 3, 24, 30, generator=_generator())
    pulse = torch.zeros(3, 21, 21)
    pulse[:, 10, 10] = 1
    torch.testing.assert_close(D.filter2d(img, pulse), img, atol=0, rtol=0)
    kernels = torch.from_numpy(np.stack([D.bivariate_gaussian(21, 1.0 + i, 0.7, 0.3 * i) for i in range(3)])).float()
    out = D.filter2d(img, kernels)
    for i in range(3):
        padded = F.pad(img[i:i + 1], (10, 10, 10, 10), mode='reflect')
        expected = F.conv2d(padded.transpose(0, 1), kernels[i].view(1, 1, 21, 21)).transpose(0, 1)
        torch.testing.assert_close(out[i:i + 1], expected, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match='odd square'):
        D.filter2d(img, torch.ones(3, 4, 4))
    with pytest.raises(ValueError, match='2 kernels for a batch of 3'):
        D.filter2d(img, kernels[:2])


def test_gaussian_noise_has_the_asked_sigma_and_grey_noise_is_equal_across_channels():
    img = torch.full((4, 3, 64, 64), 0.5)
    sigma = torch.tensor([2.0, 8.0, 15.0, 30.0])
    gray = torch.tensor([False, True, False, True])
    noise = D.gaussian_noise(img, sigma, gray, _generator())
    measured = noise.flatten(1).std(dim=1) * 255
    torch.testing.assert_close(measured, sigma, rtol=0.03, atol=0)
    assert torch.equal(noise[1, 0], noise[1, 2]) and torch.equal(noise[3, 1], noise[3, 2])
    assert not torch.equal(noise[0, 0], noise[0, 1])
    assert noise.flatten(1).mean(dim=1).abs().max() * 255 < 0.1 * sigma.max()


def test_poisson_noise_has_mean_zero_and_the_scaled_variance():
    levels = torch.randint(0, 256, (2, 3, 96, 96), generator=_generator(1)).float()
    levels.view(2, -1)[:, :256] = torch.arange(256.0)  # all 256 levels present: 2^ceil(log2(256)) = 256 counts
    img = levels / 255
    scale = torch.tensor([0.5, 2.0])
    noise = D.poisson_noise(img, scale, torch.tensor([False, False]), _generator())
    for i in range(2):
        expected_var = scale[i] ** 2 * img[i].mean() / 256  # Poisson: variance = rate / counts^2 = img / 256
        assert noise[i].var().item() == pytest.approx(expected_var.item(), rel=0.05)
        assert abs(noise[i].mean().item()) < 4 * math.sqrt(expected_var.item() / noise[i].numel())
    grey = D.poisson_noise(img, scale, torch.tensor([True, False]), _generator())
    assert torch.equal(grey[0, 0], grey[0, 2]) and not torch.equal(grey[1, 0], grey[1, 2])


def test_noise_steps_are_reproducible_from_the_generator_state_and_stay_in_range():
    img = torch.rand(2, 3, 32, 32, generator=_generator(3))
    generator = _generator(5)
    state = generator.get_state()
    options = dict(gaussian_prob=0.5, sigma_range=(1, 30), poisson_scale_range=(0.05, 3), gray_prob=0.4)
    first = [D.add_random_noise(img, generator, **options) for _ in range(4)]
    generator.set_state(state)
    again = [D.add_random_noise(img, generator, **options) for _ in range(4)]
    for a, b in zip(first, again):
        assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(first[0], first[1])


def test_random_resize_sizes():
    img = torch.rand(2, 3, 40, 40)
    sizes = {D.random_resize(img, _generator(seed), [0.3, 0.4, 0.3], [0.5, 1.5]).shape[-1] for seed in range(30)}
    assert min(sizes) < 40 < max(sizes) and 40 in sizes and min(sizes) >= 20 and max(sizes) <= 60
    out = D.random_resize(img, _generator(), [0.0, 0.0, 1.0], [0.5, 1.5], relative_to=(10.0, 12.5))
    assert out.shape[-2:] == (10, 12)


def test_usm_leaves_flat_images_alone_and_sharpens_edges():
    flat = torch.full((1, 3, 40, 40), 0.4)
    assert torch.equal(D.usm_sharp(flat), flat)
    edge = torch.full((1, 3, 40, 60), 0.3)
    edge[..., 30:] = 0.7
    out = D.usm_sharp(edge)
    assert out[0, 0, 20, 29] < 0.3 - 0.02 and out[0, 0, 20, 30] > 0.7 + 0.02  # more contrast across the edge
    assert out.min() >= 0 and out.max() <= 1
    assert (out[..., 29] <= edge[..., 29]).all() and (out[..., 30] >= edge[..., 30]).all()


# ----------------------------------------------------------------------------------------------------- JPEG

def _check_close_to_pillow(img: np.ndarray) -> None:
    for quality in (30, 60, 95):
        pillow = _pillow_jpeg(img, quality)
        ours = _to_uint8(diff_jpeg(_to_tensor(img), quality))
        between = _psnr(ours, pillow)
        # measured margins 10-16 dB; the standard tables transposed (BasicSR's orientation) give 5-7 dB
        assert between > _psnr(pillow, img) + 9 and between > _psnr(ours, img) + 9, quality
        assert abs(_psnr(ours, img) - _psnr(pillow, img)) < 1.0, quality  # the same amount of loss


def test_diff_jpeg_is_close_to_pillow_on_a_synthetic_image():
    _check_close_to_pillow(_synthetic_photo(120, 150))  # 150 is not a multiple of 16: padded and cropped back


def test_diff_jpeg_is_close_to_pillow_on_set14():
    img = np.asarray(Image.open(shared_path('data', 'Set14', 'HR', 'lenna.png')).convert('RGB'))[100:300, 150:390]
    _check_close_to_pillow(np.ascontiguousarray(img))


def test_diff_jpeg_batches_one_quality_per_image_and_passes_gradients():
    img = _to_tensor(_synthetic_photo(40, 56)).repeat(2, 1, 1, 1)
    out = diff_jpeg(img, torch.tensor([20.0, 90.0]))
    assert out.shape == img.shape
    torch.testing.assert_close(out[:1], diff_jpeg(img[:1], 20), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1:], diff_jpeg(img[1:], 90.0), atol=1e-5, rtol=0)
    assert (out[0] - img[0]).abs().mean() > (out[1] - img[1]).abs().mean()
    leaf = img.clone().requires_grad_(True)
    diff_jpeg(leaf, 50).sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='quality must be in 1..100'):
        diff_jpeg(img, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_jpeg_and_pipeline_on_cuda_match_the_cpu():
    img = _to_tensor(_synthetic_photo(72, 88)).repeat(2, 1, 1, 1)
    quality = torch.tensor([35.0, 80.0])
    torch.testing.assert_close(diff_jpeg(img.cuda(), quality.cuda()).cpu(), diff_jpeg(img, quality), atol=2e-3,
                               rtol=0)
    gt, kernels = _batch(2, 96)
    generator = torch.Generator('cuda').manual_seed(0)
    lq = SecondOrderDegradation(4, **PIPELINE)(gt.cuda(), *(k.cuda() for k in kernels), generator)
    assert lq.is_cuda and lq.shape == (2, 3, 24, 24)


# --------------------------------------------------------------------------------------- pipeline and pool

def _batch(n: int, size: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    rng = np.random.default_rng(0)
    gt = torch.from_numpy(np.stack([_synthetic_photo(size, size) for _ in range(n)])).permute(0, 3, 1, 2) / 255
    gt = torch.roll(gt, shifts=7, dims=-1)
    k1 = [D.random_mixed_kernels(rng, KERNEL_LIST, KERNEL_PROB, 21, (0.2, 3), (0.5, 4), (1, 2)) for _ in range(n)]
    k2 = [D.random_mixed_kernels(rng, KERNEL_LIST, KERNEL_PROB, 21, (0.2, 1.5), (0.5, 4), (1, 2)) for _ in range(n)]
    sinc = [D.circular_lowpass_kernel(2.0, 11, pad_to=21) for _ in range(n)]
    return gt.float(), [torch.from_numpy(np.stack(k)).float() for k in (k1, k2, sinc)]


def test_pipeline_output_is_an_8bit_lr_batch_reproducible_from_the_generator_state():
    gt, kernels = _batch(2, 96)
    degrade = SecondOrderDegradation(4, **PIPELINE)
    generator = _generator(11)
    state = generator.get_state()
    outputs = [degrade(gt, *kernels, generator) for _ in range(3)]
    generator.set_state(state)
    again = [degrade(gt, *kernels, generator) for _ in range(3)]
    for lq, repeat in zip(outputs, again):
        assert lq.shape == (2, 3, 24, 24) and lq.dtype == torch.float32
        assert lq.min() >= 0 and lq.max() <= 1
        torch.testing.assert_close(lq * 255, (lq * 255).round(), atol=1e-4, rtol=0)
        assert torch.equal(lq, repeat)
    assert not torch.equal(outputs[0], outputs[1])
    assert not torch.equal(degrade(gt, *kernels, _generator(1)), degrade(gt, *kernels, _generator(2)))


def test_pipeline_without_degradation_is_close_to_a_plain_downscale():
    """Every step switched to its mildest: the LR image is a plain downscale of the GT, up to JPEG at 100 (near
    lossless on a grey image, which has no chroma to subsample)."""
    gt = _batch(1, 64)[0].mean(1, keepdim=True).expand(1, 3, 64, 64)
    pulse = torch.zeros(1, 21, 21)
    pulse[0, 10, 10] = 1
    mild = dict(PIPELINE, resize_prob=[0, 0, 1], resize_prob2=[0, 0, 1], gaussian_noise_prob=1, noise_range=[0, 0],
                gaussian_noise_prob2=1, noise_range2=[0, 0], jpeg_range=[100, 100], jpeg_range2=[100, 100])
    lq = SecondOrderDegradation(2, **mild)(gt, pulse, pulse, pulse, _generator())
    assert lq.shape == (1, 3, 32, 32)
    for mode in D.RESIZE_MODES:
        if (lq - D.resize(gt, mode, size=(32, 32))).abs().max() < 2 / 255:
            break
    else:
        pytest.fail('the mildest pipeline is not a plain downscale')


@pytest.mark.parametrize('changes, option', [
    ({'scale': 0}, 'scale must be a positive integer'),
    ({'resize_prob': [0.5, 0.5]}, r'resize_prob must have 3 probabilities \(one per entry of \[up, down, keep\]\)'),
    ({'resize_prob2': [0.5, 0.6, 0.1]}, 'resize_prob2 must be non-negative probabilities summing'),
    ({'resize_range': [1.2, 1.5]}, 'resize_range must contain 1'),
    ({'resize_range2': [0, 1.2]}, 'resize_range2 must be positive'),
    ({'gaussian_noise_prob': 2}, 'gaussian_noise_prob must be a probability'),
    ({'noise_range': [30, 1]}, 'noise_range must have min <= max'),
    ({'noise_range2': [-1, 25]}, 'noise_range2 must be non-negative'),
    ({'poisson_scale_range': [3]}, r'poisson_scale_range must be a \[min, max\] pair'),
    ({'gray_noise_prob2': -0.5}, 'gray_noise_prob2 must be a probability'),
    ({'jpeg_range': [0.5, 95]}, 'jpeg_range must be JPEG qualities'),
    ({'jpeg_range2': [30, 120]}, 'jpeg_range2 must be JPEG qualities'),
    ({'second_blur_prob': 1.5}, 'second_blur_prob must be a probability'),
])
def test_bad_pipeline_options_name_the_option(changes, option):
    options = {'scale': 4, **PIPELINE, **changes}
    with pytest.raises(ValueError, match=option):
        SecondOrderDegradation(**options)


def test_paired_crop_keeps_gt_and_lr_aligned():
    gt = torch.rand(2, 3, 80, 96, generator=_generator())
    lq = gt[..., ::4, ::4]
    gt_patch, lq_patch = paired_random_crop_batch(gt, lq, 32, 4, _generator(3))
    assert gt_patch.shape == (2, 3, 32, 32) and lq_patch.shape == (2, 3, 8, 8)
    assert torch.equal(gt_patch[..., ::4, ::4], lq_patch)
    with pytest.raises(ValueError, match='gt_size 96 does not fit'):
        paired_random_crop_batch(gt, lq, 96, 4, _generator())


def _numbered(start: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.arange(start, start + b, dtype=torch.float32).view(b, 1, 1, 1)
    return ids.expand(b, 3, 2, 2).clone(), ids.expand(b, 3, 8, 8).clone() + 0.5


def test_pool_fills_then_serves_shuffled_pairs_that_stay_paired():
    pool = TrainingPairPool(6)
    generator = _generator()
    for step in range(3):
        lq, gt = _numbered(10 * step, 2)
        out_lq, out_gt = pool(lq, gt, generator)
        assert torch.equal(out_lq, lq) and torch.equal(out_gt, gt)  # filling: the batch itself
    served = set()
    for step in range(3, 9):
        out_lq, out_gt = pool(*_numbered(10 * step, 2), generator)
        assert torch.equal(out_gt[:, :, :2, :2], out_lq + 0.5)  # each LR with its own GT
        served.update(out_lq[:, 0, 0, 0].tolist())
    assert len(served) > 6  # the served pairs come from many batches
    with pytest.raises(ValueError, match='multiple of the batch size 4'):
        TrainingPairPool(6)(*_numbered(0, 4), generator)


def test_pool_state_round_trip_resumes_exactly():
    pool, generator = TrainingPairPool(4), _generator(9)
    for step in range(4):
        pool(*_numbered(10 * step, 2), generator)
    state = {k: v.clone() if torch.is_tensor(v) else v for k, v in pool.state_dict().items()}
    rng_state = generator.get_state()
    continued = [pool(*_numbered(10 * step, 2), generator) for step in range(4, 8)]
    resumed_pool, resumed_generator = TrainingPairPool(4), _generator()
    resumed_pool.load_state_dict(state)
    resumed_generator.set_state(rng_state)
    resumed = [resumed_pool(*_numbered(10 * step, 2), resumed_generator) for step in range(4, 8)]
    for (a_lq, a_gt), (b_lq, b_gt) in zip(continued, resumed):
        assert torch.equal(a_lq, b_lq) and torch.equal(a_gt, b_gt)
    with pytest.raises(CheckpointError, match='holds 4 pairs but queue_size is 8'):
        TrainingPairPool(8).load_state_dict(state)


# -------------------------------------------------------------------------------------------------- dataset

def _write_images(folder: Path, sizes: list[tuple[int, int]]) -> None:
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(_synthetic_photo(h, w)).save(folder / f'img{i}.png')


def _dataset(folder: Path, **changes):
    return DATASET_REGISTRY.get('RealESRGANDataset')(dataroot_gt=str(folder), **{**DATASET, **changes})


def test_dataset_returns_400px_gt_and_batchable_kernels_deterministic_per_key(tmp_path):
    _write_images(tmp_path, [(300, 400), (450, 520)])
    dataset = _dataset(tmp_path, use_hflip=True)
    assert len(dataset) == 2
    sample = dataset[(1, 123)]
    assert set(sample) == {'gt', 'kernel1', 'kernel2', 'sinc_kernel', 'gt_path'}
    assert sample['gt'].shape == (3, 400, 400) and sample['gt_path'].endswith('img1.png')
    for key in ('kernel1', 'kernel2', 'sinc_kernel'):
        assert sample[key].shape == (21, 21) and sample[key].dtype == torch.float32
        assert sample[key].sum().item() == pytest.approx(1.0, abs=1e-5)
    again = dataset[(1, 123)]
    assert all(torch.equal(sample[k], again[k]) for k in ('gt', 'kernel1', 'kernel2', 'sinc_kernel'))
    other = dataset[(1, 124)]
    assert not all(torch.equal(sample[k], other[k]) for k in ('gt', 'kernel1', 'kernel2'))
    with pytest.raises(DataError, match='needs training keys'):
        dataset[0]


def test_dataset_pads_small_images_by_reflection(tmp_path):
    _write_images(tmp_path, [(300, 400)])
    img = torch.from_numpy(_synthetic_photo(300, 400)).permute(2, 0, 1).float() / 255
    gt = _dataset(tmp_path)[(0, 5)]['gt']
    assert torch.equal(gt[:, :300], img)
    assert torch.equal(gt[:, 300:], img.flip(1)[:, 1:101])  # reflection without repeating the edge row


def test_dataset_sinc_probabilities(tmp_path):
    _write_images(tmp_path, [(64, 64)])
    pulse = torch.zeros(21, 21)
    pulse[10, 10] = 1
    never = _dataset(tmp_path, final_sinc_prob=0.0, sinc_prob=0.0, sinc_prob2=0.0)[(0, 1)]
    assert torch.equal(never['sinc_kernel'], pulse) and (never['kernel1'] >= 0).all()
    always = _dataset(tmp_path, final_sinc_prob=1.0, sinc_prob=1.0)[(0, 1)]
    assert not torch.equal(always['sinc_kernel'], pulse) and always['sinc_kernel'].min() < 0
    assert always['kernel1'].min() < 0  # a sinc kernel has negative lobes, the other families do not


def test_dataset_refuses_evaluation_phases_and_honours_meta_info(tmp_path):
    _write_images(tmp_path, [(64, 64), (64, 64)])
    with pytest.raises(ValueError, match='training samples only'):
        _dataset(tmp_path, phase='val')
    meta = tmp_path / 'meta.txt'
    meta.write_text('img1.png (64,64,3) 1\n')
    dataset = _dataset(tmp_path, meta_info=str(meta))
    assert len(dataset) == 1 and dataset[(0, 3)]['gt_path'].endswith('img1.png')


def test_dataset_batch_through_the_whole_synthesis(tmp_path):
    """What the model does with a batch: USM, degradation, crop to gt_size, pool."""
    _write_images(tmp_path, [(420, 410), (400, 400)])
    dataset = _dataset(tmp_path)
    items = [dataset[(i, 40 + i)] for i in range(2)]
    batch = {k: torch.stack([item[k] for item in items]) for k in ('gt', 'kernel1', 'kernel2', 'sinc_kernel')}
    generator = _generator()
    lq = SecondOrderDegradation(4, **PIPELINE)(D.usm_sharp(batch['gt']), batch['kernel1'], batch['kernel2'],
                                                batch['sinc_kernel'], generator)
    gt, lq = paired_random_crop_batch(batch['gt'], lq, 256, 4, generator)
    lq, gt = TrainingPairPool(4)(lq, gt, generator)
    assert lq.shape == (2, 3, 64, 64) and gt.shape == (2, 3, 256, 256)
