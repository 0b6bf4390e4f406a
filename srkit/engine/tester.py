"""test.py's work: evaluate a network on every test set and write per-image and mean tables.

Results go to results/<name>/ as Markdown, CSV and JSON (plus SR images when ``val.save_img``); an
existing results folder is archived, never overwritten.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srkit.config.options import DatasetOptions, Options, ValOptions, dump_options
from srkit.core.dist import DistContext
from srkit.core.errors import DataError, SrkitError
from srkit.core.logger import setup_logger
from srkit.core.registry import MODEL_REGISTRY
from srkit.core.threads import apply_threads
from srkit.data.loader import build_dataset
from srkit.engine.experiment import archive_existing, prepare_folder, timestamp
from srkit.engine.trainer import run_device
from srkit.models.evaluator import EvalResult, check_metrics, evaluate

__all__ = ['run_test', 'results_markdown', 'format_metric', 'write_results', 'read_results', 'ResultsSummary']

logger = logging.getLogger('srkit')


def run_test(options: Options, dist: DistContext = DistContext()) -> list[EvalResult]:
    """Score every test (and val) set; the tables of the sets done are written even when a later one fails.

    The network, its weights and every dataset folder are checked before the results folder is made, so a
    mistake found there leaves nothing behind.
    """
    root = Path(options.path.results_root or Path('results') / options.name)
    setup_logger(None, dist.is_main)
    device = run_device(options, dist)
    apply_threads(options.num_threads, device)
    model = MODEL_REGISTRY.get(options.model_type)(options, device, dist)
    entries = options.datasets_of('test') + options.datasets_of('val')
    datasets = [build_dataset(entry) for entry in entries]
    val = options.val or ValOptions()
    for entry, dataset in zip(entries, datasets):
        check_metrics(val.metrics, dataset, entry.name,
                      crop_border=entry.scale_or(options.scale) if model.multi_scale else None)
    if dist.is_main:
        archived = archive_existing(root)
        prepare_folder(root)
        setup_logger(root / f'test_{options.name}_{timestamp()}.log', True)
        if archived:
            logger.info('A results folder %s existed; it was moved to %s.', root, archived)
        for notice in options.notices:
            logger.info(notice)
        (root / 'options.yml').write_text(dump_options(options), encoding='utf-8')
    results: list[EvalResult] = []
    try:
        for entry, dataset in zip(entries, datasets):
            results.append(_score(model, entry, dataset, val, root, dist))
    except SrkitError as exc:
        if dist.is_main and results:
            write_results(root, options, results)
        done = (f'the tables of {", ".join(r.dataset for r in results)} are in {root}' if results
                else 'no set was scored')
        raise type(exc)(f'test set {entry.name} (datasets.{entry.key}) failed: {exc.message} ({done}).',
                        key=exc.key, file=exc.file) from None
    if dist.is_main:
        write_results(root, options, results)
        logger.info('Results written to %s', root)
    return results


def _score(model: Any, entry: DatasetOptions, dataset: Any, val: ValOptions, root: Path,
           dist: DistContext) -> EvalResult:
    """One test set through the model: per-image and mean metrics, SR images when asked."""
    scale = entry.scale_or(model.options.scale)
    save_dir = root / 'visualization' / entry.name if val.save_img and dist.is_main else None
    predict = functools.partial(model.predict, scale=scale, tile=val.tile_size, overlap=val.tile_overlap,
                                ensemble=val.self_ensemble)
    result = evaluate(predict, dataset, entry.name, val.metrics, dist, save_dir=save_dir, suffix=val.suffix,
                      show_progress=val.pbar, crop_border=scale if model.multi_scale else None, loader=entry.loader)
    means = ', '.join(f'{k}: {format_metric(v)}' for k, v in result.mean.items())
    logger.info('%s (%d images): %s', entry.name, len(result.per_image), means or 'no metrics')
    return result


def results_markdown(options: Options, results: list[EvalResult]) -> str:
    lines = [f'# {options.name}: {options.network_g.type} x{options.scale}', '']
    metric_keys = list(options.val.metrics) if options.val else []
    if metric_keys:
        lines += ['| dataset | ' + ' | '.join(metric_keys) + ' |', '|---|' + '---|' * len(metric_keys)]
        lines += [f'| {r.dataset} | ' + ' | '.join(format_metric(r.mean.get(k)) for k in metric_keys) + ' |'
                  for r in results]
        lines.append('')
    for result in results:
        lines += [f'## {result.dataset}', '', '| image | ' + ' | '.join(metric_keys) + ' |',
                  '|---|' + '---|' * len(metric_keys)]
        lines += [f'| {row["image"]} | ' + ' | '.join(format_metric(row.get(k)) for k in metric_keys) + ' |'
                  for row in result.per_image]
        lines.append('')
    return '\n'.join(lines)


def format_metric(value: object) -> str:
    """A metric as every srkit table prints it: 4 decimals of the float's exact binary value ('-' when absent).

    test.py's results.md and the model-zoo table both print through this, so one value never shows as two
    strings (30.87125 is stored as 30.8712499999..., hence '30.8712', in both).
    """
    return f'{value:.4f}' if isinstance(value, float) else '-'


def write_results(root: Path, options: Options, results: list[EvalResult]) -> None:
    (root / 'results.md').write_text(results_markdown(options, results), encoding='utf-8')
    buffer = io.StringIO()
    metric_keys = list(options.val.metrics) if options.val else []
    writer = csv.writer(buffer)
    writer.writerow(['dataset', 'image', *metric_keys])
    for result in results:
        for row in result.per_image:
            writer.writerow([result.dataset, row['image'], *(row.get(k, '') for k in metric_keys)])
        writer.writerow([result.dataset, 'mean', *(result.mean.get(k, '') for k in metric_keys)])
    (root / 'results.csv').write_text(buffer.getvalue(), encoding='utf-8')
    payload = {'name': options.name, 'arch': options.network_g.type, 'scale': options.scale,
               'weights': options.path.pretrain_network_g,
               'datasets': [{'name': r.dataset, 'mean': r.mean, 'per_image': r.per_image} for r in results]}
    (root / 'results.json').write_text(json.dumps(payload, indent=2), encoding='utf-8')


@dataclass(frozen=True)
class ResultsSummary:
    """What a results.json says: the run, its network and the mean metrics of each dataset."""

    name: str
    arch: str
    scale: int
    weights: str | None
    means: dict[str, dict[str, float]]


def read_results(path: Path) -> ResultsSummary:
    """The summary of a results.json that ``write_results`` wrote; anything else is a DataError."""
    try:
        payload = json.loads(Path(path).read_text(encoding='utf-8'))
        return ResultsSummary(payload['name'], payload['arch'], int(payload['scale']), payload.get('weights'),
                              {d['name']: d['mean'] for d in payload['datasets']})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f'{path}: not a results.json written by test.py ({exc}).') from None
