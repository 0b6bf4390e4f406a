"""Evaluate a network on benchmark sets: ``python srkit/test.py -opt options/test/....yml``.

Writes per-image and mean PSNR/SSIM as Markdown, CSV and JSON under results/<name>/.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ''):  # run as a script: import srkit from the repository, not srkit/'s own folder
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

from srkit.engine.cli import parse_args, run_entry_point  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    from srkit.config.options import load_options
    from srkit.core.dist import cleanup, init_distributed
    from srkit.engine.tester import run_test

    args = parse_args(argv, 'Test an SR network on benchmark sets (srkit).', training=False)
    options = load_options(args.opt, is_train=False, overrides=args.force_yml)
    dist = init_distributed(args.launcher, options.dist_params.backend, options.dist_params.port,
                            options.dist_params.timeout_s)
    try:
        run_test(options, dist)
    except BaseException as error:
        cleanup(error)
        raise
    cleanup()


if __name__ == '__main__':
    run_entry_point(main)
