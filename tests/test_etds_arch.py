"""ETDS: official checkpoints load into the right preset and scale; the training form's initial state."""
import pytest
import torch
from conftest import shared_path
from torch.nn import functional as F

from srkit.archs import arch_spec, create
from srkit.archs.etds_arch import ETDS, ETDSForInference, Plain
from srkit.core.errors import OptionError
from srkit.core.registry import ARCH_REGISTRY

VARIANTS = ('M4C32', 'M5C16', 'M6C32', 'M7C48')
OFFICIAL = [(v, s) for v in VARIANTS for s in (2, 3, 4)]
# Plain-form parameter counts in thousands, as ARCHS.md lists them (x2, x3, x4).
PARAMS_K = {'M4C32': (41.5, 46.8, 54.1), 'M5C16': (13.9, 16.9, 21.4), 'M6C32': (60.0, 65.3, 72.6),
            'M7C48': (152, 160, 170)}


def _official(name: str) -> dict[str, torch.Tensor]:
    return torch.load(shared_path('weights', 'ETDS', name), map_location='cpu', weights_only=True)


@pytest.mark.parametrize('variant,scale', OFFICIAL)
def test_official_checkpoint_loads_strictly_into_its_preset(variant, scale):
    net = ARCH_REGISTRY.get(f'ETDSForInference_{variant}')(upscale=scale).eval()
    net.load_state_dict(_official(f'ETDS_{variant}_x{scale}.pth'), strict=True)
    with torch.no_grad():
        out = net(torch.rand(1, 3, 9, 11) * 4 - 2)  # far outside [0, 1]: the ReLU clamp must still hold
    assert out.shape == (1, 3, 9 * scale, 11 * scale)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize('variant,wrong_scale', [('M6C32', 2), ('M6C32', 3), ('M4C32', 4)])
def test_official_checkpoint_refuses_other_scale_or_preset(variant, wrong_scale):
    state = _official('ETDS_M6C32_x4.pth')
    net = ARCH_REGISTRY.get(f'ETDSForInference_{variant}')(upscale=wrong_scale)
    with pytest.raises(RuntimeError, match='size mismatch|Missing|Unexpected'):
        net.load_state_dict(state, strict=True)


def test_plain_baseline_loads_strictly():
    net = ARCH_REGISTRY.get('Plain_M6C32')(upscale=4)
    net.load_state_dict(_official('Plain_M6C32_x4.pth'), strict=True)
    assert isinstance(net, Plain)
    with pytest.raises(RuntimeError):
        ETDSForInference(upscale=4, num_block=6, num_feat=32).load_state_dict(_official('Plain_M6C32_x4.pth'))


def test_dual_stream_checkpoint_loads_strictly_into_training_form():
    net = ARCH_REGISTRY.get('ETDS_M6C32')(upscale=4)
    net.load_state_dict(_official('ETDS_M6C32_x4_normal_loss.pth'), strict=True)
    assert isinstance(net, ETDS)


@pytest.mark.parametrize('variant', VARIANTS)
def test_plain_form_parameter_counts_match_the_paper(variant):
    for scale, expected_k in zip((2, 3, 4), PARAMS_K[variant]):
        net = ARCH_REGISTRY.get(f'ETDSForInference_{variant}')(upscale=scale)
        count_k = sum(p.numel() for p in net.parameters()) / 1000
        assert round(count_k, 1 if expected_k < 100 else 0) == expected_k


def test_x3_has_one_dummy_channel_only_at_x3():
    assert ETDSForInference(upscale=3, num_block=1, num_feat=8).conv_last.out_channels == 28
    assert ETDSForInference(upscale=2, num_block=1, num_feat=8).conv_last.out_channels == 12
    assert ETDSForInference(upscale=4, num_block=1, num_feat=8).conv_last.out_channels == 48


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_training_form_starts_as_nearest_upsampling_plus_independent_backbone(scale):
    torch.manual_seed(scale)
    net = ETDS(upscale=scale, num_block=2, num_feat=11).eval()
    image = torch.rand(2, 3, 7, 5)
    with torch.no_grad():
        out, low = net(image)
        # The backbone alone, as a Plain network with the same weights: nothing flows in from the residual.
        plain = Plain(upscale=scale, num_block=2, num_feat=8)
        plain.load_state_dict({k: v for k, v in net.state_dict().items() if 'residual' not in k})
        backbone = plain(image)
    nearest = F.interpolate(image, scale_factor=scale, mode='nearest')
    assert low.shape == out.shape == (2, 3, 7 * scale, 5 * scale)
    assert torch.equal(low, nearest)
    torch.testing.assert_close(out, backbone + nearest)
    assert not torch.allclose(out, low)  # conv_last is not zero-initialised: x + r differs from r at init


def test_training_form_residual_parameters_are_named_residual():
    """The ETDS model freezes the residual stream by name, as the official one does."""
    net = ETDS(upscale=2, num_block=2, num_feat=8)
    residual = {n for n, _ in net.named_parameters() if 'residual' in n}
    assert residual == {f'{m}.{p}' for p in ('weight', 'bias') for m in
                        ('conv_residual_first', 'conv_residual_last', 'residual_convs.0', 'residual_convs.1',
                         'add_residual_convs.0', 'add_residual_convs.1')}


@pytest.mark.parametrize('name', ['ETDS_M5C16', 'ETDSForInference_M5C16', 'Plain_M6C32'])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_output_shapes(name, scale):
    net = ARCH_REGISTRY.get(name)(upscale=scale).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 6, 13))
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape == (1, 3, 6 * scale, 13 * scale)


def test_presets_declare_a_spec():
    for name in ('ETDS', 'ETDSForInference', 'Plain', 'ETDS_M7C48', 'ETDSForInference_M4C32', 'Plain_M6C32'):
        assert ARCH_REGISTRY.meta(name) is not None
        assert arch_spec(name).supports_scale(3) and arch_spec(name).supports_scale(5)


@pytest.mark.parametrize('kwargs,match', [({'num_feat': 3}, 'num_feat'),
                                          ({'num_residual_feat': 2}, 'num_residual_feat'),
                                          ({'num_out_ch': 1}, 'num_out_ch')])
def test_invalid_widths_are_option_errors(kwargs, match):
    with pytest.raises(OptionError, match=match):
        create('ETDS', 4, **kwargs)
