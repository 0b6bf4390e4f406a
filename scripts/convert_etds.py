"""Convert an ETDS training-form checkpoint (two streams) into the plain ETDSForInference form.

    python scripts/convert_etds.py --input net_g_latest.pth --output ETDS_M6C32_x4_plain.pth

The network shape is read from the checkpoint; --arch, or --num-block/--num-feat/--scale, state what you
expect and make a different checkpoint an error. The output (``{'params': ...}``) is written only after
the converted network has matched the training form within --atol, and never over an existing file
unless --force is given.

--network ECBSR re-parameterises an ECBSR training-form checkpoint (edge-oriented blocks with branches)
into ECBSRT instead, one 3x3 conv per block, under the same checks (srkit.archs.ecbsr_convert).
"""
from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from srkit.archs import create
from srkit.archs.ecbsr_convert import ecbsr_hyperparams, reparameterize_ecbsr
from srkit.archs.etds_arch import ETDS
from srkit.archs.etds_convert import convert_etds, etds_hyperparams, save_params
from srkit.core.checkpoint import extract_state_dict, load_checkpoint_file
from srkit.core.errors import CheckpointError, DataError, SrkitError
from srkit.core.registry import ARCH_REGISTRY
from srkit.engine.cli import run_entry_point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, type=Path,
                        help='training-form checkpoint (ETDS; ECBSR with --network ECBSR)')
    parser.add_argument('--output', required=True, type=Path,
                        help='where to write the plain-form checkpoint (.safetensors: in safetensors format)')
    parser.add_argument('--network', choices=('ETDS', 'ECBSR'), default='ETDS',
                        help='the training form in --input: ETDS (-> ETDSForInference) or ECBSR (-> ECBSRT)')
    parser.add_argument('--act-type', help='ECBSR only: the activation of a checkpoint without PReLU slopes '
                        '(relu, rrelu or softplus)')
    parser.add_argument('--arch', help='expected training-form preset, e.g. ETDS_M6C32 (ETDS only)')
    parser.add_argument('--num-block', type=int, help='expected number of blocks')
    parser.add_argument('--num-feat', type=int, help='expected total width (backbone + residual channels)')
    parser.add_argument('--scale', type=int, help='expected upscaling factor')
    parser.add_argument('--param-key', help="checkpoint entry to convert (default: 'params_ema', else "
                        "'params', else the file is a raw state dict)")
    parser.add_argument('--image', type=Path, help='a real LR image to check the conversion on as well')
    parser.add_argument('--atol', type=float, default=1e-5, help='largest output difference accepted')
    parser.add_argument('--force', action='store_true', help='replace --output if it exists')
    return parser.parse_args(argv)


def load_state(path: Path, param_key: str | None) -> dict[str, torch.Tensor]:
    """The state dict inside a BasicSR-style or raw checkpoint, without DataParallel's ``module.``."""
    state = extract_state_dict(load_checkpoint_file(path), param_key, str(path))
    return {k.removeprefix('module.'): v for k, v in state.items()}


def expected_shape(args: argparse.Namespace) -> dict[str, int]:
    """The hyperparameters the user named (from --arch and/or the explicit flags)."""
    expected = {}
    if args.arch and args.network != 'ETDS':
        raise SrkitError(f'--arch names an ETDS preset; for --network {args.network} give --num-block, '
                         '--num-feat and --scale instead.')
    if args.arch:
        net = None if isinstance(ARCH_REGISTRY.get(args.arch), type) else create(args.arch, args.scale or 4)
        if not isinstance(net, ETDS):
            raise SrkitError(f'--arch {args.arch} is not an ETDS training-form preset (e.g. ETDS_M6C32).')
        expected = {k: v for k, v in etds_hyperparams(net.state_dict()).items() if k in ('num_block', 'num_feat')}
    for key, value in (('num_block', args.num_block), ('num_feat', args.num_feat), ('upscale', args.scale)):
        if value is not None:
            expected[key] = value
    return expected


def read_image(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert('RGB'), dtype=np.float32) / 255
    except OSError as exc:
        raise DataError(f'{path}: cannot read the image ({exc}).') from exc
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def convert_file(args: argparse.Namespace) -> Mapping[str, object]:
    """Check, convert and write; returns the network's hyperparameters."""
    expected = expected_shape(args)
    state = load_state(args.input, args.param_key)
    image = read_image(args.image) if args.image else None
    try:
        ecbsr = args.network == 'ECBSR'
        found: Mapping[str, object] = ecbsr_hyperparams(state, args.act_type) if ecbsr else etds_hyperparams(state)
        wrong = {k: (v, found[k]) for k, v in expected.items() if found[k] != v}
        if wrong:
            detail = ', '.join(f'{k}: expected {e}, found {f}' for k, (e, f) in wrong.items())
            raise CheckpointError(f'not the network you named ({detail}).')
        plain = (reparameterize_ecbsr(state, args.act_type, check_image=image, atol=args.atol) if ecbsr
                 else convert_etds(state, check_image=image, atol=args.atol))
    except CheckpointError as exc:
        raise CheckpointError(f'{args.input}: {exc}') from exc
    save_params(plain, args.output, overwrite=args.force)
    return found


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.output.exists() and not args.force:
        raise CheckpointError(f'{args.output} exists; pass --force to replace it.')
    found = convert_file(args)
    plain = 'ECBSRT' if args.network == 'ECBSR' else 'ETDSForInference'
    print(f'wrote {args.output} ({plain}, ' + ', '.join(f'{k}={v}' for k, v in found.items()) + ')')


if __name__ == '__main__':
    run_entry_point(main)
