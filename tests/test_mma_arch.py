"""MMA: shapes, the published size, the official state-dict layout and the bidirectional Mamba layer."""
from __future__ import annotations

import importlib
import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from srkit.archs import arch_spec, create, mma_arch
from srkit.archs.mma_arch import MMA, BiMamba, _causal_conv_silu
from srkit.ops import selective_scan_chunked, selective_scan_reference

scan_module = importlib.import_module('srkit.ops.selective_scan')  # the package's attribute is the function

PUBLISHED = {'num_feat': 192, 'num_block': 24}


def official_keys(num_feat: int, num_block: int, upscale: int, num_in_ch: int = 3, num_out_ch: int = 3,
                  d_state: int = 16, d_conv: int = 4, expand: int = 2, ffn_expansion_factor: float = 2.66,
                  compress_ratio: int = 4, squeeze_factor: int = 30) -> Iterator[tuple[str, tuple[int, ...]]]:
    """(key, shape) of every tensor in the official MMA's state dict, read off the official modules:
    MMA -> body = make_layer(MLPMixer) -> norm1/norm2 (LayerNorm.body = WithBias_LayerNorm), attn =
    HybridAttBlock(mamba = MambaLayer.mamba = Mamba(bimamba_type='v2'), channel_attention = CAB), ffn =
    FeedForward; Upsample = [conv, PixelShuffle] * n. The mean is a plain attribute, not in the state dict."""
    c, d_inner, rank = num_feat, expand * num_feat, math.ceil(num_feat / 16)
    hidden, ffn = c // compress_ratio, int(c * ffn_expansion_factor)
    yield from [('conv_first.weight', (c, num_in_ch, 3, 3)), ('conv_first.bias', (c,))]
    for i in range(num_block):
        p = f'body.{i}.'
        for norm in ('norm1', 'norm2'):
            yield from [(f'{p}{norm}.body.weight', (c,)), (f'{p}{norm}.body.bias', (c,))]
        m = f'{p}attn.mamba.mamba.'
        yield f'{m}in_proj.weight', (2 * d_inner, c)
        for s in ('', '_b'):
            yield from [(f'{m}conv1d{s}.weight', (d_inner, 1, d_conv)), (f'{m}conv1d{s}.bias', (d_inner,)),
                        (f'{m}x_proj{s}.weight', (rank + 2 * d_state, d_inner)),
                        (f'{m}dt_proj{s}.weight', (d_inner, rank)), (f'{m}dt_proj{s}.bias', (d_inner,)),
                        (f'{m}A{s}_log', (d_inner, d_state)), (f'{m}D{s}', (d_inner,))]
        yield f'{m}out_proj.weight', (c, d_inner)
        cab, squeezed = f'{p}attn.channel_attention.cab.', c // squeeze_factor
        yield from [(f'{cab}0.weight', (hidden, c, 3, 3)), (f'{cab}0.bias', (hidden,)),
                    (f'{cab}2.weight', (c, hidden, 3, 3)), (f'{cab}2.bias', (c,)),
                    (f'{cab}3.attention.1.weight', (squeezed, c, 1, 1)), (f'{cab}3.attention.1.bias', (squeezed,)),
                    (f'{cab}3.attention.3.weight', (c, squeezed, 1, 1)), (f'{cab}3.attention.3.bias', (c,))]
        yield from [(f'{p}ffn.project_in.weight', (2 * ffn, c, 1, 1)), (f'{p}ffn.project_in.bias', (2 * ffn,)),
                    (f'{p}ffn.dwconv.weight', (2 * ffn, 1, 3, 3)), (f'{p}ffn.dwconv.bias', (2 * ffn,)),
                    (f'{p}ffn.project_out.weight', (c, ffn, 1, 1)), (f'{p}ffn.project_out.bias', (c,))]
    yield from [('conv_after_body.weight', (c, c, 3, 3)), ('conv_after_body.bias', (c,))]
    stages = [(0, 9)] if upscale == 3 else [(2 * k, 4) for k in range(int(math.log2(upscale)))]
    for index, factor in stages:
        yield from [(f'upsample.{index}.weight', (factor * c, c, 3, 3)), (f'upsample.{index}.bias', (factor * c,))]
    yield from [('conv_last.weight', (num_out_ch, c, 3, 3)), ('conv_last.bias', (num_out_ch,))]


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_light_preset_upscales(scale):
    torch.manual_seed(0)
    net = create('MMA_light', scale).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 6, 5))
    assert out.shape == (1, 3, 6 * scale, 5 * scale)
    assert torch.isfinite(out).all()
    assert arch_spec('MMA_light').supports_scale(scale)


def test_parameter_counts():
    published = sum(p.numel() for p in MMA(upscale=2, **PUBLISHED).parameters())
    assert published == 19_824_627  # the paper's 19.8 M at x2
    assert abs(published / 19.8e6 - 1) < 0.01
    light = sum(p.numel() for p in create('MMA_light', 2).parameters())
    assert 0.9e6 < light < 1.1e6


