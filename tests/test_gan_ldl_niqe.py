"""GANLoss, LDL's artifact map and NIQE: hand-derived values, BasicSR's own outputs, MATLAB's NIQE for baboon."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import shared_path
from PIL import Image

from srkit.core.registry import LOSS_REGISTRY, METRIC_REGISTRY
from srkit.losses.gan_loss import GAN_TYPES, GANLoss
from srkit.losses.ldl import local_variance, refined_artifact_map
from srkit.metrics import niqe

GOLDEN = Path(__file__).parent / 'fixtures' / 'gan_ldl_niqe' / 'basicsr_golden.pt'
LABELS = {'default': {}, 'custom': {'real_label_val': 0.9, 'fake_label_val': 0.2, 'loss_weight': 0.5}}
MATLAB_BABOON = 5.72957338  # MATLAB R2021a, BasicSR's calculate_niqe docstring (its tests/data/baboon.png)


@lru_cache(maxsize=None)
def golden() -> dict:
    return torch.load(GOLDEN, weights_only=True)


@lru_cache(maxsize=None)
def set14(name: str, folder: str = 'GTmod12') -> torch.Tensor:
    """A Set14 image as a 1x3xHxW float64 tensor in [0, 255]."""
    img = np.asarray(Image.open(shared_path('data', 'Set14', folder, f'{name}.png')).convert('RGB'))
    return torch.from_numpy(img.transpose(2, 0, 1).copy())[None].double()


# ---------------------------------------------------------------- GANLoss

def _by_hand(gan_type: str, x: torch.Tensor, real: bool, disc: bool, real_val: float, fake_val: float) -> float:
    label = real_val if real else fake_val
    if gan_type == 'vanilla':  # binary cross-entropy of sigmoid(x) against the label
        p = torch.sigmoid(x)
        return float(-(label * p.log() + (1 - label) * (1 - p).log()).mean())
    if gan_type == 'lsgan':
        return float(((x - label) ** 2).mean())
    if gan_type == 'wgan':
        return float(-x.mean() if real else x.mean())
    if gan_type == 'wgan_softplus':
        return float(torch.log1p(torch.exp(-x if real else x)).mean())
    if disc:  # hinge
        return float(torch.clamp(1 - x if real else 1 + x, min=0).mean())
    return float(-x.mean())


@pytest.mark.parametrize('gan_type', GAN_TYPES)
def test_gan_loss_is_the_hand_derived_formula_weighted_for_the_generator_only(gan_type):
    x = torch.tensor([[-2.5, -0.4, 0.0], [0.3, 1.2, 3.0]], dtype=torch.float64)
    loss = GANLoss(gan_type, real_label_val=0.9, fake_label_val=0.2, loss_weight=0.5)
    for real in (True, False):
        for disc in (True, False):
            expected = _by_hand(gan_type, x, real, disc, 0.9, 0.2) * (1.0 if disc else 0.5)
            assert float(loss(x, real, is_disc=disc)) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_gan_loss_equals_basicsr_for_every_type_side_and_labels():
    data = golden()['gan']
    for key, value in data['values'].items():
        gan_type, labels, real, disc = key.split('/')
        loss = GANLoss(gan_type, **LABELS[labels])
        assert float(loss(data['prediction'], real == 'True', is_disc=disc == 'True')) == pytest.approx(
            value, abs=1e-6), key


@pytest.mark.parametrize('gan_type', GAN_TYPES)
def test_gan_loss_gradient_pushes_the_generator_towards_real(gan_type):
    """Lowering the generator's loss must raise the discriminator's logits on its output."""
    x = torch.tensor([[-1.5, 0.2], [0.7, 0.9]], requires_grad=True)  # below the real label 1, for lsgan
    GANLoss(gan_type)(x, True).backward()
    assert torch.isfinite(x.grad).all() and (x.grad <= 0).all() and (x.grad < 0).any()


def test_unknown_gan_type_is_a_value_error_naming_the_known_ones():
    with pytest.raises(ValueError, match="Did you mean 'lsgan'.*vanilla, lsgan, wgan, wgan_softplus, hinge"):
        GANLoss('lsgn')


def test_gan_loss_refuses_to_be_called_like_a_pixel_loss():
    """SRModel calls every loss as loss(output, gt): a tensor as target_is_real must not pass silently."""
    assert LOSS_REGISTRY.get('GANLoss') is GANLoss
    output = torch.rand(1, 3, 8, 8)
    with pytest.raises(TypeError, match='target_is_real must be a bool'):
        GANLoss('vanilla')(output, torch.rand(1, 3, 8, 8))


# ---------------------------------------------------------------- LDL artifact map

def test_artifact_map_hand_made_case():
    """One wrong pixel (residual 1, spread over two channels) in a 5x5 image, 3x3 window: the 3x3 pixels
    whose window holds it get var = 1/9, times the image weight var(residual)^(1/5) = (1/25)^(1/5); one of
    them is zeroed because the EMA output is further from gt there."""
    gt = torch.zeros(1, 2, 5, 5)
    output = gt.clone()
    output[0, :, 2, 2] = torch.tensor([0.25, -0.75])
    ema = gt.clone()
    ema[0, 0, 2, 1] = 2.0
    expected = torch.zeros(1, 1, 5, 5)
    expected[..., 1:4, 1:4] = (1 / 25) ** (1 / 5) / 9
    expected[..., 2, 1] = 0
    torch.testing.assert_close(refined_artifact_map(gt, output, ema, kernel_size=3), expected)


def test_artifact_map_is_zero_where_the_output_is_the_truth_and_never_negative():
    generator = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 12, 14, generator=generator)
    ema = gt + 0.05 * torch.randn(gt.shape, generator=generator)
    assert not refined_artifact_map(gt, gt.clone(), ema).any()
    output = gt + 0.1 * torch.randn(gt.shape, generator=generator)
    exact = torch.zeros(2, 1, 12, 14, dtype=torch.bool)
    exact[:, :, 3:9, 2:6] = True
    output = torch.where(exact, gt, output)
    weight = refined_artifact_map(gt, output, ema)
    assert weight.shape == (2, 1, 12, 14)
    assert (weight >= 0).all() and weight.any()
    assert not weight[exact].any()


def test_artifact_map_equals_basicsr_and_lets_gradients_through():
    data = golden()['ldl']
    for kernel_size, expected in data['map'].items():
        torch.testing.assert_close(
            refined_artifact_map(data['gt'], data['output'], data['output_ema'], kernel_size), expected,
            atol=1e-6, rtol=1e-5)
    output = data['output'].clone().requires_grad_(True)
    weight = refined_artifact_map(data['gt'], output, data['output_ema'])
    F.l1_loss(weight * output, weight * data['gt']).backward()
    assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0


def test_local_variance_is_the_unbiased_variance_of_each_reflect_padded_window():
    x = torch.rand(2, 1, 9, 11, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 3 + 50
    windows = F.pad(x, (2, 2, 2, 2), mode='reflect').unfold(2, 5, 1).unfold(3, 5, 1)
    torch.testing.assert_close(local_variance(x, 5), windows.var(dim=(-2, -1)), atol=1e-10, rtol=1e-8)


def test_artifact_map_rejects_mismatched_shapes_and_even_windows():
    a = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match='one shape'):
        refined_artifact_map(a, a, torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError, match='odd'):
        refined_artifact_map(a, a, a, kernel_size=6)


# ---------------------------------------------------------------- NIQE

def test_niqe_reproduces_matlab_on_baboon():
    """Set14's HR baboon (480x500) and GTmod12 baboon (480x492, BasicSR's tests/data/baboon.png) keep the same
    480x480 of whole blocks. Measured 2e-7 from MATLAB; with a float64 conv2d normalisation it would be 3.9e-4."""
    scores = [float(niqe.calculate_niqe(set14('baboon', folder))) for folder in ('HR', 'GTmod12')]
    assert scores[0] == scores[1]
    assert scores[0] == pytest.approx(MATLAB_BABOON, abs=1e-4)


@pytest.mark.parametrize('name', ['barbara', 'comic', 'face', 'foreman', 'lenna', 'monarch', 'ppt3', 'zebra'])
def test_niqe_agrees_with_basicsr_python(name):
    """BasicSR works partly in float32 (measured gap at most 8.3e-4, on foreman)."""
    assert float(niqe.calculate_niqe(set14(name))) == pytest.approx(golden()['niqe'][name], abs=2e-3)


def test_niqe_is_higher_for_a_noisy_photo_batched_like_one_by_one_and_ignores_gt():
    clean = set14('lenna')
    noisy = (clean + 25 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0),
                                      dtype=torch.float64)).clamp(0, 255).round()
    scores = niqe.calculate_niqe(torch.cat([clean, noisy]), gt=torch.zeros(2, 3, 8, 8))
    assert scores.shape == (2,) and scores.dtype == torch.float64
    assert scores[1] > scores[0] + 2
    torch.testing.assert_close(scores[1:], niqe.calculate_niqe(noisy), rtol=1e-12, atol=0)


def test_niqe_gray_input_and_rgb2gray_of_a_gray_image_agree():
    gray = set14('pepper').mean(dim=1, keepdim=True).round()[..., :200, :300]
    from_gray = niqe.calculate_niqe(gray)
    torch.testing.assert_close(niqe.calculate_niqe(gray.expand(-1, 3, -1, -1), test_y_channel=False), from_gray)
    assert torch.isfinite(from_gray).all()


def test_niqe_needs_one_block_and_is_nan_for_a_flat_image():
    with pytest.raises(ValueError, match='at least 96x96'):
        niqe.calculate_niqe(torch.zeros(1, 3, 95, 300))
    with pytest.raises(ValueError, match='at least 96x96'):
        niqe.calculate_niqe(torch.zeros(1, 3, 120, 120), crop_border=20)
    assert niqe.calculate_niqe(torch.full((1, 3, 96, 96), 128.0)).isnan().all()


def test_niqe_is_registered_with_its_alias():
    assert METRIC_REGISTRY.get('niqe') is METRIC_REGISTRY.get('calculate_niqe') is niqe.calculate_niqe


def test_niqe_window_is_separable_flat_is_zero_and_shape_fit_finds_known_distributions():
    """The 1-D factor rebuilds the stored 7x7 window; a flat area normalises to exactly 0; the AGGD fit gives
    shape ~1 for Laplace, ~2 for Gauss."""
    with np.load(niqe._PARAMS_FILE) as params:
        window = params['gaussian_window']
    taps = niqe._pristine_model()[2]
    np.testing.assert_allclose(np.outer(taps, taps), window, atol=1e-15)
    flat = torch.full((1, 1, 12, 12), 201.0, dtype=torch.float64)
    assert not niqe._normalise(flat, taps).any()  # exactly 0: the fit counts negative and positive values apart
    generator = torch.Generator().manual_seed(0)
    gauss = torch.randn(1, 200_000, generator=generator, dtype=torch.float64)
    laplace = torch.log(torch.rand(1, 200_000, generator=generator, dtype=torch.float64)) * torch.sign(
        torch.rand(1, 200_000, generator=generator) - 0.5)
    shapes = niqe._fit_aggd(torch.cat([gauss, laplace]))[0]
    torch.testing.assert_close(shapes, torch.tensor([2.0, 1.0], dtype=torch.float64), atol=0.05, rtol=0)


def test_niqe_scores_a_set_without_ground_truth_where_psnr_cannot(tmp_path):
    """A no-reference metric is computed for LR-only sets (SingleImageDataset); a full-reference one is skipped
    there, and a set with ground truth gets both."""
    from srkit.config.typed_options import Component
    from srkit.data.single_image_dataset import SingleImageDataset
    from srkit.models.evaluator import evaluate
    from tests.training_helpers import make_images

    make_images(tmp_path / 'lr', 2, size=(60, 66))
    metrics = {'psnr': Component('calculate_psnr', {}), 'niqe': Component('niqe', {})}
    upscale = lambda lq: F.interpolate(lq, scale_factor=2, mode='bicubic')  # noqa: E731
    result = evaluate(upscale, SingleImageDataset(str(tmp_path / 'lr')), 'lr_only', metrics)
    assert all(set(row) == {'image', 'niqe'} for row in result.per_image)
    assert set(result.mean) == {'niqe'} and np.isfinite(result.mean['niqe'])
    single = niqe.calculate_niqe(upscale(SingleImageDataset(str(tmp_path / 'lr'))[0]['lq'][None]).clamp(0, 1)
                                 .mul(255).round().double())
    assert result.per_image[0]['niqe'] == pytest.approx(float(single[0]), abs=1e-9)
