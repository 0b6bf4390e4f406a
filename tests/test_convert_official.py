"""scripts/convert_official.py: every official EIMN/IMDN file becomes srkit's {'params': ...} with the same
weights, loads strictly, and a file for another variant or scale is refused (a user error: exit 2, one
``srkit: error:`` line) without writing anything."""
from pathlib import Path

import pytest
import torch
from conftest import shared_path
from script_helpers import load_script, user_error

from srkit.archs import create
from srkit.archs.weights import adapt_official_state_dict, load_pretrained
from srkit.core.checkpoint import extract_state_dict, load_checkpoint_file

OFFICIAL = [  # (file under weights/, arch, scale)
    *[(f'EIMN/EIMN_A_x{s}.pth', 'EIMN_A', s) for s in (2, 3, 4)],
    *[(f'EIMN/EIMN_L_x{s}.pth', 'EIMN_L', s) for s in (2, 3)],
    *[(f'IMDN/IMDN_x{s}.pth', 'IMDN', s) for s in (2, 3, 4)],
    ('IMDN/IMDN_AS.pth', 'IMDN_AS', 4),
    ('IMDN/model_RTC.pth', 'IMDN_RTC', 2),
]


def _cli():
    return load_script('convert_official.py')


@pytest.mark.parametrize('weights,arch,scale', OFFICIAL, ids=[Path(w).stem for w, _, _ in OFFICIAL])
def test_official_file_converts_to_params_that_load_strictly_and_equal_it(weights, arch, scale, tmp_path):
    source = shared_path('weights', weights)
    output = tmp_path / 'converted.pth'
    cli = _cli()
    cli.main(['--arch', arch, '--scale', str(scale), '--input', str(source), '--output', str(output)])

    converted = load_checkpoint_file(output)
    assert list(converted) == ['params']
    net = create(arch, scale)
    assert load_pretrained(net, output, param_key='params', strict=True) == {'missing': [], 'unexpected': [],
                                                                               'mismatched': []}
    official = adapt_official_state_dict(arch, extract_state_dict(load_checkpoint_file(source), None, str(source)))
    assert list(converted['params']) == list(net.state_dict())  # srkit's own names and order
    assert all(torch.equal(converted['params'][k], official[k]) for k in official)
    assert all(torch.equal(v, converted['params'][k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize('arch,scale,first_key,checkpoint_shape,network_shape', [
    ('EIMN_A', 3, 'tail.0.weight', (12, 64, 3, 3), (27, 64, 3, 3)),  # right variant, wrong scale
    ('IMDN', 4, 'upsampler.0.weight', (12, 64, 3, 3), (48, 64, 3, 3)),  # another family's file
])
def test_wrong_scale_is_refused_naming_the_first_key_and_both_shapes(arch, scale, first_key, checkpoint_shape,
                                                                      network_shape, tmp_path, capsys):
    source = shared_path('weights', 'EIMN/EIMN_A_x2.pth' if arch == 'EIMN_A' else 'IMDN/IMDN_x2.pth')
    output = tmp_path / 'out.pth'
    message = user_error(_cli().main, ['--arch', arch, '--scale', str(scale), '--input', str(source),
                                       '--output', str(output)], capsys)
    expected = f'"{first_key}" has shape {checkpoint_shape} in the checkpoint but {network_shape} in the network'
    assert expected in message
    assert str(source) in message and not output.exists()


def test_wrong_variant_is_refused_naming_the_first_missing_key(tmp_path, capsys):
    source = shared_path('weights', 'EIMN', 'EIMN_A_x2.pth')
    message = user_error(_cli().main, ['--arch', 'EIMN_L', '--scale', '2', '--input', str(source),
                                       '--output', str(tmp_path / 'out.pth')], capsys)
    assert 'first "block15.0.layer_scale_1" (64,)' in message


def test_unknown_arch_and_unsupported_scale_are_user_errors(tmp_path, capsys):
    files = ['--input', str(shared_path('weights', 'IMDN', 'IMDN_AS.pth')), '--output', str(tmp_path / 'a')]
    cli = _cli()
    assert 'No architecture called "IMDN_ASX"' in user_error(cli.main, ['--arch', 'IMDN_ASX', '--scale', '4', *files],
                                                             capsys)
    assert 'supports scales [4]' in user_error(cli.main, ['--arch', 'IMDN_AS', '--scale', '2', *files], capsys)
    assert not (tmp_path / 'a').exists()


def test_existing_output_is_kept_unless_force(tmp_path, capsys):
    source = shared_path('weights', 'IMDN', 'model_RTC.pth')
    output = tmp_path / 'rtc.pth'
    output.write_bytes(b'mine')
    args = ['--arch', 'IMDN_RTC', '--scale', '2', '--input', str(source), '--output', str(output)]
    cli = _cli()
    assert 'pass --force' in user_error(cli.main, args, capsys) and output.read_bytes() == b'mine'
    cli.main(args + ['--force'])
    assert sum(v.numel() for v in load_checkpoint_file(output)['params'].values()) == 20190
    assert [p.name for p in tmp_path.iterdir()] == ['rtc.pth']  # no temporary file left behind
