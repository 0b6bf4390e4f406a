"""The iteration-based training loop: data, steps, logging, validation, checkpoints and resume.

It knows nothing of any architecture or loss: the model class (MODEL_REGISTRY[model_type]) defines what a
step is. A training state is written after the network file and is the commit point of a checkpoint;
resuming restores it completely (model, optimizer, scheduler, EMA, scaler, RNG, sampler position), so a run
stopped and resumed ends bit-identical to the same run uninterrupted.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from srkit.config.options import Options, ValOptions, dump_options
from srkit.core.checkpoint import (
    atomic_save,
    find_resume_state,
    load_checkpoint_file,
    network_path,
    remove_stale_temporaries,
    training_state_path,
)
from srkit.core.dist import DistContext, all_gather_objects, any_rank, barrier, broadcast_object, select_device
from srkit.core.errors import CheckpointError, OptionError, RunStopped, SrkitError
from srkit.core.faults import fault_point
from srkit.core.logger import ProgressLog, RunWriters, TensorboardWriter, setup_logger
from srkit.core.registry import MODEL_REGISTRY
from srkit.core.threads import apply_threads
from srkit.core.wandb_writer import WandbWriter
from srkit.data.image_io import tensor_to_img
from srkit.data.loader import build_dataloader, build_dataset
from srkit.data.prefetchers import build_prefetcher
from srkit.engine.experiment import (
    archive_existing,
    prepare_folder,
    restore_rng_state,
    rng_state,
    seed_everything,
    timestamp,
)
from srkit.engine.preemption import StopSignals
from srkit.models.evaluator import EvalResult, bicubic_predictor, check_metrics, evaluate

__all__ = ['Trainer', 'run_device']

logger = logging.getLogger('srkit')
YOUNG_EMA = 0.05  # validate the raw weights too while more than this share of the EMA is its initialisation


def run_device(options: Options, dist: DistContext) -> torch.device:
    """BasicSR's ``num_gpu``: 0 is the CPU; otherwise this rank's GPU when CUDA is available, else the CPU."""
    return select_device('cpu' if options.num_gpu == 0 else 'auto', dist.local_rank)


@dataclass
class LoopState:
    """Where the loop is: saved in every training state."""

    iteration: int = 0
    epoch: int = 0
    consumed_global: int = 0  # samples of the current epoch consumed by all ranks together
    best: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # dataset -> metric -> [value, iter]


class Trainer:
    def __init__(self, options: Options, dist: DistContext, auto_resume: bool = False) -> None:
        self.options = options
        self.dist = dist
        self.device = run_device(options, dist)
        self.root = Path(options.path.experiments_root or Path('experiments') / options.name)
        setup_logger(None, dist.is_main)  # resume discovery may already have something to say
        self.resume = self._find_resume(auto_resume)
        archived = None
        if dist.is_main:
            if self.resume is None:
                archived = archive_existing(self.root)
            prepare_folder(self.root, ('models', 'training_states', 'visualization'))
            removed = remove_stale_temporaries(self.root)
        barrier()
        setup_logger(self.root / f'train_{options.name}_{timestamp()}.log', dist.is_main)
        apply_threads(options.num_threads, self.device)
        if dist.is_main and self.resume is None and archived is not None:
            logger.info('An experiment folder %s existed; it was moved to %s.', self.root, archived)
        if dist.is_main and removed:
            logger.info('Removed %d unfinished checkpoint writes of an interrupted run (%s).', len(removed),
                        ', '.join(p.name for p in removed))
        if dist.is_main:
            for notice in options.notices:
                logger.info(notice)
        options_text = dump_options(options)
        if dist.is_main:
            (self.root / f'options_{timestamp()}.yml').write_text(options_text, encoding='utf-8')
        seed = options.manual_seed if options.manual_seed is not None else broadcast_object(
            int(torch.randint(0, 2**31 - 1, ()).item()))
        self.seed = seed
        seed_everything(seed + dist.rank)
        self.model = MODEL_REGISTRY.get(options.model_type)(options, self.device, dist)
        self.state = LoopState()
        self.bicubic_logged: set[str] = set()
        self.skipped_images: set[str] = set()
        self._build_data()
        log_opt = options.logger
        self.writers = RunWriters(  # the main process writes for all
            TensorboardWriter(self.root / 'tb_logger' if log_opt.use_tb_logger and dist.is_main else None, logger),
            WandbWriter(self.root, project=log_opt.wandb.project if dist.is_main else None, entity=log_opt.wandb.entity,
                        resume_id=log_opt.wandb.resume_id, name=options.name, config=yaml.safe_load(options_text)))
        if self.resume is not None:
            self._restore(*self.resume)

    # ---- set-up -----------------------------------------------------------------------------------------
    def _find_resume(self, auto_resume: bool) -> tuple[Path, dict[str, Any]] | None:
        explicit = self.options.path.resume_state
        if explicit:
            return Path(explicit), load_checkpoint_file(explicit)
        if auto_resume:
            found = find_resume_state(self.root)
            if found is None:
                logging.getLogger('srkit').warning('--auto_resume: no training state under %s; starting afresh.',
                                                   self.root)
            return found
        return None

    def _build_data(self) -> None:
        from srkit.data.samplers import EnlargedSampler

        train_entries = self.options.datasets_of('train')
        if len(train_entries) != 1:
            raise OptionError('Exactly one training dataset ("datasets.train") is supported, '
                              f'got {len(train_entries)}.')
        entry = train_entries[0]
        self.train_set = build_dataset(entry)
        self.loader_opt = entry.loader
        self.sampler = EnlargedSampler(len(self.train_set), seed=self.seed, shuffle=entry.loader.use_shuffle,
                                       enlarge_ratio=entry.loader.dataset_enlarge_ratio,
                                       num_replicas=self.dist.world_size, rank=self.dist.rank)
        self.train_loader = build_dataloader(self.train_set, entry.loader, self.sampler, 'train', self.seed)
        self.val_sets = [(e, build_dataset(e), e.scale_or(self.options.scale))
                         for e in self.options.datasets_of('val')]
        if self.options.val is not None:
            for val_entry, dataset, scale in self.val_sets:
                check_metrics(self.options.val.metrics, dataset, val_entry.name,
                              crop_border=scale if self.model.multi_scale else None)
        batch = entry.loader.batch_size_per_gpu
        logger.info('Training set %s: %d images, %d per epoch per rank (batch %d per process x %d processes, '
                    'enlarge ratio %d).', entry.name, len(self.train_set), len(self.sampler), batch,
                    self.dist.world_size, entry.loader.dataset_enlarge_ratio)

    def _restore(self, path: Path, state: dict[str, Any]) -> None:
        meta = state.get('meta', {})
        other_arch = meta.get('arch') not in (None, self.options.network_g.type)
        if other_arch or meta.get('scale') not in (None, self.options.scale):
            raise CheckpointError(f'Training state {path} is for {meta.get("arch")} x{meta.get("scale")}, not '
                                  f'{self.options.network_g.type} x{self.options.scale}.')
        self.model.load_state_dict(state)
        loop = state['loop']
        self.state = LoopState(loop['iteration'], loop['epoch'], loop['consumed_global'], loop['best'])
        rng = state['rng']
        if len(rng) == self.dist.world_size:
            restore_rng_state(rng[self.dist.rank])
        else:
            logger.warning('The training state was made by %d processes, this run has %d: data order and sampler '
                           'position are kept, per-process random states are re-seeded.', len(rng),
                           self.dist.world_size)
            seed_everything(self.seed + self.dist.rank + self.state.iteration)
        logger.info('Resumed from %s at iteration %d (epoch %d).', path, self.state.iteration, self.state.epoch)

    # ---- loop -------------------------------------------------------------------------------------------
    def train(self) -> None:
        opt = self.options
        total = opt.train.total_iter
        accumulation = opt.train.grad_accumulation
        batch = self.loader_opt.batch_size_per_gpu
        progress = ProgressLog(logger, self.state.iteration, total, opt.logger.print_freq)
        logger.info('Training %s (%s, x%d) on %s for %d iterations, starting at %d.', opt.name, opt.network_g.type,
                    opt.scale, self.device, total, self.state.iteration)
        micro: list[dict[str, Any]] = []
        try:
            with StopSignals() as signals:
                while self.state.iteration < total:
                    self.sampler.set_epoch(self.state.epoch, start=self.state.consumed_global // self.dist.world_size)
                    for data in build_prefetcher(self.train_loader, self.loader_opt.prefetch_mode, self.device):
                        self.skipped_images.update(m for ms in data.pop('skipped', ()) for m in ms.split('\n') if m)
                        micro.append(data)
                        self.state.consumed_global += batch * self.dist.world_size
                        if len(micro) < accumulation:
                            continue
                        self.state.iteration += 1
                        losses = self.model.train_step(micro, self.state.iteration)
                        fault_point('train_step', arrived=lambda: signals.received is not None)
                        micro = []
                        self._after_step(losses, progress)
                        if self.state.iteration >= total:
                            break
                        if any_rank(signals.received is not None):
                            self._stop(signals.received)
                    else:
                        self.state.epoch += 1
                        self.state.consumed_global = 0
        except KeyboardInterrupt:
            self._log_interruption()
            raise
        finally:
            progress.close()
        if self.state.iteration % opt.logger.save_checkpoint_freq:
            self.save()
        self._save_network('latest')
        skipped = sorted(set().union(*all_gather_objects(self.skipped_images)))
        if skipped:
            logger.warning('%d unusable training images were skipped (skip_bad_images):\n  %s', len(skipped),
                           '\n  '.join(skipped))
        logger.info('Training finished: %d iterations.', self.state.iteration)
        self.writers.close()

    def _stop(self, received: str | None) -> None:
        """Every rank stops here at the same iteration (any_rank): save a training state unless this iteration's
        checkpoint was just written, then end the run with RunStopped (EXIT_STOPPED), to be resumed."""
        it = self.state.iteration
        if it % self.options.logger.save_checkpoint_freq:
            self.save()
        self.writers.close()
        why = received or 'a signal to another process'
        if self.dist.is_main:
            logger.warning('Stopped by %s after iteration %d; its training state is %s. Continue with the same '
                           'command plus --auto_resume.', why, it, training_state_path(self.root, it))
        raise RunStopped(f'stopped by {why} after iteration {it}, with its training state saved; continue with the '
                         'same command plus --auto_resume.')

    def _log_interruption(self) -> None:
        """Say where an interrupted run stands: what is saved, and how to continue (the main rank, which
        writes the checkpoints, is the one that knows)."""
        if not self.dist.is_main:
            return
        found = find_resume_state(self.root)
        if found is None:
            logger.error('Interrupted during iteration %d; no training state was saved yet, so a new run starts over.',
                         self.state.iteration)
        else:
            logger.error('Interrupted during iteration %d; the newest training state is %s (iteration %d). Continue '
                         'from it with the same command plus --auto_resume.', self.state.iteration, found[0],
                         found[1]['iter'])

    def _after_step(self, losses: dict[str, float] | None, progress: ProgressLog) -> None:
        """Log, validate, then checkpoint: a state saved at iteration N includes N's validation, so a run
        killed during that validation redoes it on resume and keeps the same best-metric history."""
        it = self.state.iteration
        lr = self.model.current_lr()
        if losses is not None:
            progress.update(it, losses, lr)
            if it % self.options.logger.print_freq == 0:
                self.writers.scalars({f'losses/{k}': v for k, v in losses.items()} | {'lr': lr}, it)
        if self.val_sets and self.options.val is not None and it % self.options.val.val_freq == 0:
            try:
                self.validate()
            except SrkitError:
                if not self.dist.distributed:  # one process: keep the iterations since the last checkpoint
                    self.save()
                raise
        if it % self.options.logger.save_checkpoint_freq == 0:
            self.save()

    # ---- validation -------------------------------------------------------------------------------------
    def _weights_to_validate(self, val: ValOptions) -> list[tuple[bool, str]]:
        """(use_ema, label) of each set of weights to validate, the one whose best metrics are kept first.

        A young EMA is mostly its random initialisation (decay ** iteration of it is left: 37% after 1000
        iterations at 0.999), so its numbers say little about training: the raw weights are validated too.
        """
        ema = self.model.ema if val.use_ema else None
        if ema is None:
            return [(False, 'weights')]
        initial = ema.decay ** self.state.iteration
        label = f'EMA weights, decay {ema.decay}'
        if initial < YOUNG_EMA:
            return [(True, label)]
        return [(True, f'{label}, about {initial:.0%} initial weights'), (False, 'raw weights')]

    def validate(self) -> list[EvalResult]:
        val = self.options.val
        assert val is not None, 'validate() runs only when the val section is given'
        it = self.state.iteration
        results = []
        for entry, dataset, scale in self.val_sets:
            name = entry.name
            for index, (use_ema, label) in enumerate(self._weights_to_validate(val)):
                save_dir = (self.root / 'visualization' / name if val.save_img and self.dist.is_main and index == 0
                            else None)
                predict = functools.partial(self.model.predict, scale=scale, use_ema=use_ema, tile=val.tile_size,
                                            overlap=val.tile_overlap, ensemble=val.self_ensemble)
                result = evaluate(predict, dataset, name, val.metrics, self.dist, save_dir=save_dir, suffix=str(it),
                                  crop_border=scale if self.model.multi_scale else None, loader=entry.loader)
                self._log_validation(result, label, keep_best=index == 0)
                if index == 0:
                    results.append(result)
            fault_point('validation')
            if self.writers.active:
                sample = dataset[0]
                sr = self.model.predict(sample['lq'].unsqueeze(0), scale=scale, use_ema=val.use_ema,
                                        tile=val.tile_size, overlap=val.tile_overlap)
                stem = Path(str(sample.get('lq_path', '0'))).stem
                self.writers.image(f'val/{name}/{stem}', tensor_to_img(sr[0]), it)
            if name not in self.bicubic_logged and self.model.output_scale(scale) > 1:
                self.bicubic_logged.add(name)
                baseline = evaluate(bicubic_predictor(self.model.output_scale(scale)), dataset, name, val.metrics,
                                    self.dist, crop_border=scale if self.model.multi_scale else None,
                                    loader=entry.loader)
                logger.info('Validation %s, bicubic baseline: %s', name,
                            '; '.join(f'{k}: {v:.4f}' for k, v in baseline.mean.items()))
        return results

    def _log_validation(self, result: EvalResult, label: str, keep_best: bool) -> None:
        """Log the means, saying which weights were validated; the best values are kept for ``keep_best``."""
        assert self.options.val is not None
        it = self.state.iteration
        best = self.state.best.setdefault(result.dataset, {})
        parts = []
        for key, value in result.mean.items():
            if not keep_best:
                parts.append(f'{key}: {value:.4f}')
                self.writers.scalars({f'val_raw/{result.dataset}/{key}': value}, it)
                continue
            higher = self.options.val.metrics[key].args.get('better', 'higher') == 'higher'
            previous = best.get(key)
            if previous is None or (value > previous[0] if higher else value < previous[0]):
                best[key] = [value, it]
            parts.append(f'{key}: {value:.4f} (best {best[key][0]:.4f} @ {best[key][1]})')
            self.writers.scalars({f'val/{result.dataset}/{key}': value}, it)
        logger.info('Validation %s @ iter %d (%s): %s', result.dataset, it, label, '; '.join(parts))

    # ---- checkpoints ------------------------------------------------------------------------------------
    def _save_network(self, label: int | str) -> None:
        if self.dist.is_main:
            for prefix, state in self.model.network_files().items():
                atomic_save(state, network_path(self.root, prefix, label, self.options.logger.network_format))

    def save(self) -> None:
        """Write the network file, then the training state (the commit point of this checkpoint)."""
        it = self.state.iteration
        rng = all_gather_objects(rng_state())
        self._save_network(it)
        if self.dist.is_main:
            state = self.model.state_dict() | {
                'iter': it,
                'loop': {'iteration': it, 'epoch': self.state.epoch, 'consumed_global': self.state.consumed_global,
                         'best': self.state.best},
                'rng': rng,
                'meta': {'arch': self.options.network_g.type, 'scale': self.options.scale,
                         'world_size': self.dist.world_size, 'name': self.options.name},
            }
            atomic_save(state, training_state_path(self.root, it))
            logger.info('Saved checkpoint at iteration %d.', it)
        barrier()
