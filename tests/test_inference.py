"""Whole-image inference: padding to a multiple, tiling with overlap, x8 self-ensemble, and the warning
that tiling changes a network whose ArchSpec says it is not tiling-exact."""
import logging

import numpy as np
import pytest
import torch
from torch import nn
from training_helpers import tiny_options

from srkit.archs import ArchSpec
from srkit.models.inference import pad_to_multiple, predict, run_tiled, self_ensemble, warn_if_tiling_inexact
from srkit.models.sr_model import SRModel
from srkit.tools.models import LoadedModel
from srkit.tools.upscale import super_resolve


def conv_net(scale: int = 2, depth: int = 4) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU()]
    layers += [nn.Conv2d(8, 3 * scale * scale, 3, 1, 1), nn.PixelShuffle(scale)]
    return nn.Sequential(*layers).eval()


@torch.no_grad()
def test_tiled_equals_untiled_when_overlap_covers_receptive_field():
    net = conv_net(depth=4)  # receptive-field radius 4
    x = torch.rand(1, 3, 45, 38)
    full = net(x)
    tiled = run_tiled(net, x, 2, tile=16, overlap=4)
    assert tiled.shape == full.shape
    assert (tiled - full).abs().max() < 1e-5


@torch.no_grad()
def test_tiling_with_too_little_overlap_differs():
    net = conv_net(depth=4)
    x = torch.rand(1, 3, 40, 40)
    assert (run_tiled(net, x, 2, tile=16, overlap=1) - net(x)).abs().max() > 1e-4


def test_pad_to_multiple_and_crop_back():
    x = torch.rand(1, 3, 13, 17)
    padded, ph, pw = pad_to_multiple(x, 8)
    assert padded.shape[-2:] == (16, 24) and (ph, pw) == (3, 7)
    assert torch.equal(padded[..., :13, :17], x)
    out = predict(lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2), x, 2, multiple=8)
    assert out.shape[-2:] == (26, 34)


@torch.no_grad()
def test_self_ensemble_of_equivariant_op_is_identity():
    x = torch.rand(1, 3, 9, 11)
    up = lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2)  # noqa: E731 - commutes with flips
    assert torch.allclose(self_ensemble(up, x), up(x), atol=1e-6)
    net = conv_net()
    ens = self_ensemble(net, x)
    assert ens.shape == net(x).shape and not torch.allclose(ens, net(x))


@pytest.fixture
def srkit_warnings(caplog):
    """srkit's warnings (conftest keeps them propagating to caplog)."""
    caplog.set_level(logging.WARNING, logger='srkit')
    return caplog


def test_tiling_warning_only_for_inexact_tiled_networks_once_each(srkit_warnings):
    caplog = srkit_warnings
    net, other = conv_net(), conv_net()
    warn_if_tiling_inexact(net, True, 'Local', tile=16)
    warn_if_tiling_inexact(net, False, 'Pooled', tile=0)
    assert not caplog.records
    for owner in (net, net, net, other):
        warn_if_tiling_inexact(owner, False, 'Pooled', tile=16)
    assert len(caplog.records) == 2
    assert 'Pooled' in caplog.text and 'tile_size 0' in caplog.text


@torch.no_grad()
def test_upscale_and_sr_model_warn_once_when_tiling_an_inexact_network(tmp_path, srkit_warnings):
    caplog = srkit_warnings
    cpu = torch.device('cpu')
    loaded = LoadedModel(conv_net(), 'Pooled', 2, ArchSpec(tiling_exact=False), None, cpu)
    rgb = np.zeros((20, 20, 3), np.uint8)
    super_resolve(loaded, rgb)
    assert not caplog.records
    for _ in range(2):
        super_resolve(loaded, rgb, tile=8)
    assert len(caplog.records) == 1 and 'Pooled' in caplog.text

    network = 'network_g={type: IMDN, nf: 16, num_modules: 1, upscale: 2}'  # channel attention: not tiling-exact
    model = SRModel(tiny_options(tmp_path, [network], is_train=False), cpu)
    lq = torch.rand(1, 3, 12, 12)
    model.predict(lq)
    for _ in range(2):
        model.predict(lq, tile=8)
    assert len(caplog.records) == 2 and 'IMDN' in caplog.records[-1].getMessage()


EIMN_NET = 'network_g={type: EIMN, embed_dims: 16, num_stages: 2, scale: 2}'  # its ArchSpec has an inference form


def _randomize_batch_norms(net: nn.Module) -> None:
    """Running statistics other than the defaults, so that folding them is tested."""
    generator = torch.Generator().manual_seed(3)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


@torch.no_grad()
def test_evaluation_runs_the_inference_form_rebuilt_only_when_the_weights_change(tmp_path):
    model = SRModel(tiny_options(tmp_path, [EIMN_NET], is_train=False), torch.device('cpu'))
    _randomize_batch_norms(model.net_g)
    lq = torch.rand(1, 3, 11, 13)
    form = model.inference_network()
    assert form is not model.net_g and model.inference_network() is form  # built once for these weights
    assert (model.predict(lq) - model.net_g.eval()(lq)).abs().max() <= 1e-5

    next(model.net_g.parameters()).add_(0.05)  # an optimizer step changes parameters in place
    rebuilt = model.inference_network()
    assert rebuilt is not form
    assert (model.predict(lq) - model.net_g.eval()(lq)).abs().max() <= 1e-5

    model.net_g.train()(lq)  # a training forward moves BatchNorm's running statistics, and nothing else
    assert model.inference_network() is not rebuilt
    assert (model.predict(lq) - model.net_g.eval()(lq)).abs().max() <= 1e-5

    off = SRModel(tiny_options(tmp_path, [EIMN_NET, 'val.inference_form=false'], is_train=False), torch.device('cpu'))
    assert off.inference_network() is off.net_g
