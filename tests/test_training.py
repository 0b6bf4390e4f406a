"""The training loop: checkpoints, exact resume, folders that are never overwritten, the NaN guard."""
import pytest
import torch
from training_helpers import tiny_options

from srkit.core.checkpoint import load_checkpoint_file
from srkit.core.dist import DistContext
from srkit.core.errors import TrainingError
from srkit.engine.trainer import Trainer


def final_weights(root):
    return load_checkpoint_file(root / 'exp' / 'models' / 'net_g_latest.pth')


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, monkeypatch):
    straight, stopped = tmp_path / 'a', tmp_path / 'b'
    Trainer(tiny_options(straight), DistContext()).train()

    original = Trainer.__init__
    real_step = None

    def interrupting_init(self, *args, **kwargs):
        nonlocal real_step
        original(self, *args, **kwargs)
        real_step = self.model.train_step

        def step(micro, it):
            if it == 7:  # after the checkpoint at 4: iterations 5-6 are lost and redone
                raise KeyboardInterrupt
            return real_step(micro, it)

        self.model.train_step = step

    monkeypatch.setattr(Trainer, '__init__', interrupting_init)
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_options(stopped), DistContext()).train()
    monkeypatch.setattr(Trainer, '__init__', original)
    assert (stopped / 'exp' / 'training_states' / '4.state').exists()
    assert not (stopped / 'exp' / 'training_states' / '8.state').exists()
    log = next((stopped / 'exp').glob('train_*.log')).read_text()
    assert ('Interrupted during iteration 7; the newest training state is '
            f'{stopped / "exp" / "training_states" / "4.state"} (iteration 4)') in log and '--auto_resume' in log

    resumed = Trainer(tiny_options(stopped), DistContext(), auto_resume=True)
    assert resumed.state.iteration == 4
    resumed.train()
    a, b = final_weights(straight), final_weights(stopped)
    for key in ('params', 'params_ema'):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f'{key}.{name} differs after resume'
    best_a = load_checkpoint_file(straight / 'exp' / 'training_states' / '12.state')['loop']['best']
    best_b = load_checkpoint_file(stopped / 'exp' / 'training_states' / '12.state')['loop']['best']
    assert best_a == best_b


def test_an_interruption_before_any_checkpoint_says_nothing_was_saved(tmp_path):
    trainer = Trainer(tiny_options(tmp_path), DistContext())

    def step(micro, it):
        raise KeyboardInterrupt

    trainer.model.train_step = step
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    log = next(trainer.root.glob('train_*.log')).read_text()
    assert 'Interrupted during iteration 1; no training state was saved yet' in log


def test_existing_experiment_is_archived_not_overwritten(tmp_path):
    options = tiny_options(tmp_path, ['train.total_iter=2', 'val.val_freq=100'])
    (tmp_path / 'exp').mkdir()
    (tmp_path / 'exp' / 'precious.txt').write_text('keep me')
    Trainer(options, DistContext()).train()
    archived = [p for p in tmp_path.iterdir() if p.name.startswith('exp_archived_')]
    assert len(archived) == 1 and (archived[0] / 'precious.txt').read_text() == 'keep me'
    assert (tmp_path / 'exp' / 'models' / 'net_g_latest.pth').exists()


def test_nan_guard_skips_then_stops_keeping_last_checkpoint(tmp_path, capsys):
    options = tiny_options(tmp_path, ['train.total_iter=20', 'train.max_nonfinite_steps=3', 'train.grad_accumulation=1',
                                      'val.val_freq=100'])
    trainer = Trainer(options, DistContext())
    real = trainer.model.compute_losses

    def poisoned(batch, it):
        terms = real(batch, it)
        if it == 2 or it >= 6:  # one isolated NaN, then a storm
            terms = {k: v * float('nan') for k, v in terms.items()}
        return terms

    trainer.model.compute_losses = poisoned
    with pytest.raises(TrainingError, match='3 consecutive steps'):
        trainer.train()
    assert trainer.model.nonfinite_total == 4
    state = load_checkpoint_file(tmp_path / 'exp' / 'training_states' / '4.state')
    assert all(torch.isfinite(v).all() for v in state['network']['params'].values())
    assert 'Iteration 2: non-finite loss' in capsys.readouterr().out


