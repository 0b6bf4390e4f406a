"""Convert an official release checkpoint of any registered architecture into srkit's ``{'params': ...}``.

    python scripts/convert_official.py --arch EIMN_A --scale 4 --input EIMN_A_x4.pth --output EIMN_A_x4_srkit.pth

srkit's loader already reads official files as they are; converting once gives a file with srkit's
names and layout (loadable with ``param_key_g: params`` and ``strict_load_g: true`` anywhere, and by
BasicSR-style tools). The official layout is undone by the architecture's own adapter (wrappers,
``module.``/``model.`` prefixes, renamed keys); the result must then fit the network exactly, or nothing
is written and the error names the first mismatched key with both shapes (another variant or scale).
The output is written atomically and never replaces an existing file unless --force is given.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from srkit.archs import create
from srkit.archs.weights import adapt_official_state_dict, check_state_dict
from srkit.core.checkpoint import atomic_save, extract_state_dict, load_checkpoint_file
from srkit.core.errors import CheckpointError
from srkit.engine.cli import run_entry_point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', required=True, help='registered architecture or preset, e.g. EIMN_A, IMDN, IMDN_RTC')
    parser.add_argument('--scale', required=True, type=int, help='upscaling factor the checkpoint was trained for')
    parser.add_argument('--input', required=True, type=Path, help='the official checkpoint')
    parser.add_argument('--output', required=True, type=Path,
                        help="where to write srkit's {'params': ...} file (.safetensors: in safetensors format)")
    parser.add_argument('--force', action='store_true', help='replace --output if it exists')
    return parser.parse_args(argv)


def convert(arch: str, scale: int, source: Path) -> dict[str, torch.Tensor]:
    """srkit's state dict for ``source``, in the network's key order; CheckpointError when it does not fit."""
    net = create(arch, scale)
    raw = extract_state_dict(load_checkpoint_file(source), None, str(source))
    state = adapt_official_state_dict(arch, raw)
    check_state_dict(net, state, source=str(source), target=f'{arch} x{scale}')
    return {key: state[key].detach().clone().contiguous() for key in net.state_dict()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.output.exists() and not args.force:
        raise CheckpointError(f'{args.output} exists; pass --force to replace it.')
    params = convert(args.arch, args.scale, args.input)
    atomic_save({'params': params}, args.output)
    print(f'wrote {args.output}: {args.arch} x{args.scale}, {len(params)} tensors '
          f'({sum(v.numel() for v in params.values()):,} values)')


if __name__ == '__main__':
    run_entry_point(main)
