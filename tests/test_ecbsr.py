"""ECBSR, ECBSRT, ECBSRET: re-parameterisation identities, the self-checking converter, the official code's
initial weights and outputs (a golden fixture), the released checkpoints' shapes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from script_helpers import load_script, user_error
from torch.nn import functional as F

from srkit.archs import create
from srkit.archs import ecbsr_convert as convert_module
from srkit.archs.ecbsr_arch import ECB, ECBSR, ECBSRET, ECBSRT, SEQ_TYPES, SeqConv3x3
from srkit.archs.ecbsr_convert import (
    ecbsr_hyperparams,
    reparameterize_ecbsr,
    transform_ecbsr,
    verify_reparameterization,
)
from srkit.core.errors import CheckpointError, OptionError

# Small networks from the authors' own code (tests/fixtures/etds_ecbsr/README.md says how they were made).
GOLDEN = Path(__file__).resolve().parent / 'fixtures' / 'etds_ecbsr' / 'official_golden.pt'


@pytest.fixture(scope='module')
def golden() -> dict[str, Any]:
    return torch.load(GOLDEN, map_location='cpu', weights_only=True)


def close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def moved(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """``net`` with every parameter moved by seeded noise: the edge branches' scales start at 1e-3, too small
    for a wrong stencil or a wrong fold to show. Outputs stay O(1), as a trained network's."""
    generator = torch.Generator().manual_seed(seed)
    for param in net.parameters():
        param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return net


def seeded_rand(*shape: int, seed: int = 7) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# ---- re-parameterisation identities (the official scripts/validation/reparameterization.py, per branch) ----

@pytest.mark.parametrize('seq_type', SEQ_TYPES)
@pytest.mark.parametrize('inp,out', [(3, 8), (8, 8), (8, 12), (16, 27)])
@torch.no_grad()
def test_each_branch_is_one_3x3_conv(seq_type: str, inp: int, out: int) -> None:
    torch.manual_seed(inp * out)
    branch = moved(SeqConv3x3(seq_type, inp, out), seed=out)
    x = seeded_rand(2, inp, 13, 10)
    close(F.conv2d(x, *branch.rep_params(), padding=1), branch(x))  # the border included


@pytest.mark.parametrize('act_type', ['prelu', 'relu', 'linear'])
@torch.no_grad()
def test_a_block_in_eval_mode_equals_its_five_branches(act_type: str) -> None:
    torch.manual_seed(1)
    block = moved(ECB(8, 12, act_type=act_type), seed=2)
    x = seeded_rand(1, 8, 9, 11)
    close(block.eval()(x), block.train()(x))


# ---- the converter ------------------------------------------------------------------------------------------

def random_ecbsr(scale: int, act_type: str = 'prelu', seed: int = 0) -> ECBSR:
    torch.manual_seed(seed)
    return moved(ECBSR(upscale=scale, num_block=2, num_feat=8, act_type=act_type), seed + 1).eval()


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('act_type', ['prelu', 'relu'])
@torch.no_grad()
def test_reparameterised_network_equals_the_training_form(scale: int, act_type: str) -> None:
    training = random_ecbsr(scale, act_type, seed=scale)
    plain = reparameterize_ecbsr(training)
    assert isinstance(plain, ECBSRT) and not plain.training
    x = seeded_rand(2, 3, 15, 12)
    close(plain(x), training.train()(x))  # branch by branch, in float32
    reloaded = create('ECBSRT', scale, num_block=2, num_feat=8, act_type=act_type)
    reloaded.load_state_dict(plain.state_dict(), strict=True)


def test_a_state_dict_converts_and_its_shape_is_read_from_it() -> None:
    training = random_ecbsr(3, seed=5)
    assert ecbsr_hyperparams(training.state_dict()) == {'num_in_ch': 3, 'num_out_ch': 3, 'upscale': 3,
                                                        'num_block': 2, 'num_feat': 8, 'act_type': 'prelu'}
    plain = reparameterize_ecbsr(training.state_dict(), check_image=seeded_rand(1, 3, 8, 8))
    with torch.no_grad():
        x = seeded_rand(1, 3, 9, 9)
        close(plain(x), training.train()(x))


def test_an_activation_without_parameters_must_be_named() -> None:
    state = random_ecbsr(2, 'relu').state_dict()
    with pytest.raises(CheckpointError, match='name the parameter-free activation'):
        reparameterize_ecbsr(state)
    assert reparameterize_ecbsr(state, act_type='relu').act_type == 'relu'
    with pytest.raises(CheckpointError, match='holds PReLU slopes'):
        reparameterize_ecbsr(random_ecbsr(2).state_dict(), act_type='relu')


