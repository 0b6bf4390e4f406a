"""EIMN and IMDN training option files: the published recipes parse and chain (x2 -> x3 -> x4 fine-tuning
with the tail trained first), and the CPU-sized T91 configs run in-process, the fine-tune one loading the
official x2 checkpoint into x3 with the tail re-initialised and the body frozen for the first iterations."""
import fnmatch
import functools
from pathlib import Path

import pytest
import torch
from conftest import REPO, shared_path

from srkit.archs.weights import adapt_official_state_dict
from srkit.config.options import Options, load_options
from srkit.core.checkpoint import extract_state_dict, load_checkpoint_file
from srkit.core.dist import DistContext
from srkit.engine.trainer import Trainer
from srkit.models.sr_model import build_network

RECIPES = sorted(p.relative_to(REPO).as_posix() for folder in ('EIMN', 'IMDN')
                 for p in (REPO / 'options' / 'train' / folder).glob('*.yml') if not p.stem.endswith('_cpu'))
FINETUNE_CPU = 'options/train/EIMN/train_EIMN_A_x3_finetune_T91_cpu.yml'


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _frozen_names(options: Options) -> tuple[list[str], list[str]]:
    """(parameters freeze_params matches, those it does not) for the option file's network."""
    names = [name for name, _ in build_network(options).named_parameters()]
    patterns = options.train.freeze_params
    frozen = [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
    return frozen, [n for n in names if n not in frozen]


@functools.cache
def _recipes() -> dict[str, Options]:
    """Every recipe by run name (what another recipe's pretrain_network_g path names)."""
    return {options.name: options for options in (load_options(REPO / f, is_train=True) for f in RECIPES)}


def test_every_published_scale_has_a_recipe():
    names = set(_recipes())
    assert {'IMDN_x2', 'IMDN_x3', 'IMDN_x4', 'EIMN_A_x2_stage2', 'EIMN_A_x3', 'EIMN_A_x4', 'EIMN_L_x2_stage2',
            'EIMN_L_x3'} <= names


@pytest.mark.parametrize('option_file', RECIPES)
def test_recipe_parses_and_fine_tunes_from_the_previous_stage(option_file: str):
    options = load_options(REPO / option_file, is_train=True)
    pretrain = options.path.pretrain_network_g
    if pretrain is None:  # from scratch: IMDN at every scale, EIMN at x2 only
        assert not options.train.freeze_params and (options.scale == 2 or options.network_g.type == 'IMDN')
        return
    parent = _recipes()[Path(pretrain).parts[1]]  # experiments/<name>/models/net_g_latest.pth of another recipe
    assert parent.network_g.type == options.network_g.type
    if parent.scale == options.scale:  # a later stage at the same scale: every key must load
        assert options.path.strict_load_g and not options.train.freeze_params
        return
    assert parent.scale == options.scale - 1
    assert options.path.param_key_g == 'params_ema' and not options.path.strict_load_g
    frozen, trainable = _frozen_names(options)
    assert trainable == ['tail.0.weight', 'tail.0.bias'] and frozen  # the body is frozen, only the new tail trains
    assert options.train.freeze_iters > 0


def _cpu_options(option_file: str, tmp_path: Path, extra: list[str]) -> Options:
    set5 = shared_path('data', 'Set5')
    options = load_options(REPO / option_file, is_train=True, overrides=[
        f'datasets.train.dataroot_gt={shared_path("data", "T91", "HR")}',
        f'datasets.val.dataroot_gt={set5}/GTmod12',
        'datasets.train.batch_size_per_gpu=2', 'datasets.train.dataset_enlarge_ratio=1',
        f'path.experiments_root={tmp_path / "exp"}', 'logger.print_freq=1', 'logger.save_checkpoint_freq=2',
    ] + extra)
    options.datasets['val'].args['dataroot_lq'] = f'{set5}/LRbicx{options.scale}'
    return options


@pytest.mark.slow
def test_imdn_cpu_config_trains_and_validates_on_set5(tmp_path: Path):
    options = _cpu_options('options/train/IMDN/train_IMDN_x2_T91_cpu.yml', tmp_path,
                           ['train.total_iter=2', 'val.val_freq=2'])
    trainer = Trainer(options, DistContext())
    before = {k: v.clone() for k, v in trainer.model.net_g.state_dict().items()}
    trainer.train()
    after = load_checkpoint_file(tmp_path / 'exp' / 'models' / 'net_g_latest.pth')['params']
    assert all(not torch.equal(before[k], after[k]) for k in before)
    log = next((tmp_path / 'exp').glob('train_*.log')).read_text()
    assert 'Validation Set5 @ iter 2 (' in log and 'bicubic baseline' in log


@pytest.mark.slow
def test_eimn_cpu_config_trains_with_the_fft_loss(tmp_path: Path):
    options = _cpu_options('options/train/EIMN/train_EIMN_A_x2_T91_cpu.yml', tmp_path, ['train.total_iter=2'])
    options.datasets.pop('val')  # a whole-Set5 EIMN validation costs ~10 s; the IMDN test covers validation
    trainer = Trainer(options, DistContext())
    assert [label for label, _ in trainer.model.losses] == ['l_pixel', 'l_fft']
    before = {k: v.clone() for k, v in trainer.model.net_g.named_parameters()}
    trainer.train()
    assert all(not torch.equal(before[k], v) for k, v in trainer.model.net_g.named_parameters())
    assert (tmp_path / 'exp' / 'training_states' / '2.state').is_file()


@pytest.mark.slow
def test_finetune_config_loads_x2_into_x3_and_trains_the_tail_first(tmp_path: Path):
    options = _cpu_options(FINETUNE_CPU, tmp_path, ['train.freeze_iters=1'])
    source = shared_path('weights', 'EIMN', 'EIMN_A_x2.pth')
    assert options.path.pretrain_network_g == 'experiments/pretrained_models/EIMN/EIMN_A_x2.pth'  # as shipped
    options.path.pretrain_network_g = str(source)
    trainer = Trainer(options, DistContext())
    model, net = trainer.model, trainer.model.net_g

    official = adapt_official_state_dict('EIMN_A', extract_state_dict(load_checkpoint_file(source), None, str(source)))
    own = net.state_dict()
    body = [k for k in own if not k.startswith('tail.')]
    assert all(torch.equal(own[k], official[k]) for k in body)  # every non-tail key came from x2
    assert own['tail.0.weight'].shape == (27, 64, 3, 3) != official['tail.0.weight'].shape
    log = next((tmp_path / 'exp').glob('train_*.log')).read_text()
    assert 'mismatched keys, e.g. tail.0.weight: checkpoint (12, 64, 3, 3) vs network (27, 64, 3, 3)' in log

    trainer.sampler.set_epoch(0)
    batches = iter(trainer.train_loader)

    def params() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in net.named_parameters()}

    start = params()
    assert model.train_step([next(batches)], 1) is not None  # iteration 1: body frozen
    after_frozen = params()
    assert all(torch.equal(start[k], after_frozen[k]) for k in start if not k.startswith('tail.'))
    assert not torch.equal(start['tail.0.weight'], after_frozen['tail.0.weight'])
    model.train_step([next(batches)], 2)  # iteration 2: everything trains
    after = params()
    assert all(not torch.equal(after_frozen[k], after[k]) for k in after)
