"""Inference forms (ArchSpec.inference_form, issue 18): the same function as the eager network in eval mode.

Each form is compared with its network on odd sizes and a batch of 2, with BatchNorm statistics and layer
scales far from their defaults (so that folding them is tested, not skipped over), and the network must be
left exactly as it was: same tensors, same outputs, nothing shared with the form.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from srkit.archs import arch_spec, create, eimn_fused
from srkit.archs.weights import load_pretrained
from srkit.data.image_io import img_to_tensor, read_image
from tests.conftest import shared_path

TOLERANCE = 1e-5


def randomise_statistics(net: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorm running statistics and affines, and EIMN's layer scales, drawn away from their defaults."""
    generator = torch.Generator().manual_seed(seed)

    def draw(tensor: torch.Tensor, low: float, high: float) -> None:
        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)

    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                draw(module.running_mean, -0.5, 0.5)
                draw(module.running_var, 0.3, 2.0)
                draw(module.weight, 0.5, 1.5)
                draw(module.bias, -0.3, 0.3)
        for name, param in net.named_parameters():
            if 'layer_scale' in name:
                draw(param, 0.05, 0.5)
    return net


def images(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def check_form(net: nn.Module, x: torch.Tensor) -> None:
    """The form's output equals ``net.eval()``'s within TOLERANCE; ``net`` and ``x`` are unchanged, and the
    form shares no tensor with ``net``."""
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        expected = net(x)
    assert expected.amax() > expected.amin(), 'a constant output would test nothing'
    form = arch_spec(type(net).__name__).inference_form(net)
    x_before = x.clone()
    with torch.no_grad():
        got = form(x)
        again = net(x)
    assert torch.equal(x, x_before), 'the form changed its input'
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= TOLERANCE
    assert torch.equal(again, expected), 'building or running the form changed the network'
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    storages = {t.untyped_storage().data_ptr() for t in net.state_dict().values()}
    shared = [k for k, t in form.state_dict().items() if t.untyped_storage().data_ptr() in storages]
    assert not shared, f'the form shares tensors with the network: {shared}'


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_eimn_form_equals_the_network(scale):
    torch.manual_seed(scale)
    check_form(randomise_statistics(create('EIMN_A', scale)), images(2, 3, 13, 17))


@pytest.mark.parametrize('rows_per_strip', [1, 2, 5])
def test_eimn_form_is_exact_across_strips(rows_per_strip, monkeypatch):
    """Strips of 1, 2 and 5 rows (the default gives one strip at this size): the 3x3 conv's halo rows
    carried from strip to strip, and the last, shorter strip."""
    width = 17
    monkeypatch.setattr(eimn_fused, 'STRIP_PIXELS', rows_per_strip * width)
    torch.manual_seed(0)
    net = create('EIMN', 2, embed_dims=16, num_stages=3, depths=2)
    check_form(randomise_statistics(net), images(2, 3, 13, width))


def test_eimn_baidu_form_equals_the_network():
    torch.manual_seed(0)
    check_form(randomise_statistics(create('EIMNBaidu', 1, num_stages=4)), images(2, 3, 13, 17))


def test_a_network_in_training_mode_gets_the_eval_function():
    torch.manual_seed(0)
    net = randomise_statistics(create('EIMN', 2, embed_dims=16, num_stages=2)).train()
    form = arch_spec('EIMN').inference_form(net)
    assert net.training, 'building the form must not switch the network to eval mode'
    x = images(2, 3, 13, 17)
    with torch.no_grad():
        expected = net.eval()(x)
        assert (form(x) - expected).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_imdn_form_equals_the_network(scale):
    torch.manual_seed(scale)
    check_form(create('IMDN', scale), images(2, 3, 13, 17))


def test_imdn_as_form_equals_the_network():
    torch.manual_seed(0)
    check_form(create('IMDN_AS', 4), images(2, 3, 16, 20))


@pytest.mark.parametrize('scale', [2, 3, 4])  # x3 carries the plain form's dummy channel
def test_etds_plain_form_equals_the_network(scale):
    for seed in range(5):  # a random ReLU stack can output a constant image: then the next seed
        torch.manual_seed(seed)
        net = create('ETDSForInference_M7C48', scale)
        with torch.no_grad():
            out = net(images(2, 3, 13, 17))
        if out.amax() > out.amin():
            break
    check_form(net, images(2, 3, 13, 17))


def test_forms_refuse_another_network():
    with pytest.raises(TypeError, match='expects an EIMN'):
        arch_spec('EIMN').inference_form(create('IMDN', 2))
    with pytest.raises(TypeError, match='expects an IMDN'):
        arch_spec('IMDN').inference_form(create('ETDSForInference_M5C16', 2))


@pytest.mark.parametrize('arch, file', [('EIMN_A', 'EIMN/EIMN_A_x4.pth'), ('IMDN', 'IMDN/IMDN_x4.pth'),
                                        ('ETDSForInference_M7C48', 'ETDS/ETDS_M7C48_x4.pth')])
def test_forms_of_the_official_weights(arch, file):
    """The published x4 checkpoints (real BatchNorm statistics and layer scales, the -I clip conv of ETDS) on
    a crop of a real image. Not on noise: official EIMN weights amplify noise until eager float32 itself is
    4e-5 from float64 (the form is nearer, 2e-5; channels_last alone moves eager by 3e-5 there)."""
    net = create(arch, 4)
    load_pretrained(net, shared_path('weights', file), arch_type=arch)
    image = img_to_tensor(read_image(shared_path('data', 'Set5', 'LRbicx4', 'baby.png')))
    check_form(net, image[None, :, 40:77, 30:83])