@pytest.mark.parametrize('plain_form', [ECBSRT, ECBSRET])
@pytest.mark.parametrize('as_state_dict', [False, True])
def test_a_network_not_in_training_form_is_refused(plain_form: type, as_state_dict: bool) -> None:
    net = plain_form(upscale=2, num_block=1, num_feat=8)
    with pytest.raises(CheckpointError, match='already in a plain form'):
        reparameterize_ecbsr(net.state_dict() if as_state_dict else net)


def test_another_networks_state_dict_is_refused() -> None:
    with pytest.raises(CheckpointError, match='Not an ECBSR training-form state dict'):
        reparameterize_ecbsr(create('ETDS', 2).state_dict())


def test_the_converter_refuses_a_result_that_is_off(monkeypatch) -> None:
    fold = convert_module._fold

    def sabotaged(training, args):
        plain = fold(training, args)
        with torch.no_grad():
            plain.backbone[1][0].weight[0, 0, 0, 0] += 1e-3  # one tap of one kernel, slightly off
        return plain

    monkeypatch.setattr(convert_module, '_fold', sabotaged)
    with pytest.raises(CheckpointError, match='not equivalent'):
        reparameterize_ecbsr(random_ecbsr(2))


def test_verify_catches_nan_and_leaves_the_networks_alone() -> None:
    training = random_ecbsr(2).train()
    before = {k: v.clone() for k, v in training.state_dict().items()}
    plain = reparameterize_ecbsr(training)
    assert training.training and all(torch.equal(before[k], v) for k, v in training.state_dict().items())
    assert verify_reparameterization(training, plain, [seeded_rand(1, 3, 8, 8)]) <= 1e-5
    with torch.no_grad():
        plain.backbone[0][0].bias[0] = float('nan')
    with pytest.raises(CheckpointError, match='not equivalent'):
        verify_reparameterization(training, plain, [seeded_rand(1, 3, 8, 8)])


# ---- the official code (golden fixture) ----------------------------------------------------------------------

def assert_same_state(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key].shape == value.shape and torch.equal(ours[key], value), key


def test_a_seed_gives_the_official_initial_weights(golden) -> None:
    torch.manual_seed(0)
    assert_same_state(create('ECBSR', **golden['ecbsr_args']).state_dict(), golden['ecbsr_init'])


@torch.no_grad()
def test_ecbsr_computes_what_the_official_network_computes(golden) -> None:
    net = create('ECBSR', **golden['ecbsr_args'])
    net.load_state_dict(golden['ecbsr_state'], strict=True)
    close(net.train()(golden['input']), golden['ecbsr_train_output'])
    close(net.eval()(golden['input']), golden['ecbsr_eval_output'])


@torch.no_grad()
def test_reparameterisation_gives_the_official_plain_network(golden) -> None:
    plain = reparameterize_ecbsr(golden['ecbsr_state'])
    for key, value in golden['ecbsrt_state'].items():
        close(plain.state_dict()[key], value)
    close(plain(golden['input']), golden['ecbsrt_output'])


@torch.no_grad()
def test_official_plain_and_et_states_load_and_compute_the_same(golden) -> None:
    for name, key in (('ECBSRT', 'ecbsrt'), ('ECBSRET', 'ecbsret')):
        net = create(name, **golden['ecbsr_args']).eval()
        net.load_state_dict(golden[f'{key}_state'], strict=True)
        close(net(golden['input']), golden[f'{key}_output'])
    # The ET form is the plain form clamped to [0, 1]: what the transformation promises.
    close(golden['ecbsret_output'], golden['ecbsrt_output'].clamp(0, 1))


# ---- the equivalent transformation (ECBSRT -> ECBSRET) ----------------------------------------------------------

@pytest.mark.parametrize('scale', [2, 3, 4])
@torch.no_grad()
def test_the_et_form_is_the_plain_form_clamped(scale: int) -> None:
    plain = reparameterize_ecbsr(random_ecbsr(scale, seed=20 + scale))
    with torch.no_grad():
        plain.backbone[-1][0].bias.add_(0.5)  # outputs on both sides of [0, 1]
    et = transform_ecbsr(plain)
    x = seeded_rand(2, 3, 11, 13)
    reference = plain(x)
    assert reference.min() < 0 and reference.max() > 1
    close(et(x), reference.clamp(0, 1))
    assert et.backbone[-1][0].out_channels == (28 if scale == 3 else 3 * scale**2)


