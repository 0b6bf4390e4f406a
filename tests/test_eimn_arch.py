"""EIMN and EIMNBaidu: the official checkpoints load strictly into the right preset; the official code's
outputs and initial weights (a golden fixture); weight_path; shapes, options, spec claims."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image

from srkit.archs import ARCH_REGISTRY, arch_spec, create
from srkit.archs.eimn_arch import EIMN
from srkit.archs.weights import adapt_official_state_dict, check_state_dict
from srkit.core.errors import CheckpointError, OptionError

CHECKPOINTS = [('EIMN_A', 2), ('EIMN_A', 3), ('EIMN_A', 4), ('EIMN_L', 2), ('EIMN_L', 3)]


def official(folder: str, stem: str, arch: str) -> dict[str, torch.Tensor]:
    """An official checkpoint after srkit's generic adaptation for ``arch``."""
    path = shared_path('weights', folder, f'{stem}.pth')
    return adapt_official_state_dict(arch, torch.load(path, map_location='cpu', weights_only=True))


def read_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert('RGB'), dtype=np.float32)


def to_batch(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.copy()).permute(2, 0, 1)[None]


def spec_claims_hold(net: torch.nn.Module, name: str, scale: int) -> None:
    """The ArchSpec's fp16_safe / channels_last_safe claims, on a real 32x32 crop: within one grey level."""
    spec = arch_spec(name)
    x = to_batch(read_rgb(shared_path('data', 'Set5', f'LRbicx{scale}', 'baby.png'))[:32, :32]) / 255
    with torch.no_grad():
        reference = net(x)
        if spec.fp16_safe:
            with torch.autocast('cpu', dtype=torch.float16):
                half = net(x)
            assert (half.float() - reference).abs().max() < 1 / 255
        if spec.channels_last_safe:
            out = net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
            net.to(memory_format=torch.contiguous_format)
            assert (out - reference).abs().max() < 1e-4


@pytest.mark.parametrize('arch,scale', CHECKPOINTS)
def test_official_checkpoint_loads_strictly(arch: str, scale: int) -> None:
    net = ARCH_REGISTRY.get(arch)(scale=scale)
    state = official('EIMN', f'{arch}_x{scale}', arch)
    check_state_dict(net, state)
    net.load_state_dict(state, strict=True)
    assert torch.equal(net.tail[0].weight, state['tail.0.weight'])


def test_wrong_scale_names_the_tail_and_both_shapes() -> None:
    state = official('EIMN', 'EIMN_A_x2', 'EIMN_A')
    with pytest.raises(CheckpointError, match=r'"tail\.0\.weight" has shape \(12, 64, 3, 3\) in the checkpoint '
                                              r'but \(27, 64, 3, 3\) in the network'):
        check_state_dict(ARCH_REGISTRY.get('EIMN_A')(scale=3), state)


def test_wrong_preset_names_the_first_missing_stage() -> None:
    state = official('EIMN', 'EIMN_A_x3', 'EIMN_A')
    first_missing = r'missing from the checkpoint, first "block15\.0\.layer_scale_1" \(64,\)'
    with pytest.raises(CheckpointError, match=first_missing):
        check_state_dict(ARCH_REGISTRY.get('EIMN_L')(scale=3), state)
    with pytest.raises(CheckpointError, match=r'not in the network, first "block15\.0\.'):
        check_state_dict(ARCH_REGISTRY.get('EIMN_A')(scale=2), official('EIMN', 'EIMN_L_x2', 'EIMN_L'))


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_forward_shape_at_every_scale(scale: int) -> None:
    net = ARCH_REGISTRY.get('EIMN_A')(scale=scale, num_stages=2).eval()  # depth does not change shapes
    with torch.no_grad():
        out = net(torch.rand(2, 3, 11, 7))
    assert out.shape == (2, 3, 11 * scale, 7 * scale)
    assert arch_spec('EIMN_A').supports_scale(scale)


def test_any_width_and_depth() -> None:
    net = EIMN(embed_dims=20, depths=2, num_stages=3, scale=3, mlp_ratios=2.0, drop_path_rate=0.1).eval()
    assert sum(1 for name, _ in net.named_children() if name.startswith('block')) == 3
    assert len(net.block3) == 2
    with torch.no_grad():
        assert net(torch.rand(1, 3, 9, 5)).shape == (1, 3, 27, 15)
    with pytest.raises(ValueError, match='embed_dims'):
        EIMN(embed_dims=4)


def test_presets_differ_only_in_depth_and_accept_overrides() -> None:
    large, small = ARCH_REGISTRY.get('EIMN_L')(scale=2), ARCH_REGISTRY.get('EIMN_A')(scale=2)
    assert (large.num_stages, small.num_stages) == (16, 14)
    narrow = ARCH_REGISTRY.get('EIMN_L')(scale=4, embed_dims=32)
    assert narrow.head[0].out_channels == 32 and narrow.tail[0].out_channels == 48


def test_freeze_param_leaves_only_the_tail_trainable() -> None:
    net = EIMN(num_stages=2, freeze_param=True)
    trainable = {name for name, p in net.named_parameters() if p.requires_grad}
    assert trainable == {'tail.0.weight', 'tail.0.bias'}


