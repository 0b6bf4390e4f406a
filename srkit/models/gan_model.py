"""SRGANModel: network_g trained against a discriminator, network_d (BasicSR's SRGANModel, ESRGAN's recipe).

One iteration, as BasicSR's ``optimize_parameters``: the generator's losses (pixel, LDL artifact, perceptual and
the adversarial term through a frozen network_d) every ``net_d_iters``-th iteration once ``net_d_init_iters`` have
passed; then network_d's real and fake terms (on the generator's output, detached). The generator's step is taken
after network_d's backward instead of before it: network_d's terms use the detached output, so the two orders give
the same numbers, and deferring lets a non-finite loss anywhere skip the whole iteration (SRModel's rule). Each
network has its optimizer and its scheduler (built from the one ``train.scheduler``, as BasicSR does); network_d
and its optimizer and scheduler are in every training state, and network_d is also saved as
``models/net_d_<iter>.pth`` (BasicSR's file).
"""
from __future__ import annotations

import contextlib
import functools
import math
import operator
import re
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from srkit.archs import create
from srkit.archs.weights import load_pretrained
from srkit.config.typed_options import Component, construct, option
from srkit.core.errors import OptionError
from srkit.core.registry import LOSS_REGISTRY, MODEL_REGISTRY
from srkit.losses.ldl import refined_artifact_map
from srkit.losses.perceptual_loss import PerceptualLoss
from srkit.models.sr_model import SRModel, _cpu_state
from srkit.models.train_options import TrainOptions as BaseTrainOptions
from srkit.models.train_options import check_component
from srkit.optim.schedulers import warmup_factor

__all__ = ['SRGANModel', 'ESRGANModel', 'GANTrainOptions']


@dataclass(kw_only=True)  # optim_d and gan_opt are required, after the base class's defaults
class GANTrainOptions(BaseTrainOptions):
    optim_d: Component = option(doc='Optimizer of network_d: {type: Adam, lr: 1e-4, betas: [0.9, 0.99]}.')
    gan_opt: Component = option(doc='The adversarial loss: {type: GANLoss, gan_type: vanilla, loss_weight: 0.1}.')
    ldl_opt: Component | None = option(None, "LDL's artifact loss (Liang et al., CVPR 2022): this pixel loss on "
                                             "output and ground truth weighted by the refined artifact map; needs "
                                             'ema_decay > 0 (the map compares the output with the EMA output).')
    net_d_iters: int = option(1, 'Update network_g every this many iterations (network_d is updated every one).')
    net_d_init_iters: int = option(0, 'Train only network_d for the first this many iterations.')

    def check(self, path: str) -> None:
        super().check(path)
        if self.net_d_iters < 1 or self.net_d_init_iters < 0:
            raise OptionError(f'Options "{path}.net_d_iters" must be >= 1 and "{path}.net_d_init_iters" >= 0, got '
                              f'{self.net_d_iters} and {self.net_d_init_iters}.')
        if self.grad_accumulation != 1:
            raise OptionError(f'Option "{path}.grad_accumulation": a GAN model steps network_g and network_d once per '
                              'batch; it must be 1 (use a larger batch_size_per_gpu).', key=f'{path}.grad_accumulation')
        if self.ldl_opt is not None and self.ema_decay == 0:
            raise OptionError(f'Option "{path}.ldl_opt" compares the output with the EMA output: set '
                              f'"{path}.ema_decay" (BasicSR uses 0.999).', key=f'{path}.ldl_opt')

    def defines_a_loss(self) -> bool:
        return True  # gan_opt is required

    @classmethod
    def resolve_components(cls, train: 'BaseTrainOptions', path: str) -> None:
        super().resolve_components(train, path)
        assert isinstance(train, GANTrainOptions)
        from srkit.optim.optimizers import get_optimizer_class

        train.optim_d.args = check_component(get_optimizer_class, train.optim_d, f'{path}.optim_d', 'optimizer',
                                             ('params',))
        for key in ('gan_opt', 'ldl_opt'):
            comp = getattr(train, key)
            if comp is not None:
                comp.args = check_component(LOSS_REGISTRY.get, comp, f'{path}.{key}', 'loss', ())
        if not getattr(LOSS_REGISTRY.get(train.gan_opt.type), 'adversarial', False):
            raise OptionError(f'Option "{path}.gan_opt": {train.gan_opt.type} compares images; the adversarial loss '
                              'scores network_d\'s output (e.g. {type: GANLoss, gan_type: vanilla}).',
                              key=f'{path}.gan_opt')


