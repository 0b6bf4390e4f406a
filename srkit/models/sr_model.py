"""SRModel: what one training step and one prediction mean for a single-scale SR network.

The model owns the network, its EMA, losses, optimizer, scheduler and AMP scaler, and their state; the
training loop (srkit.engine.trainer) owns iteration counting, data, validation and checkpoint files.
Subclasses change a training step by overriding ``compute_losses`` (e.g. ETDS's residual loss).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import logging
import operator
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from srkit.archs import arch_spec, create
from srkit.archs.weights import load_pretrained
from srkit.config.options import Options
from srkit.config.typed_options import construct
from srkit.core.dist import DistContext
from srkit.core.errors import OptionError, TrainingError
from srkit.core.registry import LOSS_REGISTRY, MODEL_REGISTRY
from srkit.models.ema import ModelEMA
from srkit.models.inference import predict, warn_if_tiling_inexact
from srkit.models.train_options import TrainOptions as BaseTrainOptions
from srkit.optim.schedulers import warmup_factor

__all__ = ['SRModel', 'build_network', 'compile_for_training', 'to_channels_last']

logger = logging.getLogger('srkit')


def to_channels_last(net: nn.Module) -> None:
    """Store every 4-D parameter channels_last, which is what makes convolutions faster.

    Buffers keep their layout: a (1, C, 1, 1) buffer such as a mean shift would get overlapping strides,
    which DistributedDataParallel's buffer broadcast refuses.
    """
    for param in net.parameters():
        if param.dim() == 4:
            param.data = param.data.contiguous(memory_format=torch.channels_last)


def compile_for_training(net: Callable[..., Any]) -> Callable[..., Any]:
    """``train.compile``: torch.compile with static shapes. A run's batches keep one shape (a multi-scale run one
    per scale, each compiled once); with torch's automatic dynamic shapes, a second shape made inductor fail on
    EIMN's training graph ("cannot determine truth value of Relational", torch 2.13)."""
    return torch.compile(net, dynamic=False)


def build_network(options: Options) -> nn.Module:
    """network_g of checked options, built by the one factory for the run's scale; for a multi-scale model
    without one (the network takes the scale per call, and the constructor keeps its own arguments)."""
    comp = options.network_g
    multi_scale = getattr(MODEL_REGISTRY.get(options.model_type), 'multi_scale', False)
    return create(comp.type, None if multi_scale else options.scale, **comp.args)


