"""Evaluate an official checkpoint with test.py's own code path on a ../shared benchmark set."""
from __future__ import annotations

from pathlib import Path

from conftest import REPO, shared_path

from srkit.config.options import load_options
from srkit.engine.tester import run_test


def evaluate_with_test_py(option_file: str, weights: str, set_name: str, scale: int, results_root: Path,
                          extra: list[str] | None = None) -> tuple[float, float]:
    """Mean (PSNR, SSIM) on the Y channel of ``set_name`` (BasicSR layout: GTmod12 + LRbicx{scale}).

    The option file's dataset paths are pointed at ../shared; everything else is the file as shipped.
    """
    data = shared_path('data', set_name)
    overrides = [
        f'path.pretrain_network_g={shared_path(weights)}',
        f'path.results_root={results_root}',
        'val.save_img=false', 'val.pbar=false',
        f'datasets={{test_1: {{name: {set_name}, type: PairedImageDataset, dataroot_gt: {data}/GTmod12, '
        f'dataroot_lq: {data}/LRbicx{scale}}}}}',
    ] + (extra or [])
    options = load_options(REPO / option_file, is_train=False, overrides=overrides)
    result = run_test(options)[0]
    return result.mean['psnr'], result.mean['ssim']