@MODEL_REGISTRY.register()
class SRGANModel(SRModel):
    TrainOptions: ClassVar[type[BaseTrainOptions]] = GANTrainOptions
    uses_discriminator = True

    @property
    def train_options(self) -> GANTrainOptions:
        if not isinstance(self.train_opt, GANTrainOptions):
            raise TypeError(f'{type(self).__name__} has training options only in a training run.')
        return self.train_opt

    def _setup_training(self, opt: BaseTrainOptions) -> None:
        from srkit.optim.optimizers import build_optimizer
        from srkit.optim.schedulers import get_scheduler_class

        super()._setup_training(opt)
        assert isinstance(opt, GANTrainOptions)
        comp = self.options.network_d
        assert comp is not None  # the option parser requires it for training
        self.net_d = create(comp.type, option_key='network_d', **comp.args).to(self.device)
        path = self.options.path
        if path.pretrain_network_d:
            load_pretrained(self.net_d, path.pretrain_network_d, param_key=path.param_key_d,
                            strict=path.strict_load_d, arch_type=comp.type,
                            hint='Set path.strict_load_d: false to load the matching keys only.')
        self.net_d.train()
        self.gan_loss = construct('train.gan_opt', LOSS_REGISTRY.get(opt.gan_opt.type),
                                  **opt.gan_opt.args).to(self.device)
        self.ldl_loss = (construct('train.ldl_opt', LOSS_REGISTRY.get(opt.ldl_opt.type), **opt.ldl_opt.args)
                         .to(self.device) if opt.ldl_opt is not None else None)
        self.optimizer_d = construct('train.optim_d', build_optimizer, name=opt.optim_d.type,
                                     params=list(self.net_d.parameters()), **opt.optim_d.args)
        self.scheduler_d = (construct('train.scheduler', get_scheduler_class(opt.scheduler.type),
                                      optimizer=self.optimizer_d, **opt.scheduler.args)
                            if opt.scheduler is not None else None)
        gt_size = self.training_gt_size()
        if gt_size is not None:
            self.check_input_size(gt_size, gt_size)
        self.train_net_d: Any = self.net_d
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == 'cuda' else None
            self.train_net_d = nn.parallel.DistributedDataParallel(self.net_d, device_ids=ids)

    def training_gt_size(self) -> int | None:
        """The side of the ground-truth patches network_d will score (the training set's ``gt_size``)."""
        (entry,) = self.options.datasets_of('train') or (None,)
        return entry.args.get('gt_size') if entry is not None else None

    def check_input_size(self, height: int, width: int) -> None:
        """Refuse, before training, a ground-truth patch network_d cannot score (e.g. VGGStyleDiscriminator's
        fixed 128x128), naming the option to change."""
        check = getattr(self.net_d, 'check_input_size', None)
        if check is None:
            return
        try:
            check(height, width)
        except ValueError as exc:
            raise OptionError(f'Option "network_d": {exc} The training ground truth is {height}x{width} (gt_size).',
                              key='network_d') from None

    # ---- one iteration -------------------------------------------------------------------------------------
    def generator_targets(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ground truths of the pixel, perceptual and adversarial terms (Real-ESRGAN sharpens some)."""
        return batch['gt'], batch['gt'], batch['gt']

    def generator_terms(self, batch: dict[str, Any], output: torch.Tensor) -> dict[str, torch.Tensor]:
        pixel_gt, percep_gt, gan_gt = self.generator_targets(batch)
        terms = {}
        for label, loss in self.losses:
            target = percep_gt if isinstance(loss, PerceptualLoss) else pixel_gt
            terms[label.replace('l_', 'l_g_', 1)] = loss(output, target)
        if self.ldl_loss is not None:
            assert self.ema is not None  # GANTrainOptions.check requires EMA with ldl_opt
            with torch.no_grad():
                output_ema = self.ema.module(batch['lq'])
            weight = refined_artifact_map(batch['gt'], output, output_ema, 7)
            terms['l_g_ldl'] = self.ldl_loss(weight * output, weight * batch['gt'])
        terms['l_g_gan'] = self.adversarial_term(output, gan_gt)
        return terms

    def adversarial_term(self, output: torch.Tensor, gan_gt: torch.Tensor) -> torch.Tensor:
        """The generator's GAN term: network_d should call ``output`` real."""
        return self.gan_loss(self.train_net_d(output), True, is_disc=False)

    def discriminator_terms(self, output: torch.Tensor, gan_gt: torch.Tensor
                            ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """network_d's real and fake terms, each backpropagated as soon as it is made (BasicSR's order), with the
        two predictions."""
        with self.autocast():
            real = self.train_net_d(gan_gt)
            l_real = self.gan_loss(real, True, is_disc=True)
        self.scaler.scale(l_real).backward()
        with self.autocast():
            fake = self.train_net_d(output.detach().clone())
            l_fake = self.gan_loss(fake, False, is_disc=True)
        self.scaler.scale(l_fake).backward()
        return {'l_d_real': l_real, 'l_d_fake': l_fake}, real, fake

    def train_step(self, micro_batches: list[dict[str, Any]], current_iter: int) -> dict[str, float] | None:
        opt = self.train_options
        (batch,) = micro_batches  # GANTrainOptions.check: no accumulation
        batch = self.prepare_batch(self.to_device(batch))
        self.set_freeze(current_iter)
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer_d.zero_grad(set_to_none=True)
        update_g = current_iter % opt.net_d_iters == 0 and current_iter > opt.net_d_init_iters
        terms: dict[str, torch.Tensor] = {}
        with contextlib.nullcontext() if update_g else torch.no_grad():
            with self.autocast():
                output = self.train_net(batch['lq'])
        if update_g:
            self.net_d.requires_grad_(False)
            with self.autocast():
                terms.update(self.generator_terms(batch, output))
            self.scaler.scale(functools.reduce(operator.add, terms.values())).backward()
            self.net_d.requires_grad_(True)
        d_terms, real, fake = self.discriminator_terms(output, self.generator_targets(batch)[2])
        terms.update(d_terms)
        totals = {key: float(value.detach()) for key, value in terms.items()}
        totals['out_d_real'], totals['out_d_fake'] = float(real.detach().mean()), float(fake.detach().mean())
        finite = all(math.isfinite(value) for value in totals.values())
        if finite and update_g and opt.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            norm = nn.utils.clip_grad_norm_(self.net_g.parameters(), opt.grad_clip_norm)
            finite = bool(torch.isfinite(norm)) or self.scaler.is_enabled()  # fp16 overflow: the scaler's (SRModel)
        if self.dist.distributed:
            flag = torch.tensor([1.0 if finite else 0.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            finite = bool(flag.item() > 0)
        if not finite:
            self.optimizer_d.zero_grad(set_to_none=True)
            self._skip_step(current_iter, totals)
            return None
        self.nonfinite_streak = 0
        factor = warmup_factor(current_iter, opt.warmup_iter)
        if update_g:
            self._step_with_factor(self.optimizer, factor)
        self._step_with_factor(self.optimizer_d, factor)
        self.scaler.update()
        with warnings.catch_warnings():  # during net_d_init_iters network_g's schedule runs before its first step,
            # as in BasicSR, which torch warns about once; the schedule counts iterations, so that is intended
            warnings.filterwarnings('ignore', message=re.escape('Detected call of `lr_scheduler.step()` before'))
            for scheduler in (self.scheduler, self.scheduler_d):
                if scheduler is not None:
                    scheduler.step()
        if self.ema is not None:
            self.ema.update(self.net_g)
        return totals

    # ---- state ------------------------------------------------------------------------------------------------
    def network_files(self) -> dict[str, dict[str, dict[str, torch.Tensor]]]:
        return {**super().network_files(), 'net_d': {'params': _cpu_state(self.net_d)}}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state['discriminator'] = {
            'params': _cpu_state(self.net_d),
            'optimizer': self.optimizer_d.state_dict(),
            'scheduler': self.scheduler_d.state_dict() if self.scheduler_d is not None else None,
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        saved = state.get('discriminator')
        if saved is None:
            raise OptionError('The training state has no network_d (it was not saved by a GAN model): start the GAN '
                              'from its network file with path.pretrain_network_g instead of resuming.',
                              key='path.resume_state')
        self.net_d.load_state_dict(saved['params'])
        self.optimizer_d.load_state_dict(saved['optimizer'])
        if self.scheduler_d is not None and saved.get('scheduler') is not None:
            self.scheduler_d.load_state_dict(saved['scheduler'])


@MODEL_REGISTRY.register()
class ESRGANModel(SRGANModel):
    """ESRGAN (Wang et al., ECCV 2018 workshops): SRGANModel with the relativistic average GAN.

    network_d judges whether a real image is more realistic than the average fake one and the reverse, as
    BasicSR's ESRGANModel: the generator's term averages ``gan(D(gt) - mean D(output), fake)`` and
    ``gan(D(output) - mean D(gt), real)``; network_d's terms are halved and use detached means.
    """

    def adversarial_term(self, output: torch.Tensor, gan_gt: torch.Tensor) -> torch.Tensor:
        real = self.train_net_d(gan_gt).detach()
        fake = self.train_net_d(output)
        return (self.gan_loss(real - fake.mean(), False, is_disc=False)
                + self.gan_loss(fake - real.mean(), True, is_disc=False)) / 2

    def discriminator_terms(self, output: torch.Tensor, gan_gt: torch.Tensor
                            ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        with self.autocast():
            fake = self.train_net_d(output.detach()).detach()
            real = self.train_net_d(gan_gt)
            l_real = self.gan_loss(real - fake.mean(), True, is_disc=True) * 0.5
        self.scaler.scale(l_real).backward()
        with self.autocast():
            fake = self.train_net_d(output.detach())
            l_fake = self.gan_loss(fake - real.detach().mean(), False, is_disc=True) * 0.5
        self.scaler.scale(l_fake).backward()
        return {'l_d_real': l_real, 'l_d_fake': l_fake}, real, fake
