"""Whole-image inference: padding to a multiple, tiling with overlap, x8 self-ensemble."""
import torch
from torch import nn

from srkit.models.inference import pad_to_multiple, predict, run_tiled, self_ensemble


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
