"""RRDBNet, VGGStyleDiscriminator and UNetDiscriminatorSN against their authors' code (BasicSR, Real-ESRGAN).

The golden fixtures (tests/fixtures/gan_archs/, README.md there says how they were made) hold the official
networks' seeded initial weights, moved weights and outputs: srkit's classes must draw the same weights from
the same seed, load the moved ones strictly and give the same outputs. The released sizes must have the
official keys, shapes and parameter counts, so Real-ESRGAN's files load strictly. The registry-wide sweep
(tests/test_arch_registry.py) checks shapes, round trips and the specs' claims.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from srkit.archs import arch_spec, create
from srkit.archs.weights import load_pretrained
from srkit.core.errors import OptionError

FIXTURE = Path(__file__).resolve().parent / 'fixtures' / 'gan_archs'
TOL = {'rtol': 1e-5, 'atol': 1e-5}
X4_PARAMS = 16_697_987  # RealESRGAN_x4plus.pth / RealESRNet_x4plus.pth: RRDBNet, 23 blocks, 64 channels


def _load(name: str) -> dict[str, Any]:
    return torch.load(FIXTURE / name, map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def rrdb() -> dict[str, Any]:
    return _load('rrdbnet.pt')


@pytest.fixture(scope='module')
def vgg() -> dict[str, Any]:
    return _load('vgg_discriminator.pt')


@pytest.fixture(scope='module')
def unet() -> dict[str, Any]:
    return _load('unet_discriminator.pt')


def widen(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The stored float16 tensors as the float32 values the official code ran with."""
    return {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}


def assert_same_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


def rrdb_state(rrdb: dict[str, Any], scale: int) -> dict[str, torch.Tensor]:
    """The moved official state of ``scale``: the x4 network's, with that scale's own conv_first weight."""
    state = widen(rrdb['state'])
    if scale != 4:
        state['conv_first.weight'] = rrdb['conv_first'][scale].float()
    return state


@pytest.mark.parametrize('scale', [4, 2, 1])
def test_rrdbnet_a_seed_gives_basicsrs_initial_weights(rrdb, scale: int) -> None:
    torch.manual_seed(0)
    state = create('RRDBNet', scale, **rrdb['args']).state_dict()
    if scale == 4:
        assert_same_state(state, rrdb['init'])
        return
    sums = rrdb['init_sums'][scale]
    assert list(state) == list(sums)
    for key, value in state.items():
        assert float(value.double().sum()) == pytest.approx(sums[key], rel=1e-12, abs=1e-12), key


@pytest.mark.parametrize('scale', [4, 2, 1])
@torch.no_grad()
def test_rrdbnet_computes_what_basicsrs_computes(rrdb, scale: int) -> None:
    """``even`` as BasicSR runs it; ``odd`` (no multiple of 2 or 4) as Real-ESRGAN's inference pads it."""
    net = create('RRDBNet', scale, **rrdb['args']).eval()
    net.load_state_dict(rrdb_state(rrdb, scale), strict=True)
    for name, x in rrdb['inputs'].items():
        torch.testing.assert_close(net(x), rrdb['outputs'][scale][name], **TOL)


@torch.no_grad()
def test_a_released_params_ema_file_loads_strictly(rrdb, tmp_path: Path) -> None:
    """Real-ESRGAN's files keep the weights under ``params_ema`` (the option files' param_key_g)."""
    path = tmp_path / 'RealESRGAN_x2plus_small.pth'
    torch.save({'params_ema': rrdb_state(rrdb, 2)}, path)
    net = create('RRDBNet', 2, **rrdb['args']).eval()
    assert load_pretrained(net, path, param_key='params_ema', arch_type='RRDBNet') == {
        'missing': [], 'unexpected': [], 'mismatched': []}
    torch.testing.assert_close(net(rrdb['inputs']['even']), rrdb['outputs'][2]['even'], **TOL)


def test_vgg_a_seed_gives_basicsrs_initial_weights(vgg) -> None:
    torch.manual_seed(0)
    assert_same_state(create('VGGStyleDiscriminator', **vgg['args']).state_dict(), vgg['init'])


@torch.no_grad()
def test_vgg_computes_what_basicsrs_computes(vgg) -> None:
    """Eval mode (running statistics), then one training-mode forward (batch statistics, running ones updated)."""
    net = create('VGGStyleDiscriminator', **vgg['args']).eval()
    net.load_state_dict(widen(vgg['state']), strict=True)
    x = vgg['input'].float() / 255
    torch.testing.assert_close(net(x), vgg['eval_output'], **TOL)
    torch.testing.assert_close(net.train()(x), vgg['train_output'], **TOL)
    buffers = {k: v for k, v in net.state_dict().items() if k in vgg['train_buffers']}
    assert list(buffers) == list(vgg['train_buffers'])
    for key, value in vgg['train_buffers'].items():
        torch.testing.assert_close(buffers[key], value, **TOL)


