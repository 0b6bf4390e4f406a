"""Train a network from an option file: ``python srkit/train.py -opt options/train/....yml``.

Multi-GPU: ``torchrun --nproc_per_node=N srkit/train.py -opt x.yml --launcher pytorch``.
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
    from srkit.config.options import apply_debug, load_options
    from srkit.core.dist import cleanup, init_distributed
    from srkit.engine.trainer import Trainer

    args = parse_args(argv, 'Train an SR network (srkit).', training=True)
    options = load_options(args.opt, is_train=True, overrides=args.force_yml)
    if args.debug:
        options = apply_debug(options)
    dist = init_distributed(args.launcher, options.dist_params.backend, options.dist_params.port,
                            options.dist_params.timeout_s)
    try:
        Trainer(options, dist, auto_resume=args.auto_resume).train()
    except BaseException as error:
        cleanup(error)
        raise
    cleanup()


if __name__ == '__main__':
    run_entry_point(main)
