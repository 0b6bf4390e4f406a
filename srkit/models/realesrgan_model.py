"""RealESRNetModel and RealESRGANModel: training on ground truth degraded on the fly (Real-ESRGAN, Wang et al. 2021).

The training set (RealESRGANDataset) gives 400x400 ground-truth crops and the blur kernels drawn for each; the
model degrades the batch where it trains (on the GPU when there is one), as BasicSR's ``feed_data`` does:
apply ``SecondOrderDegradation``, crop ``gt_size`` patches, and mix the pairs through the ``queue_size`` pool.
RealESRNetModel (the PSNR-oriented first stage, pixel losses) sharpens the ground truth first when ``gt_usm``,
so the sharpened image is both what is degraded and the target; RealESRGANModel (adds the discriminator,
srkit.models.gan_model) always degrades the sharpened ground truth and chooses per loss between the plain and
the sharpened target (``l1_gt_usm``, ``percep_gt_usm``, ``gan_gt_usm``), sharpening again after the pool.

The degradation settings are top-level keys in BasicSR's files (``resize_prob``, ``noise_range2``, ...), so
they are the models' ``TopLevelOptions``. Every random draw of the degradation and of the pool comes from one
torch.Generator owned by the model, seeded from the run's seed and rank and saved in each training state with
the pool, so a resumed run draws exactly what the uninterrupted one would have.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from srkit.config.options import Options
from srkit.config.typed_options import option
from srkit.core.dist import DistContext
from srkit.core.errors import OptionError
from srkit.core.registry import MODEL_REGISTRY
from srkit.data.degradations import usm_sharp
from srkit.data.realesrgan_degradation import SecondOrderDegradation, TrainingPairPool, paired_random_crop_batch
from srkit.models.gan_model import SRGANModel
from srkit.models.sr_model import SRModel

USM_RADIUS = 50  # usm_sharp's default, BasicSR's USMSharp

__all__ = ['RealESRNetModel', 'RealESRGANModel', 'DegradationOptions', 'ESRNetOptions', 'ESRGANOptions']

_DEGRADATION_KEYS = ('resize_prob', 'resize_range', 'gaussian_noise_prob', 'noise_range', 'poisson_scale_range',
                     'gray_noise_prob', 'jpeg_range', 'second_blur_prob', 'resize_prob2', 'resize_range2',
                     'gaussian_noise_prob2', 'noise_range2', 'poisson_scale_range2', 'gray_noise_prob2', 'jpeg_range2')


@dataclass
class DegradationOptions:
    """Real-ESRGAN's top-level keys (BasicSR reads them from the top of the file, so srkit does too).

    The degradation keys and gt_size are required with ``high_order_degradation`` (the default) and unused
    without it, when the model trains on a paired set's own (lq, gt) pairs, as BasicSR reads them only then.
    """

    resize_prob: list[float] | None = option(None, 'First round: probabilities of resizing up, down, or keeping.')
    resize_range: list[float] | None = option(None, 'First round: the range of the random resize factor.')
    gaussian_noise_prob: float | None = option(None, 'First round: probability of Gaussian (else Poisson) noise.')
    noise_range: list[float] | None = option(None, 'First round: Gaussian noise sigma range, in 8-bit levels.')
    poisson_scale_range: list[float] | None = option(None, 'First round: Poisson noise scale range.')
    gray_noise_prob: float | None = option(None, 'First round: probability that the noise is grey (same in R, G, B).')
    jpeg_range: list[float] | None = option(None, 'First round: JPEG quality range.')
    second_blur_prob: float | None = option(None, 'Probability of the second blur.')
    resize_prob2: list[float] | None = option(None, 'Second round: as resize_prob.')
    resize_range2: list[float] | None = option(None, 'Second round: as resize_range.')
    gaussian_noise_prob2: float | None = option(None, 'Second round: as gaussian_noise_prob.')
    noise_range2: list[float] | None = option(None, 'Second round: as noise_range.')
    poisson_scale_range2: list[float] | None = option(None, 'Second round: as poisson_scale_range.')
    gray_noise_prob2: float | None = option(None, 'Second round: as gray_noise_prob.')
    jpeg_range2: list[float] | None = option(None, 'Final JPEG quality range.')
    gt_size: int | None = option(None, 'Side of the ground-truth patches cropped from the degraded batch (required '
                                       'with high_order_degradation).')
    queue_size: int = option(180, 'Training pairs in the pool that mixes batches (a multiple of batch_size_per_gpu).')
    high_order_degradation: bool = option(True, 'false: train on the dataset\'s own (lq, gt) pairs instead.')

    def check(self, path: str) -> None:
        """The values given (test.py reads none of them, so a test file may leave them out)."""
        if self.gt_size is not None and self.gt_size < 1:
            raise OptionError(f'Option "gt_size" must be a positive integer, got {self.gt_size}.', key='gt_size')
        if all(getattr(self, key) is not None for key in _DEGRADATION_KEYS):
            self._check_degradation()

    def check_training(self) -> None:
        """What training needs: with high_order_degradation (the default) every degradation key and gt_size."""
        if not self.high_order_degradation:
            return
        missing = [key for key in ('gt_size', *_DEGRADATION_KEYS) if getattr(self, key) is None]
        if missing:
            raise OptionError(f'Option "{missing[0]}" is required: with high_order_degradation (the default) the '
                              'ground truth is degraded on the fly and cropped to gt_size patches.', key=missing[0])

    def _check_degradation(self) -> None:
        try:
            self.degradation(scale=1)
            TrainingPairPool(self.queue_size)
        except ValueError as exc:
            key = str(exc).split()[0]
            raise OptionError(f'Option "{key}": {exc}.', key=key) from None

    def degradation(self, scale: int) -> SecondOrderDegradation:
        return SecondOrderDegradation(scale, **{key: getattr(self, key) for key in _DEGRADATION_KEYS})


@dataclass
class ESRNetOptions(DegradationOptions):
    gt_usm: bool = option(True, 'USM-sharpen the ground truth before degrading it; the sharpened image is the '
                                'target too.')


@dataclass
class ESRGANOptions(DegradationOptions):
    """Real-ESRGAN degrades the sharpened ground truth and picks, per loss, the plain or the sharpened target."""

    l1_gt_usm: bool = option(True, 'Pixel (and LDL) losses compare with the USM-sharpened ground truth.')
    percep_gt_usm: bool = option(True, 'The perceptual loss compares with the USM-sharpened ground truth.')
    gan_gt_usm: bool = option(False, 'network_d sees the USM-sharpened ground truth as real.')


class _DegradesOnTheFly(SRModel):
    """What RealESRNetModel and RealESRGANModel add to their base: the batch degraded where it is trained, and the
    generator and pool of that degradation in every training state."""

    def __init__(self, options: Options, device: torch.device, dist: DistContext = DistContext()) -> None:
        super().__init__(options, device, dist)
        if self.train_opt is not None:
            self._setup_degradation()
            self.check_batch_size()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), 'degradation': self.degradation_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.load_degradation_state(state.get('degradation'))

    def _setup_degradation(self) -> None:
        opt = self.degradation_options
        # only with the pipeline on: without it the degradation keys may be absent and are not read
        self.degrade = opt.degradation(self.options.scale) if opt.high_order_degradation else None
        self.pool = TrainingPairPool(opt.queue_size)
        # seeded from the global RNG, which the trainer has seeded with the run's seed + rank
        self.degradation_rng = torch.Generator(self.device)
        self.degradation_rng.manual_seed(int(torch.randint(0, 2**62, ()).item()))

    @property
    def degradation_options(self) -> DegradationOptions:
        opt = self.options.model_options
        if not isinstance(opt, DegradationOptions):
            raise TypeError(f'{type(self).__name__} needs DegradationOptions, got {type(opt).__name__}.')
        return opt

    def check_batch_size(self) -> None:
        """The pool takes whole batches: refuse, before training, a batch size that does not divide it."""
        (entry,) = self.options.datasets_of('train')
        batch, queue = entry.loader.batch_size_per_gpu, self.degradation_options.queue_size
        if self.degradation_options.high_order_degradation and queue % batch:
            raise OptionError(f'Option "queue_size" ({queue}) must be a multiple of '
                              f'"datasets.{entry.key}.batch_size_per_gpu" ({batch}).', key='queue_size')

    def degraded_pair(self, gt: torch.Tensor, degrade_from: torch.Tensor, batch: dict[str, Any]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(lq, gt): ``degrade_from`` degraded, both cropped to gt_size, then mixed through the pool."""
        assert self.degrade is not None  # prepare_batch degrades only with high_order_degradation
        lq = self.degrade(degrade_from, batch['kernel1'], batch['kernel2'], batch['sinc_kernel'],
                          self.degradation_rng)
        gt_size = self.degradation_options.gt_size
        assert gt_size is not None  # DegradationOptions.check requires it with high_order_degradation
        gt, lq = paired_random_crop_batch(gt, lq, gt_size, self.options.scale, self.degradation_rng)
        lq, gt = self.pool(lq.contiguous(), gt.contiguous(), self.degradation_rng)
        if self.channels_last:
            lq, gt = (t.contiguous(memory_format=torch.channels_last) for t in (lq, gt))
        return lq, gt

    def degradation_state(self) -> dict[str, Any]:
        return {'rng': self.degradation_rng.get_state(), 'pool': self.pool.state_dict()}

    def load_degradation_state(self, state: dict[str, Any] | None) -> None:
        if state is None:
            raise OptionError('The training state has no degradation state (it was not saved by a Real-ESRGAN '
                              'model): start from its network file with path.pretrain_network_g instead.',
                              key='path.resume_state')
        self.degradation_rng.set_state(state['rng'])
        self.pool.load_state_dict(state['pool'])


