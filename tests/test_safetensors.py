"""Network files as .safetensors: written atomically by train.py, read by suffix wherever checkpoints are loaded."""
import sys

import pytest
import torch
from training_helpers import tiny_options

from srkit import test as test_py  # not `main as test_...`: pytest would collect it
from srkit.archs import create
from srkit.archs.weights import load_pretrained
from srkit.core import checkpoint as ckpt
from srkit.core.dist import DistContext
from srkit.core.errors import CheckpointError, OptionError
from srkit.engine.tester import read_results
from srkit.engine.trainer import Trainer

pytest.importorskip('safetensors', reason='safetensors is not installed (an optional extra)')


def two_networks() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    return create('EDSR_tiny', 2), create('EDSR_tiny', 2)


def assert_same_weights(net: torch.nn.Module, expected: torch.nn.Module) -> None:
    ours, theirs = net.state_dict(), expected.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize('param_key', ['params', 'params_ema', None])  # None: the tools' default, EMA first
def test_round_trip_through_load_pretrained_follows_param_key(tmp_path, param_key):
    raw, ema = two_networks()
    path = tmp_path / 'net_g_8.safetensors'
    ckpt.atomic_save({'params': raw.state_dict(), 'params_ema': ema.state_dict()}, path)
    assert [p.name for p in tmp_path.iterdir()] == ['net_g_8.safetensors']  # no temporary file left
    net = create('EDSR_tiny', 2)
    assert load_pretrained(net, path, param_key=param_key) == {'missing': [], 'unexpected': [], 'mismatched': []}
    assert_same_weights(net, raw if param_key == 'params' else ema)


def test_a_flat_state_dict_from_another_tool_loads_with_the_same_fit_checks(tmp_path):
    from safetensors.torch import save_file

    source, _ = two_networks()
    path = tmp_path / 'other.safetensors'
    save_file({f'module.{k}': v.contiguous() for k, v in source.state_dict().items()}, str(path))
    net = create('EDSR_tiny', 2)
    load_pretrained(net, path, param_key='params', arch_type='EDSR_tiny')  # no "params" entry: the tensors themselves
    assert_same_weights(net, source)
    with pytest.raises(CheckpointError, match=r'other\.safetensors does not fit.*upsample'):
        load_pretrained(create('EDSR_tiny', 4), path, arch_type='EDSR_tiny')


def test_channels_last_tensors_are_written_contiguous_and_read_back_equal(tmp_path):
    weight = torch.randn(4, 3, 3, 3).contiguous(memory_format=torch.channels_last)
    ckpt.atomic_save({'params': {'w': weight}}, tmp_path / 'w.safetensors')
    assert torch.equal(ckpt.load_checkpoint_file(tmp_path / 'w.safetensors')['params']['w'], weight)


@pytest.mark.parametrize('damage', ['truncate', 'garbage'])
def test_a_damaged_file_is_named(tmp_path, damage):
    path = tmp_path / 'bad.safetensors'
    ckpt.atomic_save({'params': {'w': torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:300] if damage == 'truncate' else b'not a safetensors file at all')
    with pytest.raises(CheckpointError, match=r'bad\.safetensors is corrupt or truncated'):
        ckpt.load_checkpoint_file(path)


def test_training_writes_safetensors_networks_that_test_py_loads(tmp_path):
    options = tiny_options(tmp_path, ['train.total_iter=4', 'val.val_freq=4', 'logger.network_format=safetensors'])
    trainer = Trainer(options, DistContext())
    trainer.train()
    models = tmp_path / 'exp' / 'models'
    assert sorted(p.name for p in models.iterdir()) == ['net_g_4.safetensors', 'net_g_latest.safetensors']
    state = ckpt.load_checkpoint_file(tmp_path / 'exp' / 'training_states' / '4.state')  # still a torch file
    saved = ckpt.load_checkpoint_file(models / 'net_g_4.safetensors')
    assert saved.keys() == {'params', 'params_ema'}
    for key in saved:
        assert all(torch.equal(saved[key][name], state['network'][key][name]) for name in state['network'][key])

    opt = tmp_path / 'test.yml'
    opt.write_text(f'''
name: tiny_test
scale: 2
datasets:
  test_1: {{name: tiny_val, type: HRBicubicDataset, dataroot_gt: {tmp_path}/val}}
network_g: {{type: EDSR, num_feat: 8, num_block: 1, upscale: 2}}
path: {{pretrain_network_g: {models}/net_g_latest.safetensors, param_key_g: params_ema,
        results_root: {tmp_path}/results}}
val:
  pbar: false
  metrics:
    psnr: {{type: calculate_psnr, crop_border: 2, test_y_channel: true}}
''')
    test_py.main(['-opt', str(opt)])
    psnr = read_results(tmp_path / 'results' / 'results.json').means['tiny_val']['psnr']
    assert psnr == pytest.approx(trainer.state.best['tiny_val']['psnr'][0], abs=1e-3)  # the EMA weights, validated


def test_without_the_package_the_option_and_the_file_say_how_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / 'w.safetensors'
    ckpt.atomic_save({'params': {'w': torch.ones(2)}}, path)
    monkeypatch.setitem(sys.modules, 'safetensors', None)
    with pytest.raises(CheckpointError, match=r'Reading .*w\.safetensors needs the safetensors package: '
                                              r'pip install safetensors'):
        ckpt.load_checkpoint_file(path)
    with pytest.raises(OptionError, match=r'"logger\.network_format" is safetensors.*pip install safetensors') as info:
        tiny_options(tmp_path, ['logger.network_format=safetensors'])
    assert info.value.key == 'logger.network_format' and info.value.file == 'tiny.yml'
