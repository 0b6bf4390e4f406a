"""Real-ESRGAN's second-order degradation of a training batch and its training pair pool.

What BasicSR's RealESRGANModel does in ``feed_data`` on the GPU, as two objects the model calls:

- ``SecondOrderDegradation(scale, **options)(gt, kernel1, kernel2, sinc_kernel, generator)``: blur, random
  resize, noise, JPEG; blur again (``second_blur_prob``), resize, noise; then, in a random order, [resize to
  the LR size + sinc filter] and JPEG; clamp and round to 8-bit levels. BasicSR degrades the USM-sharpened GT,
  so the model passes ``usm_sharp(gt)`` as ``gt``.
- ``paired_random_crop_batch``: the same random ``gt_size`` crop of the whole GT and LR batch.
- ``TrainingPairPool``: a shuffled queue of ``queue_size`` pairs that mixes degradations drawn for different
  batches (one batch shares its resize and noise type), with ``state_dict`` so a resumed run continues exactly.

Every random choice comes from the ``torch.Generator`` passed in (see srkit.data.degradations).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from srkit.core.errors import CheckpointError
from srkit.data.degradations import (
    add_random_noise,
    check_distribution,
    check_probability,
    check_range,
    draw_resize_mode,
    filter2d,
    random_resize,
    resize,
)
from srkit.data.jpeg import diff_jpeg

__all__ = ['SecondOrderDegradation', 'TrainingPairPool', 'paired_random_crop_batch']


def _check_resize_range(name: str, value_range: Sequence[float]) -> tuple[float, float]:
    low, high = check_range(name, value_range)
    if not low <= 1 <= high:
        raise ValueError(f'{name} must contain 1 (down-scales are drawn in [min, 1], up-scales in '
                         f'[1, max]), got {list(value_range)}')
    return low, high


def _check_jpeg(name: str, value: Sequence[float]) -> tuple[float, float]:
    low, high = check_range(name, value)
    if not 1 <= low <= high <= 100:
        raise ValueError(f'{name} must be JPEG qualities within 1..100, got {list(value)}')
    return low, high


@dataclass(frozen=True)
class _Round:
    """The options of one round of degradation, checked (``suffix`` '' or '2' names them as BasicSR)."""

    resize_prob: list[float]
    resize_range: tuple[float, float]
    gaussian_prob: float
    sigma_range: tuple[float, float]
    poisson_scale_range: tuple[float, float]
    gray_prob: float
    jpeg_range: tuple[float, float]

    @classmethod
    def checked(cls, suffix: str, resize_prob: Sequence[float], resize_range: Sequence[float],
                gaussian_noise_prob: float, noise_range: Sequence[float], poisson_scale_range: Sequence[float],
                gray_noise_prob: float, jpeg_range: Sequence[float]) -> _Round:
        return cls(check_distribution(f'resize_prob{suffix}', resize_prob, 3, '[up, down, keep]'),
                   _check_resize_range(f'resize_range{suffix}', resize_range),
                   check_probability(f'gaussian_noise_prob{suffix}', gaussian_noise_prob),
                   check_range(f'noise_range{suffix}', noise_range, allow_zero=True),
                   check_range(f'poisson_scale_range{suffix}', poisson_scale_range, allow_zero=True),
                   check_probability(f'gray_noise_prob{suffix}', gray_noise_prob),
                   _check_jpeg(f'jpeg_range{suffix}', jpeg_range))

    def add_noise(self, img: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return add_random_noise(img, generator, gaussian_prob=self.gaussian_prob, sigma_range=self.sigma_range,
                                poisson_scale_range=self.poisson_scale_range, gray_prob=self.gray_prob)


class SecondOrderDegradation:
    """BasicSR's two rounds of degradation plus the final sinc/JPEG step, built from the top-level options.

    ``gaussian_noise_prob`` picks Gaussian over Poisson noise; ``noise_range`` is the Gaussian sigma in 8-bit
    levels, ``poisson_scale_range`` the Poisson scale; ``jpeg_range`` qualities; the ``*2`` options are the
    second round's.
    """

    def __init__(self, scale: int, resize_prob: Sequence[float], resize_range: Sequence[float],
                 gaussian_noise_prob: float, noise_range: Sequence[float], poisson_scale_range: Sequence[float],
                 gray_noise_prob: float, jpeg_range: Sequence[float], second_blur_prob: float,
                 resize_prob2: Sequence[float], resize_range2: Sequence[float], gaussian_noise_prob2: float,
                 noise_range2: Sequence[float], poisson_scale_range2: Sequence[float], gray_noise_prob2: float,
                 jpeg_range2: Sequence[float]) -> None:
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f'scale must be a positive integer, got {scale!r}')
        self.scale = scale
        self.first = _Round.checked('', resize_prob, resize_range, gaussian_noise_prob, noise_range,
                                    poisson_scale_range, gray_noise_prob, jpeg_range)
        self.second = _Round.checked('2', resize_prob2, resize_range2, gaussian_noise_prob2, noise_range2,
                                     poisson_scale_range2, gray_noise_prob2, jpeg_range2)
        self.second_blur_prob = check_probability('second_blur_prob', second_blur_prob)

    def _jpeg(self, img: torch.Tensor, quality_range: tuple[float, float], generator: torch.Generator
              ) -> torch.Tensor:
        """JPEG at a quality drawn uniformly per image; clamped first, as BasicSR (else JPEG makes artefacts)."""
        unit = torch.rand(img.shape[0], generator=generator, device=generator.device).double()
        quality = (quality_range[0] + unit * (quality_range[1] - quality_range[0])).float().to(img.device)
        return diff_jpeg(torch.clamp(img, 0, 1), quality)

    @torch.no_grad()
    def __call__(self, gt: torch.Tensor, kernel1: torch.Tensor, kernel2: torch.Tensor, sinc_kernel: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        """The LR batch (N, 3, H // scale, W // scale) of ``gt`` (N, 3, H, W) in [0, 1], in 8-bit levels.

        ``kernel1``, ``kernel2``, ``sinc_kernel``: (N, k, k) per image, as RealESRGANDataset gives them.
        Draw order: round 1 (resize, noise, JPEG), the second-blur coin, round 2 (resize, noise), the order
        coin, then the final resize mode and JPEG qualities in the order they are applied.
        """
        h, w = gt.shape[-2:]
        lr_size = (h // self.scale, w // self.scale)
        first, second = self.first, self.second
        out = filter2d(gt, kernel1)
        out = random_resize(out, generator, first.resize_prob, first.resize_range)
        out = first.add_noise(out, generator)
        out = self._jpeg(out, first.jpeg_range, generator)

        if torch.rand(1, generator=generator, device=generator.device).item() < self.second_blur_prob:
            out = filter2d(out, kernel2)
        out = random_resize(out, generator, second.resize_prob, second.resize_range,
                            relative_to=(h / self.scale, w / self.scale))
        out = second.add_noise(out, generator)

        # [resize back + sinc] and JPEG in either order; other orders make twisted lines (BasicSR's finding)
        if torch.rand(1, generator=generator, device=generator.device).item() < 0.5:
            out = filter2d(resize(out, draw_resize_mode(generator), size=lr_size), sinc_kernel)
            out = self._jpeg(out, second.jpeg_range, generator)
        else:
            out = self._jpeg(out, second.jpeg_range, generator)
            out = filter2d(resize(out, draw_resize_mode(generator), size=lr_size), sinc_kernel)
        return torch.clamp((out * 255).round(), 0, 255) / 255


def paired_random_crop_batch(gt: torch.Tensor, lq: torch.Tensor, gt_size: int, scale: int,
                             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same aligned crop of every image: ``gt_size`` GT pixels and ``gt_size // scale`` LR pixels.

    Draws the LR top row, then the left column (one each for the batch, as BasicSR).
    """
    lq_size = gt_size // scale
    h, w = lq.shape[-2:]
    if gt.shape[-2:] != (h * scale, w * scale):
        raise ValueError(f'GT {tuple(gt.shape[-2:])} is not {scale} x LR {(h, w)}')
    if lq_size < 1 or h < lq_size or w < lq_size:
        raise ValueError(f'gt_size {gt_size} does not fit: the LR images are {h}x{w}, the patch needs '
                         f'{lq_size}x{lq_size} (gt_size / scale)')
    top = int(torch.randint(h - lq_size + 1, (1,), generator=generator, device=generator.device).item())
    left = int(torch.randint(w - lq_size + 1, (1,), generator=generator, device=generator.device).item())
    lq = lq[..., top:top + lq_size, left:left + lq_size]
    gt = gt[..., top * scale:(top + lq_size) * scale, left * scale:(left + lq_size) * scale]
    return gt, lq


class TrainingPairPool:
    """BasicSR's training pair pool (``_dequeue_and_enqueue``): mixes pairs degraded in different batches.

    Until the queue of ``queue_size`` pairs is full, each batch is stored and returned as it is. Then each
    call shuffles the queue, returns its first batch-size pairs and puts the new batch in their place.
    The batch size must divide ``queue_size`` and stay the same.
    """

    def __init__(self, queue_size: int) -> None:
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f'queue_size must be a positive integer, got {queue_size!r}')
        self.queue_size = queue_size
        self.lq: torch.Tensor | None = None
        self.gt: torch.Tensor | None = None
        self.filled = 0

    @torch.no_grad()
    def __call__(self, lq: torch.Tensor, gt: torch.Tensor, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """The (lq, gt) batch to train on; draws one permutation of the queue once it is full."""
        b = lq.shape[0]
        if self.queue_size % b:
            raise ValueError(f'queue_size {self.queue_size} must be a multiple of the batch size {b} '
                             '(batch_size_per_gpu)')
        if self.lq is None or self.gt is None:
            self.lq = lq.new_zeros((self.queue_size, *lq.shape[1:]))
            self.gt = gt.new_zeros((self.queue_size, *gt.shape[1:]))
        elif self.lq.shape[1:] != lq.shape[1:] or self.gt.shape[1:] != gt.shape[1:]:
            raise ValueError(f'the pool holds pairs of {tuple(self.lq.shape[1:])} / {tuple(self.gt.shape[1:])}, '
                             f'got {tuple(lq.shape[1:])} / {tuple(gt.shape[1:])}')
        self.lq, self.gt = self.lq.to(lq.device), self.gt.to(gt.device)
        if self.filled < self.queue_size:
            self.lq[self.filled:self.filled + b] = lq
            self.gt[self.filled:self.filled + b] = gt
            self.filled += b
            return lq, gt
        order = torch.randperm(self.queue_size, generator=generator, device=generator.device).to(lq.device)
        self.lq, self.gt = self.lq[order], self.gt[order]
        out_lq, out_gt = self.lq[:b].clone(), self.gt[:b].clone()
        self.lq[:b], self.gt[:b] = lq, gt
        return out_lq, out_gt

    def state_dict(self) -> dict[str, Any]:
        """The queue and how full it is. Images that are exact 8-bit levels (the degraded LR always, the ground
        truth unless it was sharpened) are stored as uint8: a quarter of the bytes (the pool of Real-ESRGAN's
        files, 160 pairs of 256x256 GT, takes 134 MB of a training state in float32), restored bit for bit."""
        return {'queue_size': self.queue_size, 'filled': self.filled, 'lq': _compact(self.lq), 'gt': _compact(self.gt)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``; a pool saved with another queue_size is a CheckpointError."""
        missing = {'queue_size', 'filled', 'lq', 'gt'} - set(state)
        if missing:
            raise CheckpointError(f'the training pair pool state lacks {sorted(missing)}; it was not saved by '
                                  'TrainingPairPool.state_dict().')
        if state['queue_size'] != self.queue_size:
            raise CheckpointError(f'the checkpoint\'s training pair pool holds {state["queue_size"]} pairs but '
                                  f'queue_size is {self.queue_size}; resume with the queue_size it was saved '
                                  'with.')
        self.filled, self.lq, self.gt = int(state['filled']), _expand(state['lq']), _expand(state['gt'])


def _compact(images: torch.Tensor | None) -> torch.Tensor | None:
    """``images`` as uint8 levels when that loses nothing, else as they are."""
    if images is None or images.dtype != torch.float32:
        return images
    levels = (images * 255).round()
    exact = bool(levels.min() >= 0) and bool(levels.max() <= 255) and torch.equal(levels / 255, images)
    return levels.to(torch.uint8) if exact else images


def _expand(images: torch.Tensor | None) -> torch.Tensor | None:
    return images.float() / 255 if images is not None and images.dtype == torch.uint8 else images