@torch.no_grad()
def test_the_et_gives_the_official_et_network(golden) -> None:
    plain = create('ECBSRT', **golden['ecbsr_args']).eval()
    plain.load_state_dict(golden['ecbsrt_state'], strict=True)
    et = transform_ecbsr(plain)
    assert_same_state(et.state_dict(), golden['ecbsret_state'])
    close(et(golden['input']), golden['ecbsret_output'])


def test_the_et_refuses_what_it_cannot_transform(monkeypatch) -> None:
    with pytest.raises(CheckpointError, match='takes an ECBSRT, not ECBSR'):
        transform_ecbsr(random_ecbsr(2))
    with pytest.raises(CheckpointError, match='keeps non-negative values'):
        transform_ecbsr(ECBSRT(upscale=2, num_block=1, num_feat=8, act_type='softplus'))
    et_fold = convert_module._et_fold

    def sabotaged(plain):
        et = et_fold(plain)
        with torch.no_grad():
            et.backbone[0][0].weight[-1, 2, 1, 1] = 0.99  # one image carrier slightly off
        return et

    monkeypatch.setattr(convert_module, '_et_fold', sabotaged)
    with pytest.raises(CheckpointError, match='equivalent transformation: the result is not equivalent'):
        transform_ecbsr(reparameterize_ecbsr(random_ecbsr(2)))


# ---- shapes of the released checkpoints --------------------------------------------------------------------

# Tensor sizes summed over ECNUSR/ETDS's experiments/pretrained_models/ECBSR/ECBSR{,_ET}_M{b}C{c}_x{s}.pth.
RELEASED = {('ECBSRT', 4, 16): (11548, 13723, 16768), ('ECBSRT', 4, 32): (41516, 45851, 51920),
            ('ECBSRT', 6, 40): (92372, 97787, 105368), ('ECBSRET', 4, 16): (17468, 21020, 26180),
            ('ECBSRET', 4, 32): (52044, 57900, 65940), ('ECBSRET', 6, 40): (111268, 118276, 127756)}


@pytest.mark.parametrize('name,num_block,num_feat', list(RELEASED))
def test_parameter_counts_of_every_released_checkpoint(name: str, num_block: int, num_feat: int) -> None:
    for scale, count in zip((2, 3, 4), RELEASED[name, num_block, num_feat]):
        net = create(name, scale, num_block=num_block, num_feat=num_feat, act_type='prelu')
        assert sum(p.numel() for p in net.parameters()) == count, (name, num_block, num_feat, scale)


def test_impossible_arguments_are_option_errors() -> None:
    with pytest.raises(OptionError, match='act_type must be one of'):
        create('ECBSR', 2, act_type='gelu')
    with pytest.raises(OptionError, match='num_out_ch'):
        create('ECBSRT', 2, num_out_ch=1)


# ---- scripts/convert_etds.py --network ECBSR -------------------------------------------------------------------

def test_cli_reparameterises_an_ecbsr_checkpoint(tmp_path: Path, capsys) -> None:
    training = random_ecbsr(4, seed=9)
    source, output = tmp_path / 'ecbsr.pth', tmp_path / 'ecbsrt.pth'
    torch.save({'params_ema': training.state_dict()}, source)
    cli = load_script('convert_etds.py')
    cli.main(['--network', 'ECBSR', '--input', str(source), '--output', str(output), '--num-block', '2'])
    assert 'ECBSRT' in capsys.readouterr().out
    plain = create('ECBSRT', 4, num_block=2, num_feat=8).eval()
    plain.load_state_dict(torch.load(output, weights_only=True)['params'], strict=True)
    with torch.no_grad():
        x = seeded_rand(1, 3, 9, 9)
        close(plain(x), training.train()(x))
    message = user_error(cli.main, ['--network', 'ECBSR', '--input', str(source), '--output',
                                    str(tmp_path / 'other.pth'), '--arch', 'ETDS_M6C32'], capsys)
    assert '--arch names an ETDS preset' in message
    message = user_error(cli.main, ['--network', 'ECBSR', '--input', str(output), '--output',
                                    str(tmp_path / 'other.pth')], capsys)
    assert 'already in a plain form' in message and not (tmp_path / 'other.pth').exists()
