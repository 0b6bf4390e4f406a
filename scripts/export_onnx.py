"""Export a registered architecture with its weights to ONNX, then check the file in onnxruntime.

    python scripts/export_onnx.py --arch ETDSForInference_M6C32 --scale 4 \\
        --weights ETDS_M6C32_x4.pth --output etds_m6c32_x4.onnx

The network is built by ``srkit.archs.create(arch, scale)`` (presets take only the scale). The
file accepts any input height and width unless --static is given; it is compared with PyTorch at
--height x --width and at a second, odd size before the command reports success. --fp16 writes
float16 weights and arithmetic behind float32 input and output, verified within 5e-3 unless --atol
says otherwise.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from srkit.archs import create
from srkit.archs.weights import load_pretrained
from srkit.core.errors import SrkitError
from srkit.engine.cli import run_entry_point
from srkit.tools.onnx_export import FP16_ATOL, export_onnx, verify_onnx


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', required=True, help='registered architecture or preset name')
    parser.add_argument('--scale', required=True, type=int, help='upscaling factor')
    parser.add_argument('--weights', required=True, type=Path, help='checkpoint ({params}, {params_ema} or raw)')
    parser.add_argument('--output', required=True, type=Path, help='the .onnx file to write')
    parser.add_argument('--height', type=int, default=64, help='example input height')
    parser.add_argument('--width', type=int, default=64, help='example input width')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset version (default 17)')
    parser.add_argument('--static', action='store_true', help='fix the input size to --height x --width')
    parser.add_argument('--param-key', help="checkpoint entry to load (default: 'params_ema', else 'params', "
                        'else the file is a raw state dict)')
    parser.add_argument('--fp16', action='store_true', help='float16 inside, float32 input and output')
    parser.add_argument('--atol', type=float, help='largest ONNX/PyTorch difference accepted '
                        f'(default 1e-4, with --fp16 {FP16_ATOL:g})')
    parser.add_argument('--force', action='store_true', help='replace --output if it exists')
    return parser.parse_args(argv)


def load_weights(net: torch.nn.Module, arch: str, path: Path, param_key: str | None) -> None:
    """Load strictly, through the same path (wrappers, prefixes, official key maps) as training and test.py."""
    load_pretrained(net, path, param_key=param_key, strict=True, arch_type=arch)


def export(args: argparse.Namespace) -> float:
    """Build, load, export and verify; returns the largest ONNX/PyTorch difference."""
    if args.output.exists() and not args.force:
        raise SrkitError(f'{args.output} exists; pass --force to replace it.')
    net = create(args.arch, args.scale).eval()
    load_weights(net, args.arch, args.weights, args.param_key)
    shape = (1, 3, args.height, args.width)
    checks = [torch.rand(shape)]
    if not args.static:
        checks.append(torch.rand(1, 3, args.height + 7, args.width + 3))
    unverified = args.output.with_name(f'.{args.output.name}.{os.getpid()}.unverified')
    try:  # the output appears only once onnxruntime agrees with PyTorch
        export_onnx(net, unverified, shape, opset=args.opset, dynamic_hw=not args.static, fp16=args.fp16)
        atol = args.atol if args.atol is not None else FP16_ATOL if args.fp16 else 1e-4
        diff = verify_onnx(net, unverified, checks, atol=atol, name=str(args.output))
        os.replace(unverified, args.output)
    finally:
        unverified.unlink(missing_ok=True)
    return diff


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    diff = export(args)
    print(f'wrote {args.output}; onnxruntime matches PyTorch within {diff:.2e}')


if __name__ == '__main__':
    run_entry_point(main)
