"""Evaluating a network on a dataset: per-image metrics, optional SR images, sharded across ranks.

Used by validation during training and by test.py. Each rank takes every world_size-th image; the
per-image results are gathered on every rank and averaged in image order, so the numbers are exactly those
of a single-process run and no rank is left waiting.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Dataset

from srkit.config.options import LoaderOptions
from srkit.config.typed_options import Component
from srkit.core.dist import DistContext, all_gather_objects
from srkit.core.errors import DataError, OptionError
from srkit.core.registry import METRIC_REGISTRY
from srkit.data.loader import build_dataloader
from srkit.data.prefetchers import build_prefetcher

__all__ = ['EvalResult', 'evaluate', 'quantize', 'bicubic_predictor', 'check_metrics', 'needs_reference']

logger = logging.getLogger('srkit')


@dataclass
class EvalResult:
    dataset: str
    per_image: list[dict[str, float | str]] = field(default_factory=list)
    mean: dict[str, float] = field(default_factory=dict)


def quantize(img: torch.Tensor) -> torch.Tensor:
    """The 8-bit image a user would save, as float64 values in [0, 255] (metrics are computed on this)."""
    return (img.detach().clamp(0, 1) * 255.0).round().to(torch.float64)


def bicubic_predictor(scale: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """MATLAB bicubic upscaling, the baseline every SR table starts from."""
    from srkit.ops.imresize import imresize
    return lambda lq: imresize(lq.double(), scale).float()


def _metric_arguments(comp: Component, metric: Callable[..., torch.Tensor],
                      crop_border: int | None) -> dict[str, object]:
    args = {k: v for k, v in comp.args.items() if k != 'better'}
    if crop_border is not None and 'crop_border' in inspect.signature(metric).parameters:
        args['crop_border'] = crop_border
    return args


def needs_reference(metric_type: str) -> bool:
    """Whether the metric compares with a ground truth (PSNR, SSIM, LPIPS ...); NIQE registers as one that does
    not, so it also scores sets without ground truth."""
    meta = METRIC_REGISTRY.meta(metric_type)
    return not (isinstance(meta, dict) and meta.get('reference') is False)


def check_metrics(metrics: dict[str, Component], dataset: Dataset, dataset_name: str,
                  crop_border: int | None = None) -> None:
    """Run every metric once on blank images of the dataset's first ground truth's size, so that arguments
    that cannot work there (a negative or too large crop_border, SSIM on a too small image) are refused
    before training or testing starts, naming the option, not after hours at the first validation. A set
    without ground truth is scored by its no-reference metrics only, which are not tried here (the SR size is
    known only once the network has run)."""
    sample = dataset[0]
    if 'gt' not in sample or not metrics:
        return
    blank = torch.zeros(1, *sample['gt'].shape, dtype=torch.float64)
    for key, comp in metrics.items():
        metric = METRIC_REGISTRY.get(comp.type)
        try:
            metric(blank, blank, **_metric_arguments(comp, metric, crop_border))
        except ValueError as exc:
            raise OptionError(f'Option "val.metrics.{key}" cannot score {dataset_name}, whose first ground truth '
                              f'{sample.get("gt_path", "")} is {tuple(blank.shape[-2:])} (H, W): {exc}.',
                              key=f'val.metrics.{key}') from None


def evaluate(predict: Callable[[torch.Tensor], torch.Tensor], dataset: Dataset, dataset_name: str,
             metrics: dict[str, Component], dist: DistContext = DistContext(), save_dir: Path | None = None,
             suffix: str | None = None, show_progress: bool = False, crop_border: int | None = None,
             loader: LoaderOptions | None = None) -> EvalResult:
    """Run ``predict`` on every sample (batch of one), score it, optionally save the SR image.

    Samples come through a DataLoader with the dataset's ``loader`` options (``num_worker_per_gpu`` workers
    decode the next images while the network runs; ``prefetch_mode: cuda`` copies them ahead), each rank
    taking every world_size-th image. ``crop_border`` replaces the metrics' own (a multi-scale model scores
    each set at its scale).
    """
    from srkit.data.image_io import tensor_to_img, write_image

    loader = loader or LoaderOptions()
    indices = list(range(dist.rank, len(dataset), dist.world_size))  # type: ignore[arg-type]
    batches = build_prefetcher(build_dataloader(dataset, loader, indices, 'test', seed=0), loader.prefetch_mode,
                               _device_of(loader))
    if show_progress and dist.is_main:
        from tqdm import tqdm
        batches = tqdm(batches, total=len(indices), desc=f'Test {dataset_name}', unit='img', leave=False)
    local: list[tuple[int, dict[str, float | str]]] = []
    no_reference = {key: comp for key, comp in metrics.items() if not needs_reference(comp.type)}  # sets without GT
    for index, sample in zip(indices, batches):
        sr = predict(sample['lq'])
        lq_path = sample['lq_path'][0] if 'lq_path' in sample else str(index)
        name = Path(lq_path).stem
        row: dict[str, float | str] = {'image': name}
        scored = metrics if 'gt' in sample else no_reference
        if scored:
            gt_q = None
            if 'gt' in sample:
                gt = sample['gt'].cpu()
                if sr.shape[-2:] != gt.shape[-2:]:
                    raise DataError(f'{dataset_name}: the output for {lq_path} is {tuple(sr.shape[-2:])} but its '
                                    f'ground truth {sample["gt_path"][0]} is {tuple(gt.shape[-2:])} (H, W); check '
                                    'the scale and the LR/HR pairing.')
                gt_q = quantize(gt)
            sr_q = quantize(sr.cpu())
            for key, comp in scored.items():
                metric = METRIC_REGISTRY.get(comp.type)
                row[key] = float(metric(sr_q, gt_q, **_metric_arguments(comp, metric, crop_border))[0])
        if save_dir is not None:
            out_name = f'{name}_{suffix}.png' if suffix else f'{name}.png'
            write_image(save_dir / out_name, tensor_to_img(sr[0].cpu()))
        local.append((index, row))
    gathered = sorted((item for part in all_gather_objects(local) for item in part), key=lambda item: item[0])
    result = EvalResult(dataset_name, [row for _, row in gathered])
    for key in metrics:
        values = [float(row[key]) for row in result.per_image if key in row]
        if values:
            result.mean[key] = sum(values) / len(values)
    return result


def _device_of(loader: LoaderOptions) -> torch.device:
    """Where ``prefetch_mode: cuda`` copies batches: this process's current GPU."""
    return torch.device('cuda', torch.cuda.current_device()) if loader.prefetch_mode == 'cuda' else torch.device('cpu')
