"""Pixel, FFT and perceptual losses: values, weighting, registry names, VGG weight loading."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from srkit.core.errors import CheckpointError, OptionError, SrkitError
from srkit.core.registry import LOSS_REGISTRY
from srkit.losses.perceptual_loss import PerceptualLoss, VGGFeatures, vgg_layer_names
from srkit.losses.pixel_losses import CharbonnierLoss, FFTLoss, L1Loss, MSELoss


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 8, 8, generator=gen), torch.rand(2, 3, 8, 8, generator=gen)


def test_registered_by_class_name() -> None:
    for cls in (L1Loss, MSELoss, CharbonnierLoss, FFTLoss, PerceptualLoss):
        assert LOSS_REGISTRY.get(cls.__name__) is cls


def test_pixel_losses_match_definitions_and_weight(pair) -> None:
    pred, target = pair
    assert torch.allclose(L1Loss(loss_weight=2.0)(pred, target), 2 * (pred - target).abs().mean())
    assert torch.allclose(MSELoss(reduction='sum')(pred, target), ((pred - target) ** 2).sum())
    none = CharbonnierLoss(reduction='none', eps=1e-3)(pred, target)
    assert none.shape == pred.shape
    assert torch.allclose(none, torch.sqrt((pred - target) ** 2 + 1e-3))


def test_charbonnier_defaults_to_basicsr_eps_and_has_finite_gradient_at_zero() -> None:
    assert CharbonnierLoss().eps == 1e-12
    pred = torch.zeros(1, 1, 2, 2, requires_grad=True)
    CharbonnierLoss()(pred, torch.zeros(1, 1, 2, 2)).backward()
    assert torch.isfinite(pred.grad).all()


def test_weighted_mean_averages_over_weighted_elements(pair) -> None:
    pred, target = pair
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, :4] = 1  # top half of every channel
    expected = (pred - target).abs()[:, :, :4].mean()
    assert torch.allclose(L1Loss()(pred, target, weight=mask), expected)
    assert torch.allclose(L1Loss()(pred, target, weight=torch.ones_like(pred)), L1Loss()(pred, target))


def test_bad_reduction_is_an_option_error() -> None:
    with pytest.raises(OptionError, match='reduction'):
        L1Loss(reduction='avg')


def test_fft_loss_of_a_constant_offset_is_its_dc_term() -> None:
    # rfft2 of a constant d over HxW is d*H*W at frequency (0, 0) and zero elsewhere.
    target = torch.rand(1, 3, 8, 6)
    offset = 0.25
    loss = FFTLoss(loss_weight=3.0)(target + offset, target)
    elements = 3 * 8 * (6 // 2 + 1) * 2  # real and imaginary parts stacked
    assert math.isclose(loss.item(), 3.0 * 3 * offset * 8 * 6 / elements, rel_tol=1e-4)
    assert FFTLoss()(target, target).item() == 0


def test_fft_loss_refuses_a_pixel_weight(pair) -> None:
    with pytest.raises(TypeError):
        FFTLoss()(*pair, weight=torch.ones_like(pair[0]))


# ----------------------------------------------------------------------------- VGG / perceptual


def fake_torchvision_vgg(vgg_type: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the keys and shapes of torchvision's ``vgg_type`` state dict."""
    gen = torch.Generator().manual_seed(seed)
    state, channels = {}, 3
    for index, name in enumerate(vgg_layer_names(vgg_type)):
        key = f'features.{index}'
        if name.startswith('conv'):
            out = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}[int(name[4])]
            state[f'{key}.weight'] = torch.randn(out, channels, 3, 3, generator=gen) * math.sqrt(2 / (9 * channels))
            state[f'{key}.bias'] = torch.randn(out, generator=gen) * 0.1
            channels = out
        elif name.startswith('bn'):
            state[f'{key}.weight'] = 1 + 0.1 * torch.randn(channels, generator=gen)
            state[f'{key}.bias'] = 0.1 * torch.randn(channels, generator=gen)
            state[f'{key}.running_mean'] = 0.1 * torch.randn(channels, generator=gen)
            state[f'{key}.running_var'] = 0.5 + torch.rand(channels, generator=gen)
    state['classifier.0.weight'] = torch.zeros(2, 2)  # torchvision files carry the classifier too
    return state


@pytest.fixture(scope='module')
def vgg_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp('vgg')
    files = {}
    for vgg_type in ('vgg11', 'vgg11_bn'):
        files[vgg_type] = folder / f'{vgg_type}.pth'
        torch.save(fake_torchvision_vgg(vgg_type), files[vgg_type])
    return files


def test_layer_names_follow_torchvision_feature_indices() -> None:
    vgg19, vgg19_bn, vgg16 = vgg_layer_names('vgg19'), vgg_layer_names('vgg19_bn'), vgg_layer_names('vgg16')
    assert (len(vgg19), vgg19.index('conv5_4'), vgg19.index('pool4')) == (37, 34, 27)
    assert (len(vgg19_bn), vgg19_bn.index('conv5_4'), vgg19_bn[1]) == (53, 49, 'bn1_1')
    assert (len(vgg16), vgg16.index('relu5_3')) == (31, 29)


def test_vgg_outputs_equal_a_manual_conv_stack(vgg_files) -> None:
    sd = torch.load(vgg_files['vgg11'], weights_only=True)
    vgg = VGGFeatures('vgg11', 'conv2_1')
    vgg.load_torchvision(sd, 'fake')
    x = torch.rand(1, 3, 16, 16)
    out = vgg(x, {'relu1_1', 'conv2_1'})
    relu1_1 = F.relu(F.conv2d(x, sd['features.0.weight'], sd['features.0.bias'], padding=1))
    conv2_1 = F.conv2d(F.max_pool2d(relu1_1, 2), sd['features.3.weight'], sd['features.3.bias'], padding=1)
    assert set(out) == {'relu1_1', 'conv2_1'}
    assert torch.allclose(out['relu1_1'], relu1_1, atol=1e-5)
    assert torch.allclose(out['conv2_1'], conv2_1, atol=1e-5)