def test_unet_a_seed_gives_real_esrgans_initial_weights(unet) -> None:
    """Spectral norm's u and v included: they are drawn when each conv is wrapped, in the authors' order."""
    torch.manual_seed(0)
    assert_same_state(create('UNetDiscriminatorSN', **unet['args']).state_dict(), unet['init'])


@torch.no_grad()
def test_unet_computes_what_real_esrgans_computes(unet) -> None:
    """Two training-mode forwards (each runs one power iteration and updates u and v), then eval mode."""
    net = create('UNetDiscriminatorSN', **unet['args'])
    net.load_state_dict(widen(unet['state']), strict=True)
    net.train()
    for expected in unet['train_outputs']:
        torch.testing.assert_close(net(unet['input']), expected, **TOL)
    state = net.state_dict()
    for key, value in unet['after_train'].items():
        torch.testing.assert_close(state[key], value, **TOL)
    torch.testing.assert_close(net.eval()(unet['input']), unet['eval_output'], **TOL)


@torch.no_grad()
def test_unet_without_skips_crops_other_sizes_as_the_authors_code_does(unet) -> None:
    net = create('UNetDiscriminatorSN', **{**unet['args'], 'skip_connection': False}).eval()
    net.load_state_dict(widen(unet['state']), strict=True)
    assert unet['odd'].shape[-2:] == (20, 28)
    torch.testing.assert_close(net(unet['odd']), unet['no_skip_output'], **TOL)


@torch.no_grad()
def test_a_released_netd_file_loads_without_spectral_norm_metadata(unet, tmp_path: Path) -> None:
    """A plain dict (no torch state-dict metadata, as a checkpoint reader returns it) keeps u and v as saved."""
    path = tmp_path / 'netD.pth'
    torch.save({'params': dict(widen(unet['state']))}, path)
    net = create('UNetDiscriminatorSN', **unet['args'])
    load_pretrained(net, path, arch_type='UNetDiscriminatorSN')
    net.train()
    torch.testing.assert_close(net(unet['input']), unet['train_outputs'][0], **TOL)


PUBLISHED = json.loads(gzip.decompress((FIXTURE / 'official_keys.json.gz').read_bytes()))


@pytest.mark.parametrize('listing_name', list(PUBLISHED))
def test_released_sizes_have_the_official_keys_shapes_and_counts(listing_name: str) -> None:
    """Built on the meta device (no weights drawn): key names, order and shapes as the official constructors."""
    expected = PUBLISHED[listing_name]
    type_name, args = expected['type'], expected['args']
    with torch.device('meta'):
        net = create(type_name, **args)
    assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == expected['keys']
    count = sum(p.numel() for p in net.parameters())
    assert count == expected['params']
    if type_name == 'RRDBNet' and 'num_block' not in args:  # the default: 23, Real-ESRGAN's x4plus and x2plus
        assert arch_spec('RRDBNet').params[args['scale']] == count


def test_the_x4_parameter_count_is_real_esrgans() -> None:
    assert PUBLISHED['RRDBNet_x4']['params'] == arch_spec('RRDBNet').params[4] == X4_PARAMS


@torch.no_grad()
def test_wrong_input_sizes_are_refused_naming_the_accepted_ones() -> None:
    vgg = create('VGGStyleDiscriminator', num_in_ch=3, num_feat=2).eval()
    vgg.check_input_size(128, 128)
    for h, w in ((256, 256), (128, 130), (96, 128)):
        with pytest.raises(ValueError, match=rf'scores 128x128 images only, not {h}x{w}'):
            vgg.check_input_size(h, w)
    with pytest.raises(ValueError, match=r'scores 128x128 images only, not 128x144'):
        vgg(torch.rand(1, 3, 128, 144))  # the authors' code would score it (the width is never checked)

    unet = create('UNetDiscriminatorSN', num_in_ch=3, num_feat=2)
    unet.check_input_size(8, 24)
    for h, w in ((12, 16), (16, 20), (4, 8)):
        with pytest.raises(ValueError, match=rf'multiples of 8 .* not {h}x{w}'):
            unet.check_input_size(h, w)
    with pytest.raises(ValueError, match=r'multiples of 8 .* not 12x16'):
        unet(torch.rand(1, 3, 12, 16))
    no_skip = create('UNetDiscriminatorSN', num_in_ch=3, num_feat=2, skip_connection=False)
    no_skip.check_input_size(9, 13)
    with pytest.raises(ValueError, match=r'at least 8x8 .* not 7x16'):
        no_skip.check_input_size(7, 16)


def test_option_mistakes_name_the_option() -> None:
    with pytest.raises(OptionError, match=r'"network_d".*input_size must be 128 or 256, got 192') as info:
        create('VGGStyleDiscriminator', option_key='network_d', num_in_ch=3, num_feat=64, input_size=192)
    assert info.value.key == 'network_d'
    with pytest.raises(OptionError, match=r'discriminator \(network_d\): it takes no scale'):
        create('UNetDiscriminatorSN', 4, num_in_ch=3)
    with pytest.raises(OptionError, match=r'supports scales \[1, 2, 4\], not 3'):
        create('RRDBNet', 3)