def test_freeze_params_for_first_iterations(tmp_path):
    options = tiny_options(tmp_path, ['train.total_iter=4', 'train.freeze_params=["conv_first.*", "body.*"]',
                                      'train.freeze_iters=2', 'train.grad_accumulation=1', 'val.val_freq=100',
                                      'train.ema_decay=0'])
    trainer = Trainer(options, DistContext())
    net = trainer.model.net_g
    snap = {k: v.clone() for k, v in net.state_dict().items()}
    trainer.model.train_step([next(iter(trainer.train_loader))], 1)
    after_frozen = net.state_dict()
    assert torch.equal(after_frozen['conv_first.weight'], snap['conv_first.weight'])
    assert not torch.equal(after_frozen['conv_last.weight'], snap['conv_last.weight'])
    trainer.model.train_step([next(iter(trainer.train_loader))], 3)
    assert not torch.equal(net.state_dict()['conv_first.weight'], snap['conv_first.weight'])


def test_tensorboard_scalars_and_validation_images(tmp_path):
    pytest.importorskip('tensorboard', reason='tensorboard is not installed (an optional extra)')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    options = tiny_options(tmp_path, ['train.total_iter=6', 'logger.use_tb_logger=true', 'val.val_freq=6'])
    Trainer(options, DistContext()).train()
    events = EventAccumulator(str(tmp_path / 'exp' / 'tb_logger'), size_guidance={'images': 0})
    events.Reload()
    tags = events.Tags()
    assert 'losses/l_pixel' in tags['scalars'] and 'val/tiny_val/psnr' in tags['scalars']
    assert any(t.startswith('val/tiny_val/') for t in tags['images'])


def test_bf16_autocast_and_channels_last_train_on_cpu(tmp_path):
    options = tiny_options(tmp_path, ['train.total_iter=3', 'train.amp=bf16', 'train.channels_last=true',
                                      'val.val_freq=3', 'train.grad_accumulation=1'])
    trainer = Trainer(options, DistContext())
    trainer.train()
    assert trainer.model.net_g.conv_first.weight.is_contiguous(memory_format=torch.channels_last)
    state = load_checkpoint_file(tmp_path / 'exp' / 'models' / 'net_g_latest.pth')
    assert all(torch.isfinite(v).all() and v.dtype == torch.float32 for v in state['params'].values())


def test_gradient_clipping_bounds_the_update(tmp_path):
    options = tiny_options(tmp_path, ['train.optim_g={type: SGD, lr: 1.0}', 'train.scheduler=null',
                                      'train.grad_clip_norm=0.001', 'train.warmup_iter=-1', 'train.ema_decay=0',
                                      'train.grad_accumulation=1'])
    trainer = Trainer(options, DistContext())
    before = [p.detach().clone() for p in trainer.model.net_g.parameters()]
    trainer.model.train_step([next(iter(trainer.train_loader))], 1)
    change = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(trainer.model.net_g.parameters(), before)))
    assert 0 < change <= 0.001 * 1.0001  # SGD step = lr x clipped gradient


def test_warmup_scales_the_step_not_the_schedule(tmp_path):
    options = tiny_options(tmp_path, ['train.optim_g={type: Adam, lr: 0.01}', 'train.warmup_iter=4',
                                      'train.scheduler={type: MultiStepLR, milestones: [100]}',
                                      'train.grad_accumulation=1'])
    trainer = Trainer(options, DistContext())
    batch = next(iter(trainer.train_loader))
    lrs = []
    for it in range(1, 6):
        trainer.model.train_step([batch], it)
        lrs.append(trainer.model.current_lr())
    assert lrs == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01])
    assert trainer.model.optimizer.param_groups[0]['lr'] == pytest.approx(0.01)


def test_a_young_ema_is_validated_beside_the_raw_weights_and_each_is_labelled(tmp_path):
    """At 0.999 the EMA of a short run is mostly its random start: both are validated and labelled; the best
    metric follows the EMA (val.use_ema). Once the EMA is mature, only it is validated."""
    options = tiny_options(tmp_path, ['train.total_iter=4', 'train.ema_decay=0.999', 'val.val_freq=2'])
    trainer = Trainer(options, DistContext())
    trainer.train()
    log = next(trainer.root.glob('train_*.log')).read_text()
    lines = [line for line in log.splitlines() if '@ iter 4' in line]
    assert any('(EMA weights, decay 0.999, about 100% initial weights)' in line for line in lines)
    raw = [line for line in lines if '(raw weights)' in line]
    assert len(raw) == 1 and 'best' not in raw[0]
    ema_psnr = trainer.state.best['tiny_val']['psnr']
    assert ema_psnr[1] in (2, 4)
    trainer.state.iteration = 10_000  # 0.999 ** 10000 ~ 5e-5 of the start is left
    assert trainer._weights_to_validate(options.val) == [(True, 'EMA weights, decay 0.999')]
