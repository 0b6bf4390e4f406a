"""Quantize an exported float32 ONNX super-resolution model to INT8 (onnxruntime, QDQ, per-channel weights).

    python scripts/export_onnx.py --arch ETDSForInference_M6C32 --scale 4 \\
        --weights ETDS_M6C32_x4.pth --output etds_m6c32_x4.onnx
    python scripts/quantize_onnx.py --model etds_m6c32_x4.onnx --calibration ../shared/data/T91/HR \\
        --output etds_m6c32_x4_int8.onnx

Activation ranges are calibrated on --patches random LR patches (seeded) cut from the HR training images
in --calibration and bicubic-downscaled by the model's scale, which is read from the model by running it.
A model with a fixed input size is calibrated at that size. The output is written only after the INT8
model ran in onnxruntime and its 8-bit output scored at least --min-psnr dB against the float32 model's
on the calibration patches; an existing file is kept unless --force.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from srkit.core.errors import SrkitError
from srkit.engine.cli import run_entry_point
from srkit.tools.quantize import DEFAULT_MIN_PSNR, calibration_patches, model_scale, quantize_int8


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True, type=Path, help='the float32 .onnx file (scripts/export_onnx.py)')
    parser.add_argument('--calibration', required=True, type=Path, help='folder of HR training images')
    parser.add_argument('--output', required=True, type=Path, help='the INT8 .onnx file to write')
    parser.add_argument('--patches', type=int, default=32, help='number of calibration patches (default 32)')
    parser.add_argument('--patch-size', type=int, default=48, help='LR patch side for a model of any input size')
    parser.add_argument('--seed', type=int, default=0, help='seed of the patch draw (default 0)')
    parser.add_argument('--reduce-range', action='store_true',
                        help='7-bit weights: onnxruntime advises it for x86 CPUs without VNNI')
    parser.add_argument('--per-tensor', action='store_true', help='one weight scale per tensor, not per channel')
    parser.add_argument('--min-psnr', type=float, default=DEFAULT_MIN_PSNR,
                        help=f'least PSNR of INT8 against float32 output accepted (default {DEFAULT_MIN_PSNR:g} dB)')
    parser.add_argument('--force', action='store_true', help='replace --output if it exists')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.output.exists() and not args.force:
        raise SrkitError(f'{args.output} exists; pass --force to replace it.')
    if not args.model.is_file():
        raise SrkitError(f'{args.model}: ONNX model not found.')
    if args.patches < 1 or args.patch_size < 1:
        raise SrkitError('--patches and --patch-size must be at least 1.')
    scale, fixed = model_scale(args.model)
    patches = calibration_patches(args.calibration, scale, size=fixed or (args.patch_size, args.patch_size),
                                  count=args.patches, seed=args.seed)
    psnr = quantize_int8(args.model, args.output, patches, per_channel=not args.per_tensor,
                         reduce_range=args.reduce_range, min_psnr=args.min_psnr)
    print(f'wrote {args.output}; on {len(patches)} calibration patches at x{scale} its output scores '
          f'{psnr:.2f} dB against the float32 model')


if __name__ == '__main__':
    run_entry_point(main)
