"""MSRResNet against BasicSR's own code (basicsr/archs/srresnet_arch.py).

The golden fixtures (tests/fixtures/srresnet/, README.md there says how they were made) hold the official
network's seeded initial weights, moved weights and outputs at x2, x3 and x4: srkit's class must draw the same
weights from the same seed, load the moved ones strictly and give the same outputs. The released sizes must
have the official keys, shapes and parameter counts, so BasicSR's model-zoo files load strictly; a checkpoint
of another scale must be refused naming the key that differs. The registry-wide sweep
(tests/test_arch_registry.py) checks shapes, round trips, tiling and the spec's claims.
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
from srkit.core.errors import CheckpointError, OptionError

FIXTURE = Path(__file__).resolve().parent / 'fixtures' / 'srresnet'
TOL = {'rtol': 1e-5, 'atol': 1e-5}
X4_PARAMS = 1_517_571  # 001_MSRResNet_x4_f64b16_DIV2K_1000k_B16G1_wandb: 64 channels, 16 blocks
SCALES = (2, 3, 4)
PUBLISHED = json.loads(gzip.decompress((FIXTURE / 'official_keys.json.gz').read_bytes()))


@pytest.fixture(scope='module')
def golden() -> dict[int, dict[str, Any]]:
    return {scale: torch.load(FIXTURE / f'msrresnet_x{scale}.pt', map_location='cpu', weights_only=True)
            for scale in SCALES}


def widen(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The stored float16 tensors as the float32 values the official code ran with."""
    return {k: v.float() for k, v in state.items()}


@pytest.mark.parametrize('scale', SCALES)
def test_a_seed_gives_basicsrs_initial_weights(golden, scale: int) -> None:
    torch.manual_seed(0)
    state = create('MSRResNet', scale, **golden[scale]['args']).state_dict()
    expected = golden[scale]['init']
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize('scale', SCALES)
@torch.no_grad()
def test_computes_what_basicsr_computes(golden, scale: int) -> None:
    """``even`` and ``odd`` (sides no multiple of anything) inputs; the bilinear skip included."""
    net = create('MSRResNet', scale, **golden[scale]['args']).eval()
    net.load_state_dict(widen(golden[scale]['state']), strict=True)
    for name, x in golden[scale]['inputs'].items():
        torch.testing.assert_close(net(x), golden[scale]['outputs'][name], **TOL)


@pytest.mark.parametrize('listing_name', list(PUBLISHED))
def test_released_sizes_have_the_official_keys_shapes_and_counts(listing_name: str) -> None:
    """Built on the meta device (no weights drawn): key names, order and shapes as BasicSR's constructor."""
    expected = PUBLISHED[listing_name]
    with torch.device('meta'):
        net = create(expected['type'], **expected['args'])
    assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == expected['keys']
    count = sum(p.numel() for p in net.parameters())
    assert count == expected['params'] == arch_spec('MSRResNet').params[expected['args']['upscale']]


def test_the_x4_parameter_count_is_basicsrs_release() -> None:
    assert PUBLISHED['MSRResNet_x4']['params'] == arch_spec('MSRResNet').params[4] == X4_PARAMS


@pytest.mark.parametrize('saved_scale, message', [
    (3, r'"upconv1\.weight" has shape \(144, 16, 3, 3\) in the checkpoint but \(64, 16, 3, 3\) in the network'),
    (2, r'missing from the checkpoint, first "upconv2\.weight"'),
])
def test_a_checkpoint_of_another_scale_is_refused_naming_the_key(golden, tmp_path: Path, saved_scale: int,
                                                                 message: str) -> None:
    """x3's upconv1 is wider than x4's; x2's has x4's shape, so only the missing upconv2 gives it away."""
    path = tmp_path / f'net_g_x{saved_scale}.pth'
    torch.save({'params': widen(golden[saved_scale]['state'])}, path)
    net = create('MSRResNet', 4, **golden[4]['args'])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(net, path, arch_type='MSRResNet')
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items()), 'a refused file changed weights'


def test_an_x4_checkpoint_starts_x3_training_without_strict_load(golden, tmp_path: Path) -> None:
    """BasicSR's x2 and x3 option files start from the x4 release with strict_load_g false: every tensor but
    the upsampler's is taken."""
    path = tmp_path / 'net_g_x4.pth'
    x4_state = widen(golden[4]['state'])
    torch.save({'params': x4_state}, path)
    net = create('MSRResNet', 3, **golden[3]['args'])
    report = load_pretrained(net, path, strict=False, arch_type='MSRResNet')
    assert report['missing'] == [] and report['unexpected'] == ['upconv2.weight', 'upconv2.bias']
    assert [m.split(':')[0] for m in report['mismatched']] == ['upconv1.weight', 'upconv1.bias']
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in x4_state.items() if not k.startswith(('upconv1', 'upconv2')))


def test_option_mistakes_name_the_option() -> None:
    with pytest.raises(OptionError, match=r'supports scales \[2, 3, 4\], not 8'):
        create('MSRResNet', 8)
    with pytest.raises(OptionError, match=r'"network_g".*num_out_ch must equal num_in_ch \(3\), got 1') as info:
        create('MSRResNet', 4, num_in_ch=3, num_out_ch=1, num_feat=4, num_block=1)
    assert info.value.key == 'network_g'