@pytest.mark.parametrize('scale', [2, 3])
def test_official_state_dict_loads_strictly(scale):
    net = MMA(upscale=scale, **PUBLISHED)
    keys = dict(official_keys(upscale=scale, **PUBLISHED))
    assert len(keys) == 2 + 24 * 34 + 2 + 2 + 2  # 34 tensors per block; one upsampling conv at x2 and x3
    net.load_state_dict({k: torch.zeros(shape) for k, shape in keys.items()}, strict=True)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == keys


def _bimamba_by_the_official_formula(layer: BiMamba, x: torch.Tensor) -> torch.Tensor:
    """Vim's v2 path spelled out: padded conv1d cut to L, sequential scans, backward on flipped tokens."""
    xz = torch.einsum('od,bdl->bol', layer.in_proj.weight, x)

    def direction(xz, conv, x_proj, dt_proj, A_log, D):
        u, z = xz.chunk(2, dim=1)
        length = u.shape[-1]
        pad = conv.kernel_size[0] - 1
        u = F.silu(F.conv1d(u, conv.weight, conv.bias, padding=pad, groups=conv.groups)[..., :length])
        dbl = torch.einsum('od,bdl->bol', x_proj.weight, u)
        dt, B, C = dbl.split([layer.dt_rank, layer.d_state, layer.d_state], dim=1)
        return selective_scan_reference(u, dt_proj.weight @ dt, -torch.exp(A_log), B, C, D, z=z,
                                        delta_bias=dt_proj.bias, delta_softplus=True)

    fwd = direction(xz, layer.conv1d, layer.x_proj, layer.dt_proj, layer.A_log, layer.D)
    bwd = direction(xz.flip(-1), layer.conv1d_b, layer.x_proj_b, layer.dt_proj_b, layer.A_b_log, layer.D_b)
    return torch.einsum('od,bdl->bol', layer.out_proj.weight, fwd + bwd.flip(-1))


def test_bimamba_matches_the_official_formula():
    torch.manual_seed(0)
    layer = BiMamba(d_model=16).double()
    x = torch.randn(2, 16, 45, dtype=torch.float64)
    torch.testing.assert_close(layer(x), _bimamba_by_the_official_formula(layer, x), rtol=1e-9, atol=1e-10)


def test_bimamba_sees_both_directions_and_is_mirror_symmetric_with_shared_weights():
    torch.manual_seed(0)
    layer = BiMamba(d_model=8).double()
    x = torch.randn(1, 8, 20, dtype=torch.float64)
    changed = x.clone()
    changed[..., -1] += 1
    assert not torch.allclose(layer(x)[..., 0], layer(changed)[..., 0])  # the last token reaches the first
    for name in ('conv1d', 'x_proj', 'dt_proj'):
        getattr(layer, f'{name}_b').load_state_dict(getattr(layer, name).state_dict())
    layer.A_b_log.data.copy_(layer.A_log)
    layer.D_b.data.copy_(layer.D)
    torch.testing.assert_close(layer(x.flip(-1)), layer(x).flip(-1))


def test_causal_conv_ignores_future_tokens():
    conv = torch.nn.Conv1d(4, 4, 4, groups=4)
    x = torch.randn(1, 4, 10)
    changed = x.clone()
    changed[..., 6:] += 1
    a, b = _causal_conv_silu(x, conv), _causal_conv_silu(changed, conv)
    assert a.shape == x.shape
    torch.testing.assert_close(a[..., :6], b[..., :6])
    assert not torch.allclose(a[..., 6:], b[..., 6:])


def test_channels_last_and_fp16_autocast_match_the_spec():
    torch.manual_seed(0)
    net = create('MMA_light', 2, num_block=2).eval()
    spec = arch_spec('MMA')
    x = torch.rand(1, 3, 8, 7)
    with torch.no_grad():
        ref = net(x)
        assert spec.channels_last_safe
        out = net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        assert spec.fp16_safe
        with torch.autocast('cpu', dtype=torch.float16):
            half = net(x)
    assert (half.float() - ref).abs().max() < 1e-2  # 8-bit images differ by at most ~2 levels


def test_inference_scan_leaves_the_output_unchanged(monkeypatch):
    """A no-grad forward runs selective_scan_inference; the chunked scan (what it ran before, and what training
    runs) gives the same image within 1e-5 on the same weights and input."""
    torch.manual_seed(0)
    net = create('MMA_light', 2, num_block=2).eval()
    x = torch.rand(1, 3, 13, 23)  # 299 tokens: more than one group of lanes, a multiple of no block size
    used = []
    real = scan_module.selective_scan_inference

    def inference(*args, **kwargs):
        used.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(scan_module, 'selective_scan_inference', inference)
    with torch.no_grad():
        new = net(x)
        monkeypatch.setattr(mma_arch, 'selective_scan', selective_scan_chunked)
        old = net(x)
    assert len(used) == 2 * 2  # two directions in each of the two blocks
    assert (new - old).abs().max() <= 1e-5
