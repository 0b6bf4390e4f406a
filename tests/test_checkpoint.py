"""Checkpoint files: atomic writes, refusal of unsafe pickles, corrupt files, resume fallback, key reports."""
import errno
import os

import pytest
import torch
from torch import nn

from srkit.archs.weights import load_pretrained
from srkit.core import checkpoint as ckpt
from srkit.core.errors import CheckpointError
from srkit.core.logger import setup_logger


@pytest.mark.parametrize('name', ['net.pth', 'net.safetensors'])  # both network formats go through atomic_save
def test_atomic_save_failure_keeps_previous(tmp_path, monkeypatch, name):
    target = tmp_path / name
    ckpt.atomic_save({'params': {'w': torch.ones(2)}}, target)
    before = target.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', disk_full)
    with pytest.raises(CheckpointError, match='disk is full.*previous checkpoint files are intact'):
        ckpt.atomic_save({'params': {'w': torch.zeros(2)}}, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


class Payload:
    def __reduce__(self):
        return (os.system, ('touch PWNED_BY_CHECKPOINT',))


def test_code_carrying_checkpoint_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        torch.save({'params': {'w': torch.ones(1)}, 'x': Payload()}, f, pickle_protocol=2)
    with pytest.raises(CheckpointError, match='refused'):
        ckpt.load_checkpoint_file(path)
    assert not (tmp_path / 'PWNED_BY_CHECKPOINT').exists()


@pytest.mark.parametrize('content', [b'', b'not a checkpoint at all', 'truncate'])
def test_corrupt_files_name_the_file(tmp_path, content):
    path = tmp_path / 'bad.pth'
    if content == 'truncate':
        ckpt.atomic_save({'params': {'w': torch.ones(1000)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match='bad.pth'):
        ckpt.load_checkpoint_file(path)


def test_find_resume_state_falls_back_past_corrupt(tmp_path, capsys):
    setup_logger()
    for it in (10, 20, 30):
        ckpt.atomic_save({'iter': it, 'network': {'params': {}}}, ckpt.training_state_path(tmp_path, it))
    ckpt.training_state_path(tmp_path, 30).write_bytes(b'')
    path, state = ckpt.find_resume_state(tmp_path)
    assert state['iter'] == 20 and path.name == '20.state'
    assert '30.state' in capsys.readouterr().out


def test_load_pretrained_strips_module_and_reports(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 3, 1))
    state = {f'module.{k}': v + 1 for k, v in net.state_dict().items()}
    path = tmp_path / 'w.pth'
    torch.save(state, path)
    fresh = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 3, 1))
    report = load_pretrained(fresh, path, param_key='params', strict=True, arch_type=None)
    assert not any(report.values())
    assert torch.equal(fresh[0].weight, net[0].weight + 1)


def test_load_pretrained_mismatch_names_key_and_shapes(tmp_path):
    path = tmp_path / 'w.pth'
    torch.save({'params': nn.Sequential(nn.Conv2d(3, 8, 3)).state_dict()}, path)
    expected = r'"0.weight" has shape \(8, 3, 3, 3\) in the checkpoint but \(4, 3, 3, 3\) in the network'
    with pytest.raises(CheckpointError, match=expected):
        load_pretrained(nn.Sequential(nn.Conv2d(3, 4, 3)), path, strict=True)
    report = load_pretrained(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1)), path, strict=False)
    assert report['missing'] == ['1.weight', '1.bias'] and len(report['mismatched']) == 2


@pytest.mark.parametrize('seed', range(20))
def test_random_damage_is_always_a_checkpoint_error(tmp_path, seed):
    """Flipped bytes, cut files and garbage: every failure to read is a CheckpointError naming the file."""
    import random
    rng = random.Random(seed)
    path = tmp_path / 'x.state'
    ckpt.atomic_save({'iter': 3, 'network': {'params': {'w': torch.randn(64)}}, 'rng': [(1, (2, 3), None)]}, path)
    data = bytearray(path.read_bytes())
    kind = seed % 3
    if kind == 0:
        data = data[:rng.randrange(1, len(data))]
    elif kind == 1:
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    else:
        data = bytearray(rng.randbytes(rng.randint(1, 400)))
    path.write_bytes(bytes(data))
    try:
        ckpt.load_checkpoint_file(path)
    except CheckpointError as exc:
        assert 'x.state' in str(exc)
