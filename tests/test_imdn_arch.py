"""IMDN, IMDN_AS and IMDN_RTC: official checkpoints load strictly, shapes, numeric claims."""
from __future__ import annotations

import pytest
import torch
from conftest import shared_path
from test_eimn_arch import official, spec_claims_hold

from srkit.archs import ARCH_REGISTRY, arch_spec
from srkit.archs.imdn_arch import IMDN_RTC, rtc_official_keys
from srkit.archs.weights import adapt_official_state_dict, check_state_dict
from srkit.core.errors import CheckpointError

CHECKPOINTS = [('IMDN_x2', 'IMDN', 2), ('IMDN_x3', 'IMDN', 3), ('IMDN_x4', 'IMDN', 4),
               ('IMDN_AS', 'IMDN_AS', 4), ('model_RTC', 'IMDN_RTC', 2)]


@pytest.mark.parametrize('stem,arch,scale', CHECKPOINTS)
def test_official_checkpoint_loads_strictly(stem: str, arch: str, scale: int) -> None:
    net = ARCH_REGISTRY.get(arch)(upscale=scale)
    state = official('IMDN', stem, arch)
    check_state_dict(net, state)
    net.load_state_dict(state, strict=True)
    assert torch.equal(net.upsampler[0].bias, state['upsampler.0.bias'])


def test_rtc_mapping_covers_every_official_key_and_counts_20190_parameters() -> None:
    raw = torch.load(shared_path('weights', 'IMDN', 'model_RTC.pth'), map_location='cpu', weights_only=True)
    assert all(key.startswith('model.') for key in raw)
    mapped = rtc_official_keys(raw)  # with the `model.` prefix still on
    assert set(mapped) == set(IMDN_RTC().state_dict())
    assert mapped['LR_conv.weight'] is raw['model.1.sub.5.weight']
    assert mapped['IMDB3.c4.bias'] is raw['model.1.sub.2.c4.bias']
    assert sum(v.numel() for v in mapped.values()) == 20190


def test_wrong_scale_or_variant_is_named() -> None:
    state = official('IMDN', 'IMDN_x2', 'IMDN')
    with pytest.raises(CheckpointError, match=r'"upsampler\.0\.weight" has shape \(12, 64, 3, 3\) in the '
                                              r'checkpoint but \(48, 64, 3, 3\) in the network'):
        check_state_dict(ARCH_REGISTRY.get('IMDN')(upscale=4), state)
    with pytest.raises(CheckpointError, match=r'first "fea_conv\.0\.weight" \(64, 3, 3, 3\)'):
        check_state_dict(ARCH_REGISTRY.get('IMDN_AS')(), official('IMDN', 'IMDN_x4', 'IMDN'))


def test_unknown_rtc_key_survives_the_mapping_and_is_reported() -> None:
    state = adapt_official_state_dict('IMDN_RTC', {'model.3.weight': torch.zeros(1), 'model.0.bias': torch.zeros(12)})
    assert set(state) == {'3.weight', 'fea_conv.bias'}
    with pytest.raises(CheckpointError, match=r'not in the network, first "3\.weight"'):
        check_state_dict(IMDN_RTC(), state)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_forward_shape_at_every_scale(scale: int) -> None:
    for net in (ARCH_REGISTRY.get('IMDN')(upscale=scale), IMDN_RTC(upscale=scale)):
        with torch.no_grad():
            assert net.eval()(torch.rand(2, 3, 10, 7)).shape == (2, 3, 10 * scale, 7 * scale)


def test_imdn_as_returns_the_input_size() -> None:
    spec = arch_spec('IMDN_AS')
    assert spec.same_size_output and spec.pad_multiple == 4
    with torch.no_grad():
        assert ARCH_REGISTRY.get('IMDN_AS')().eval()(torch.rand(1, 3, 24, 16)).shape == (1, 3, 24, 16)


def test_cca_statistics_survive_float16_range() -> None:
    cca = ARCH_REGISTRY.get('IMDN')().IMDB1.cca
    x = torch.full((1, 64, 4, 4), 1000.0)
    x[..., 0, 0] = -1000.0  # variance ~2.3e5 > float16 max: must be taken in float32
    out = cca.half()(x.half())
    assert torch.isfinite(out).all()


def test_fp16_and_channels_last_claims_hold_for_imdn_x4() -> None:
    # Set5/Set14 reproduction through test.py's code path: tests/test_eimn_imdn_reproduction.py
    net = ARCH_REGISTRY.get('IMDN')(upscale=4).eval()
    net.load_state_dict(official('IMDN', 'IMDN_x4', 'IMDN'), strict=True)
    spec_claims_hold(net, 'IMDN', 4)