def test_batchnorm_vgg_uses_running_statistics_even_in_train_mode(vgg_files) -> None:
    sd = torch.load(vgg_files['vgg11_bn'], weights_only=True)
    vgg = VGGFeatures('vgg11_bn', 'relu1_1')
    vgg.load_torchvision(sd, 'fake')
    vgg.train()
    assert not vgg.training
    x = torch.rand(2, 3, 8, 8)
    conv = F.conv2d(x, sd['features.0.weight'], sd['features.0.bias'], padding=1)
    bn = F.batch_norm(conv, sd['features.1.running_mean'], sd['features.1.running_var'],
                      sd['features.1.weight'], sd['features.1.bias'], training=False)
    assert torch.allclose(vgg(x, {'relu1_1'})['relu1_1'], F.relu(bn), atol=1e-5)


def test_perceptual_loss_is_zero_for_identical_inputs_and_grads_reach_pred_only(vgg_files) -> None:
    loss_fn = PerceptualLoss({'relu1_1': 0.5, 'conv4_2': 1.0}, vgg_type='vgg11', style_weight=10.0,
                             pretrained_path=str(vgg_files['vgg11']))
    target = torch.rand(1, 3, 32, 32, requires_grad=True)
    assert loss_fn(target.detach().clone(), target).item() == 0
    pred = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss = loss_fn(pred, target)
    assert loss.item() > 0
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None
    assert all(p.grad is None for p in loss_fn.parameters())


def test_perceptual_and_style_terms_follow_their_definitions(vgg_files) -> None:
    path = str(vgg_files['vgg11'])
    layers = {'relu2_1': 0.3, 'relu3_1': 2.0}
    percep = PerceptualLoss(layers, vgg_type='vgg11', criterion='l2', pretrained_path=path)
    style = PerceptualLoss(layers, vgg_type='vgg11', perceptual_weight=0.0, style_weight=4.0,
                           criterion='fro', pretrained_path=path)
    pred, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    fp, ft = (percep.vgg((x - mean) / std, layers) for x in (pred, target))

    def gram(f: torch.Tensor) -> torch.Tensor:
        n, c, h, w = f.shape
        return torch.einsum('ncp,ndp->ncd', f.reshape(n, c, -1), f.reshape(n, c, -1)) / (c * h * w)

    expected_percep = sum(w * ((fp[k] - ft[k]) ** 2).mean() for k, w in layers.items())
    expected_style = 4.0 * sum(w * torch.sqrt(((gram(fp[k]) - gram(ft[k])) ** 2).sum()) for k, w in layers.items())
    assert torch.allclose(percep(pred, target), expected_percep, rtol=1e-4)
    assert torch.allclose(style(pred, target), expected_style, rtol=1e-4)


def test_range_norm_maps_minus_one_to_one_inputs(vgg_files) -> None:
    path = str(vgg_files['vgg11'])
    plain = PerceptualLoss({'conv2_1': 1.0}, vgg_type='vgg11', pretrained_path=path)
    ranged = PerceptualLoss({'conv2_1': 1.0}, vgg_type='vgg11', range_norm=True, pretrained_path=path)
    pred, target = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    assert torch.allclose(ranged(pred * 2 - 1, target * 2 - 1), plain(pred, target), rtol=1e-4)


def test_without_weights_it_refuses_and_says_what_to_set(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    with pytest.raises(SrkitError, match='pretrained_path') as info:
        PerceptualLoss({'conv5_4': 1.0})
    assert str(tmp_path / 'checkpoints') in str(info.value)
    with pytest.raises(SrkitError, match='not a file'):
        PerceptualLoss({'conv5_4': 1.0}, pretrained_path=str(tmp_path / 'missing.pth'))


def test_an_already_cached_torchvision_file_is_used(tmp_path, monkeypatch, vgg_files) -> None:
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path))
    (tmp_path / 'checkpoints').mkdir()
    (tmp_path / 'checkpoints' / 'vgg11-0123abcd.pth').write_bytes(vgg_files['vgg11'].read_bytes())
    loss_fn = PerceptualLoss({'conv1_1': 1.0}, vgg_type='vgg11')
    expected = torch.load(vgg_files['vgg11'], weights_only=True)['features.0.weight']
    assert torch.equal(loss_fn.vgg.body.conv1_1.weight, expected)


def test_a_file_of_another_vgg_type_is_rejected(vgg_files) -> None:
    with pytest.raises(CheckpointError, match='vgg13'):
        PerceptualLoss({'conv1_1': 1.0}, vgg_type='vgg13', pretrained_path=str(vgg_files['vgg11']))


def test_option_mistakes_name_the_closest_valid_value(vgg_files) -> None:
    path = str(vgg_files['vgg11'])
    with pytest.raises(OptionError, match="conv2_1"):
        PerceptualLoss({'conv2-1': 1.0}, vgg_type='vgg11', pretrained_path=path)
    with pytest.raises(OptionError, match="vgg19"):
        PerceptualLoss({'conv1_1': 1.0}, vgg_type='vgg91', pretrained_path=path)
    with pytest.raises(OptionError, match='criterion'):
        PerceptualLoss({'conv1_1': 1.0}, vgg_type='vgg11', criterion='l3', pretrained_path=path)