@MODEL_REGISTRY.register()
class SRModel:
    TrainOptions: ClassVar[type[BaseTrainOptions]] = BaseTrainOptions  # the train: schema; subclasses extend it
    # True for models whose network serves several scales: datasets may then set their own ``scale``, and
    # validation and test pass it to ``predict`` and use it as every metric's crop_border.
    multi_scale: ClassVar[bool] = False
    # True for GAN models, which train network_d next to network_g (the option parser requires or refuses it).
    uses_discriminator: ClassVar[bool] = False
    # A dataclass of the model's own top-level option keys (Real-ESRGAN's degradation settings); None: none.
    TopLevelOptions: ClassVar[type | None] = None

    def __init__(self, options: Options, device: torch.device, dist: DistContext = DistContext()) -> None:
        self.options = options
        self.device = device
        self.dist = dist
        self.spec = arch_spec(options.network_g.type)
        self.net_g = build_network(options).to(device)
        takes_scale = getattr(self.net_g, 'scale_in_forward', self.spec.scale_in_forward)
        if takes_scale and not self.multi_scale:
            raise OptionError(f'Network {options.network_g.type} as configured takes the scale per call (a multi-scale '
                              f'network); use model_type MultiScaleModel, not {options.model_type}.',
                              key='model_type')
        path = options.path
        if path.pretrain_network_g:
            load_pretrained(self.net_g, path.pretrain_network_g, param_key=path.param_key_g,
                            strict=path.strict_load_g, arch_type=options.network_g.type,
                            hint='Set path.strict_load_g: false to load the matching keys only.')
            logger.info('Loaded %s into %s.', path.pretrain_network_g, options.network_g.type)
        # channels_last: up to 1.25x faster convolutions on CPU with outputs within 2e-5 (docs/BENCHMARKS.md)
        wanted = options.train.channels_last if options.is_train else True
        self.channels_last = self.spec.channels_last_safe and wanted
        if self.channels_last:
            to_channels_last(self.net_g)
        self.train_opt: BaseTrainOptions | None = options.train if options.is_train else None
        self.ema: ModelEMA | None = None
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        self.nonfinite_total = 0
        self.nonfinite_streak = 0
        self._inference_forms: dict[int, _CachedForm] = {}  # id(network) -> its inference form
        if self.train_opt is not None:
            self._setup_training(self.train_opt)

    @property
    def train_options(self) -> BaseTrainOptions:
        """The ``train:`` options; only a model built for training has them."""
        if self.train_opt is None:
            raise TypeError(f'{type(self).__name__} was built for evaluation: it has no training options.')
        return self.train_opt

    # ---- set-up -----------------------------------------------------------------------------------------
    def _setup_training(self, opt: BaseTrainOptions) -> None:
        from srkit.optim.optimizers import build_optimizer
        from srkit.optim.schedulers import get_scheduler_class

        self.net_g.train()
        self.losses = [(self._loss_label(key, comp.type),
                        construct(f'train.{key}', LOSS_REGISTRY.get(comp.type), **comp.args).to(self.device))
                       for key, comp in opt.all_losses()]
        self.ema = ModelEMA(self.net_g, decay=opt.ema_decay) if opt.ema_decay > 0 else None
        self.frozen = self._match_parameters(opt.freeze_params) if opt.freeze_iters > 0 else []
        self.optimizer = construct('train.optim_g', build_optimizer, name=opt.optim_g.type,
                                   params=list(self.net_g.parameters()), **opt.optim_g.args)
        self.last_lr = self.optimizer.param_groups[0]['lr']
        self.scheduler = (construct('train.scheduler', get_scheduler_class(opt.scheduler.type),
                                    optimizer=self.optimizer, **opt.scheduler.args)
                          if opt.scheduler is not None else None)
        self.amp_dtype = {'fp16': torch.float16, 'bf16': torch.bfloat16}.get(opt.amp)
        if opt.amp == 'fp16' and self.device.type != 'cuda':
            raise OptionError('Option "train.amp: fp16" needs a CUDA device; use bf16 on a CPU.')
        if self.amp_dtype is torch.float16 and not self.spec.fp16_safe:
            raise OptionError(f'Option "train.amp: fp16": {self.options.network_g.type} is not fp16-safe; use bf16.')
        self.scaler = torch.amp.GradScaler('cuda', enabled=self.amp_dtype is torch.float16)
        self.train_net: Callable[..., Any] = self.net_g
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == 'cuda' else None
            self.ddp = self.train_net = nn.parallel.DistributedDataParallel(
                self.net_g, device_ids=ids,
                find_unused_parameters=self.options.find_unused_parameters or self.has_frozen_phase())
        if opt.compile:
            self.train_net = compile_for_training(self.train_net)

    def has_frozen_phase(self) -> bool:
        """Whether some parameters get no gradient for a while (DDP must then look for unused ones)."""
        return bool(self.frozen)

    @staticmethod
    def _loss_label(key: str, type_name: str) -> str:
        return 'l_' + (key[:-4] if key.endswith('_opt') else type_name.removesuffix('Loss').lower())

    def _match_parameters(self, patterns: list[str]) -> list[nn.Parameter]:
        matched = [p for name, p in self.net_g.named_parameters()
                   if any(fnmatch.fnmatch(name, pat) for pat in patterns)]
        if not matched:
            names = [n for n, _ in self.net_g.named_parameters()][:5]
            raise OptionError(f'Option "train.freeze_params": {patterns} match no parameter of '
                              f'{self.options.network_g.type} (names look like {", ".join(names)}).')
        return matched

    # ---- training ---------------------------------------------------------------------------------------
    def set_freeze(self, current_iter: int) -> None:
        """Freeze the matched parameters for the first ``freeze_iters`` iterations (e.g. train a new tail first)."""
        if self.frozen:
            frozen = current_iter <= self.train_options.freeze_iters
            for p in self.frozen:
                p.requires_grad_(not frozen)

    def current_lr(self) -> float:
        """The learning rate of the last step (warm-up included)."""
        return self.last_lr

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        fmt = torch.channels_last if self.channels_last else None
        out = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device, non_blocking=True)
                if fmt is not None and value.dim() == 4:
                    value = value.contiguous(memory_format=fmt)
            out[key] = value
        return out

    def prepare_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch a step trains on, from the loaded one (on the device): the same here; Real-ESRGAN's models
        degrade the ground truth into the LR input."""
        return batch

    def compute_losses(self, batch: dict[str, Any], iteration: int) -> dict[str, torch.Tensor]:
        """Named loss terms for one micro-batch of ``iteration``; the step sums them."""
        output = self.train_net(batch['lq'])
        return {label: loss(output, batch['gt']) for label, loss in self.losses}

    def train_step(self, micro_batches: list[dict[str, Any]], current_iter: int) -> dict[str, float] | None:
        """One optimizer step over ``micro_batches`` (gradient accumulation); None when it was skipped.

        A non-finite loss or gradient norm skips the step (no parameter, EMA or scheduler change). After
        ``max_nonfinite_steps`` consecutive skips training stops with TrainingError.
        """
        opt = self.train_options
        self.set_freeze(current_iter)
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {}
        finite = True
        for index, batch in enumerate(micro_batches):
            batch = self.prepare_batch(self.to_device(batch))
            last = index == len(micro_batches) - 1
            with contextlib.nullcontext() if last or self.ddp is None else self.ddp.no_sync():
                with self.autocast():
                    terms = self.compute_losses(batch, current_iter)
                total = functools.reduce(operator.add, terms.values())
                finite = finite and bool(torch.isfinite(total))
                self.scaler.scale(total / len(micro_batches)).backward()
            for key, value in terms.items():
                totals[key] = totals.get(key, 0.0) + float(value.detach()) / len(micro_batches)
        if finite and opt.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            norm = nn.utils.clip_grad_norm_(self.net_g.parameters(), opt.grad_clip_norm)
            # under fp16 an overflowed gradient is the scaler's: its step skips and its update lowers the scale, as
            # without clipping (skipping here instead would leave the scaler unscaled for the next step)
            finite = bool(torch.isfinite(norm)) or self.scaler.is_enabled()
        if self.dist.distributed:  # every rank must take the same decision
            flag = torch.tensor([1.0 if finite else 0.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            finite = bool(flag.item() > 0)
        if not finite:
            self._skip_step(current_iter, totals)
            return None
        self.nonfinite_streak = 0
        self._optimizer_step(warmup_factor(current_iter, opt.warmup_iter))
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.net_g)
        return totals

    def _optimizer_step(self, lr_factor: float) -> None:
        self._step_with_factor(self.optimizer, lr_factor)
        self.scaler.update()

    def _step_with_factor(self, optimizer: torch.optim.Optimizer, lr_factor: float) -> None:
        """Step with the scheduled learning rate times ``lr_factor``, leaving the scheduled rate untouched.

        Applying warm-up only around the step keeps chainable schedulers (torch's MultiStepLR) exact.
        """
        scheduled = [group['lr'] for group in optimizer.param_groups]
        if lr_factor != 1.0:
            for group in optimizer.param_groups:
                group['lr'] *= lr_factor
        if optimizer is self.optimizer:
            self.last_lr = optimizer.param_groups[0]['lr']
        self.scaler.step(optimizer)
        for group, lr in zip(optimizer.param_groups, scheduled):
            group['lr'] = lr

    def _skip_step(self, current_iter: int, totals: dict[str, float]) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_total += 1
        self.nonfinite_streak += 1
        limit = self.train_options.max_nonfinite_steps
        losses = ', '.join(f'{k}={v}' for k, v in totals.items())
        logger.warning('Iteration %d: non-finite loss or gradient (%s); step skipped (%d in a row, %d in total, '
                       'limit %d in a row).', current_iter, losses, self.nonfinite_streak, self.nonfinite_total, limit)
        if self.nonfinite_streak >= limit:
            raise TrainingError(f'Training stopped at iteration {current_iter}: {self.nonfinite_streak} consecutive '
                                f'steps had non-finite losses or gradients (train.max_nonfinite_steps = {limit}). '
                                'Lower the learning rate or enable train.grad_clip_norm; the last saved checkpoint '
                                'is intact.')

    # ---- inference --------------------------------------------------------------------------------------
    def eval_scale(self, scale: int | None = None) -> int:
        """The scale ``predict(scale=...)`` runs at: the run's ``scale``, the only one a single-scale model has."""
        if scale is not None and scale != self.options.scale:
            raise OptionError(f'{type(self).__name__} is single-scale (x{self.options.scale}): '
                              f'it cannot predict x{scale}.')
        return self.options.scale

    def inference_network(self, use_ema: bool = True, scale: int | None = None) -> nn.Module:
        """The network ``f(x)`` that predicts at ``scale`` (a single-scale network ignores it): the architecture's
        inference form of the EMA or raw weights where it has one and ``val.inference_form`` is on."""
        net = self.ema.module if (use_ema and self.ema is not None) else self.net_g
        val = self.options.val
        if self.spec.inference_form is None or (val is not None and not val.inference_form):
            return net
        return self._inference_form(net)

    def _inference_form(self, net: nn.Module) -> nn.Module:
        """``spec.inference_form(net)``, rebuilt only when the weights changed since it was last built, so that a
        validation builds it once, test.py once per run, not once per image.

        A parameter changed in place (an optimizer step, the EMA update, load_state_dict) bumps its version
        counter; BatchNorm's running statistics are updated by its kernel without one, so the buffers, a few
        thousand numbers, are compared by value with a copy kept with the form.
        """
        params, buffers = list(net.parameters()), list(net.buffers())
        key = (tuple(p._version for p in params), tuple(t.data_ptr() for t in params + buffers))
        cached = self._inference_forms.get(id(net))
        if (cached is None or cached.key != key
                or not all(torch.equal(kept, now) for kept, now in zip(cached.buffers, buffers))):
            assert self.spec.inference_form is not None
            with torch.no_grad():
                form = self.spec.inference_form(net).eval()
            cached = self._inference_forms[id(net)] = _CachedForm(key, [b.clone() for b in buffers], form)
        return cached.form

    def output_scale(self, scale: int | None = None) -> int:
        """How much larger predict's output is than its input at ``scale`` (1 for same-size models)."""
        return 1 if self.spec.same_size_output else self.eval_scale(scale)

    @torch.no_grad()
    def predict(self, lq: torch.Tensor, *, scale: int | None = None, use_ema: bool = True, tile: int = 0,
                overlap: int = 16, ensemble: bool = False) -> torch.Tensor:
        scale = self.eval_scale(scale)
        warn_if_tiling_inexact(self, self.spec.tiling_exact, self.options.network_g.type, tile)
        net = self.inference_network(use_ema, scale)
        # An inference form computes in float32 (it fills preallocated float32 buffers): no autocast around it.
        float32 = self.train_opt is None or any(net is cached.form for cached in self._inference_forms.values())
        was_training = net.training
        net.eval()
        try:
            with contextlib.nullcontext() if float32 else self.autocast():
                lq = lq.to(self.device)
                if self.channels_last:
                    lq = lq.contiguous(memory_format=torch.channels_last)
                out = predict(net, lq, self.output_scale(scale), multiple=self.spec.pad_multiple,
                              min_size=self.spec.min_size, tile=tile, overlap=overlap, ensemble=ensemble)
        finally:
            net.train(was_training)
        return out.float()

    # ---- state ------------------------------------------------------------------------------------------
    def network_state(self) -> dict[str, dict[str, torch.Tensor]]:
        state = {'params': _cpu_state(self.net_g)}
        if self.ema is not None:
            state['params_ema'] = _cpu_state(self.ema.module)
        return state

    def network_files(self) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
        """What train.py writes under models/ at each checkpoint: ``net_g_<iter>.pth`` (and e.g. ``net_d_``)."""
        return {'net_g': self.network_state()}

    def state_dict(self) -> dict[str, Any]:
        return {
            'network': self.network_state(),
            'optimizer': self.optimizer.state_dict(),
            'scheduler': self.scheduler.state_dict() if self.scheduler is not None else None,
            'ema': self.ema.state_dict() if self.ema is not None else None,
            'scaler': self.scaler.state_dict(),
            'nonfinite': [self.nonfinite_total, self.nonfinite_streak],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net_g.load_state_dict(state['network']['params'])
        self.optimizer.load_state_dict(state['optimizer'])
        if self.scheduler is not None and state.get('scheduler') is not None:
            self.scheduler.load_state_dict(state['scheduler'])
        if self.ema is not None and state.get('ema') is not None:
            self.ema.load_state_dict(state['ema'])
        self.scaler.load_state_dict(state['scaler'])
        self.nonfinite_total, self.nonfinite_streak = state.get('nonfinite', [0, 0])


@dataclasses.dataclass
class _CachedForm:
    """An inference form and what it was built from: the parameters' versions and addresses, the buffers' values."""
    key: tuple
    buffers: list[torch.Tensor]
    form: nn.Module


def _cpu_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
