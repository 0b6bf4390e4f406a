"""logger.wandb: the scalars and validation images TensorBoard gets, through wandb (run offline here)."""
import json
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from script_helpers import user_error
from training_helpers import TINY_TRAIN, tiny_options

from srkit.core.dist import DistContext
from srkit.core.errors import OptionError
from srkit.data.image_io import read_image, tensor_to_img
from srkit.engine.trainer import Trainer
from srkit.train import main as train_main

LOG_HEADER, LOG_BLOCK, LOG_FULL, LOG_LAST = 7, 32768, 1, 4  # leveldb log format, as wandb writes it


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """wandb without an account or network: runs stay on disk, and nothing is written outside tmp_path."""
    wandb = pytest.importorskip('wandb', reason='wandb is not installed (an optional extra)')
    monkeypatch.setenv('WANDB_MODE', 'offline')
    for variable in ('WANDB_CONFIG_DIR', 'WANDB_CACHE_DIR', 'WANDB_DATA_DIR', 'WANDB_ARTIFACT_DIR'):
        monkeypatch.setenv(variable, str(tmp_path / 'wandb_home'))
    monkeypatch.setenv('WANDB_SILENT', 'true')
    monkeypatch.setenv('WANDB_X_DISABLE_STATS', 'true')  # no system-metrics sampling on a shared CI machine
    yield wandb
    wandb.teardown()  # the next test starts a new wandb session, with its own settings


def offline_history(run_folder: Path) -> dict[int, dict[str, Any]]:
    """The logged rows of an offline run by step, read from its transaction log ``run-<id>.wandb``.

    An offline run keeps its history only there (no wandb-summary.json until it is synced): leveldb-log
    framing (a 7-byte ``:W&B`` header, then 32 KiB blocks of chunks, each with a 7-byte header: checksum,
    length, type FULL/FIRST/MIDDLE/LAST; a block's last < 7 bytes are padding) around protobuf records of
    wandb's own schema, ``wandb.proto.wandb_internal_pb2.Record``. Nested values (an image's fields) come
    as one item per leaf, keyed by their path.
    """
    from wandb.proto.wandb_internal_pb2 import Record

    [log] = run_folder.glob('run-*.wandb')
    data = log.read_bytes()
    assert data[:4] == b':W&B', f'{log} is not a wandb transaction log'
    rows: dict[int, dict[str, Any]] = {}
    chunks, pos = [], LOG_HEADER
    while pos + LOG_HEADER <= len(data):
        if LOG_BLOCK - pos % LOG_BLOCK < LOG_HEADER:
            pos += LOG_BLOCK - pos % LOG_BLOCK
            continue
        _, length, kind = struct.unpack('<IHB', data[pos:pos + LOG_HEADER])
        chunks.append(data[pos + LOG_HEADER:pos + LOG_HEADER + length])
        pos += LOG_HEADER + length
        if kind in (LOG_FULL, LOG_LAST):
            record = Record.FromString(b''.join(chunks))
            chunks = []
            if record.WhichOneof('record_type') == 'history':
                row = rows.setdefault(record.history.step.num, {})
                for item in record.history.item:
                    *parents, leaf = list(item.nested_key) or [item.key]
                    node = row
                    for parent in parents:
                        node = node.setdefault(parent, {})
                    node[leaf] = json.loads(item.value_json)
    return rows


def test_an_offline_run_holds_the_logged_scalars_and_validation_images(tmp_path, offline_wandb):
    options = tiny_options(tmp_path, ['train.total_iter=4', 'val.val_freq=4', 'logger.wandb.project=srkit-test'])
    trainer = Trainer(options, DistContext())
    run = trainer.writers.writers[-1].run
    assert run.name == 'tiny' and (tmp_path / 'exp' / 'wandb') in Path(run.dir).parents  # in the experiment folder
    steps = {}
    real_step = trainer.model.train_step

    def recording_step(micro, it):
        losses = real_step(micro, it)
        steps[it] = {'losses/l_pixel': losses['l_pixel'], 'lr': trainer.model.current_lr()}
        return losses

    trainer.model.train_step = recording_step
    trainer.train()
    offline_wandb.teardown()  # run.finish() may return before wandb's service has flushed the log; this waits

    [run_folder] = (tmp_path / 'exp' / 'wandb').glob('offline-run-*')
    rows = offline_history(run_folder)
    assert sorted(rows) == [2, 4]  # logger.print_freq: 2, the same iterations TensorBoard gets
    for it, row in rows.items():
        assert {key: row[key] for key in steps[it]} == pytest.approx(steps[it])
    assert rows[4]['val/tiny_val/psnr'] == pytest.approx(trainer.state.best['tiny_val']['psnr'][0])
    assert 'val_raw/tiny_val/psnr' in rows[4]  # a young EMA: the raw weights are validated and logged too
    image = rows[4]['val/tiny_val/img00']
    assert image['_type'] == 'image-file'
    sample = trainer.val_sets[0][1][0]
    expected = tensor_to_img(trainer.model.predict(sample['lq'].unsqueeze(0))[0])  # the EMA weights, validated
    assert np.array_equal(read_image(run_folder / 'files' / image['path']), expected)


def test_basicsr_keys_reach_wandb_init(tmp_path, offline_wandb, monkeypatch):
    calls = []

    class FakeRun:
        def log(self, values, step):
            calls.append(('log', sorted(values), step))

        def finish(self):
            calls.append(('finish',))

    monkeypatch.setattr(offline_wandb, 'init', lambda **kwargs: calls.append(('init', kwargs)) or FakeRun())
    options = tiny_options(tmp_path, ['train.total_iter=2', 'val.val_freq=100', 'logger.print_freq=1',
                                      'logger.wandb={project: p, entity: team, resume_id: abc123}'])
    Trainer(options, DistContext()).train()
    init = calls[0][1]
    assert {k: init[k] for k in ('project', 'entity', 'id', 'resume', 'name', 'dir')} == {
        'project': 'p', 'entity': 'team', 'id': 'abc123', 'resume': 'allow', 'name': 'tiny',
        'dir': str(tmp_path / 'exp')}
    assert init['config']['network_g']['type'] == 'EDSR'  # the options, as their YAML copy has them
    assert calls[1:] == [('log', ['losses/l_pixel', 'lr'], 1), ('log', ['losses/l_pixel', 'lr'], 2), ('finish',)]


def test_without_wandb_the_option_says_how_to_install_it_before_anything_is_made(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'wandb', None)
    with pytest.raises(OptionError, match=r'"logger\.wandb" turns on wandb logging \(project "p"\), but the wandb '
                                          r'package is not installed: pip install wandb') as info:
        tiny_options(tmp_path, ['logger.wandb.project=p'])
    assert info.value.key == 'logger.wandb'
    basicsr_off = tiny_options(tmp_path, ['logger.wandb={project: null, resume_id: null}'])  # BasicSR's files
    assert basicsr_off.logger.wandb.project is None
    testing = tiny_options(tmp_path, ['logger.wandb.project=p'], is_train=False)  # test.py logs nothing to wandb
    assert testing.logger.wandb.project == 'p'

    opt = tmp_path / 'tiny.yml'
    opt.write_text(TINY_TRAIN.format(root=tmp_path))
    err = user_error(train_main, ['-opt', str(opt), '--force_yml', 'logger.wandb.project=p'], capsys)
    assert 'tiny.yml' in err and 'pip install wandb' in err
    assert not (tmp_path / 'exp').exists()