@MODEL_REGISTRY.register()
class RealESRNetModel(_DegradesOnTheFly):
    """Real-ESRNet: pixel losses on degraded-on-the-fly pairs (the first stage of Real-ESRGAN)."""

    TopLevelOptions = ESRNetOptions

    @torch.no_grad()
    def prepare_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        opt = self.options.model_options
        assert isinstance(opt, ESRNetOptions)
        if not opt.high_order_degradation:
            return batch
        gt = batch['gt'].contiguous()
        gt = usm_sharp(gt) if opt.gt_usm else gt
        lq, gt = self.degraded_pair(gt, gt, batch)
        return {'lq': lq, 'gt': gt}


@MODEL_REGISTRY.register()
class RealESRGANModel(_DegradesOnTheFly, SRGANModel):
    """Real-ESRGAN: the GAN stage, usually started from a Real-ESRNet (path.pretrain_network_g)."""

    TopLevelOptions = ESRGANOptions

    def __init__(self, options: Options, device: torch.device, dist: DistContext = DistContext()) -> None:
        super().__init__(options, device, dist)
        if self.train_opt is not None:
            side = self.training_gt_size()
            if side is not None and side <= USM_RADIUS // 2:
                raise OptionError(f'The training patches are {side}x{side}, but sharpening the ground truth (USM, as '
                                  f'BasicSR: a {USM_RADIUS + 1}-pixel blur with reflected borders) needs more than '
                                  f'{USM_RADIUS // 2} pixels a side; use larger patches (gt_size).', key='gt_size')

    def training_gt_size(self) -> int | None:
        if self.degradation_options.high_order_degradation:
            return self.degradation_options.gt_size
        return super().training_gt_size()  # the paired training set crops its own patches

    @torch.no_grad()
    def prepare_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        if not self.degradation_options.high_order_degradation:
            return {**batch, 'gt_usm': usm_sharp(batch['gt'])}
        gt = batch['gt'].contiguous()
        lq, gt = self.degraded_pair(gt, usm_sharp(gt), batch)
        return {'lq': lq, 'gt': gt, 'gt_usm': usm_sharp(gt)}  # sharpened after the pool mixed the pairs

    def generator_targets(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        opt = self.options.model_options
        assert isinstance(opt, ESRGANOptions)
        pick = [batch['gt_usm'] if sharpened else batch['gt']
                for sharpened in (opt.l1_gt_usm, opt.percep_gt_usm, opt.gan_gt_usm)]
        return pick[0], pick[1], pick[2]