def test_fp16_and_channels_last_claims_hold_for_eimn_a_x4() -> None:
    # Full Set5 reproduction (matches REFERENCE.md's measured row) costs 5-30 s on a shared CPU: test.py's job.
    net = ARCH_REGISTRY.get('EIMN_A')(scale=4).eval()
    net.load_state_dict(official('EIMN', 'EIMN_A_x4', 'EIMN_A'), strict=True)
    spec_claims_hold(net, 'EIMN_A', 4)


# Small networks from the authors' own code (tests/fixtures/eimn/README.md says how they were made).
GOLDEN = Path(__file__).resolve().parent / 'fixtures' / 'eimn' / 'official_golden.pt'


@pytest.fixture(scope='module')
def golden() -> dict[str, Any]:
    return torch.load(GOLDEN, map_location='cpu', weights_only=True)


def assert_same_state(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key].shape == value.shape and torch.equal(ours[key], value), key


@pytest.mark.parametrize('arch,scale,key', [('EIMN', 2, 'eimn_init'), ('EIMNBaidu', 1, 'baidu_init')])
def test_a_seed_gives_the_official_initial_weights(golden, arch: str, scale: int, key: str) -> None:
    """Same parameter names, shapes and initial values as the official constructor under the same seed."""
    torch.manual_seed(0)
    net = create(arch, scale, **golden['args'])
    assert_same_state(net.state_dict(), golden[key])


def baidu(golden: dict[str, Any], **kwargs: Any) -> torch.nn.Module:
    return create('EIMNBaidu', 1, **golden['args'], **kwargs).eval()


def test_eimn_baidu_computes_what_the_official_network_computes(golden) -> None:
    net = baidu(golden)
    net.load_state_dict(golden['baidu_state'], strict=True)
    with torch.no_grad():
        out = net(golden['baidu_input'])
    assert out.shape == golden['baidu_input'].shape
    torch.testing.assert_close(out, golden['baidu_output'], rtol=1e-5, atol=1e-5)


def test_eimn_baidu_is_a_same_size_variant_at_scale_1() -> None:
    spec = arch_spec('EIMNBaidu')
    assert spec.scales == (1,) and spec.same_size_output and spec.scale_arg == 'scale' and not spec.subpixel_tail
    net = ARCH_REGISTRY.get('EIMNBaidu')(embed_dims=8, num_stages=1).eval()
    assert [type(m) for m in net.tail] == [torch.nn.Conv2d] and net.tail[0].out_channels == 3
    with torch.no_grad():
        assert net(torch.rand(1, 3, 7, 5)).shape == (1, 3, 7, 5)
    with pytest.raises(OptionError, match=r'supports scales \[1\], not 2'):
        create('EIMNBaidu', 2)
    with pytest.raises(OptionError, match='scale must be 1, got 2'):
        create('EIMNBaidu', scale=2)


@pytest.mark.parametrize('wrap', [lambda s: s, lambda s: {'state_dict': s}, lambda s: {'params_ema': s}],
                         ids=['raw', 'state_dict', 'params_ema'])
def test_weight_path_loads_the_file_when_the_network_is_built(golden, tmp_path, wrap) -> None:
    """The official layouts (a raw state dict, or one under ``state_dict``) and srkit's own."""
    path = tmp_path / 'weights.pth'
    torch.save(wrap(golden['baidu_state']), path)
    net = baidu(golden, weight_path=str(path), freeze_param=True)
    with torch.no_grad():
        torch.testing.assert_close(net(golden['baidu_input']), golden['baidu_output'], rtol=1e-5, atol=1e-5)
    assert {name for name, p in net.named_parameters() if p.requires_grad} == {'tail.0.weight', 'tail.0.bias'}


@pytest.mark.parametrize('empty', ['', None])
def test_an_empty_or_null_weight_path_means_random_weights(golden, empty) -> None:
    torch.manual_seed(0)
    assert_same_state(baidu(golden, weight_path=empty).state_dict(), golden['baidu_init'])


def test_a_weight_path_that_is_missing_or_does_not_fit_names_the_file(golden, tmp_path) -> None:
    missing = tmp_path / 'nowhere.pth'
    with pytest.raises(CheckpointError, match=f'{re.escape(str(missing))} does not exist') as info:
        create('EIMN', 2, **golden['args'], weight_path=str(missing))
    assert info.value.key == 'network_g'
    baidu_file = tmp_path / 'baidu.pth'
    torch.save(golden['baidu_state'], baidu_file)
    unfit = rf'{re.escape(str(baidu_file))} does not fit EIMN: "tail\.0\.weight" has shape \(3, 16, 3, 3\) in the'
    with pytest.raises(CheckpointError, match=unfit + r' checkpoint but \(12, 16, 3, 3\)'):
        create('EIMN', 2, **golden['args'], weight_path=str(baidu_file))


def test_weight_path_takes_an_official_release() -> None:
    path = shared_path('weights', 'EIMN', 'EIMN_L_x2.pth')
    net = create('EIMN_L', 2, weight_path=str(path))
    assert torch.equal(net.tail[0].weight, official('EIMN', 'EIMN_L_x2', 'EIMN_L')['tail.0.weight'])


def test_norm_is_accepted_only_as_the_batchnorm_the_official_blocks_use() -> None:
    for norm in ('BatchNorm2d', torch.nn.BatchNorm2d):
        assert isinstance(EIMN(num_stages=1, norm=norm).block1[0].norm1, torch.nn.BatchNorm2d)
    with pytest.raises(OptionError, match=r"norm must be BatchNorm2d .* got 'LayerNorm'"):
        create('EIMN', 2, num_stages=1, norm='LayerNorm')
