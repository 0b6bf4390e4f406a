"""Super-resolve images: ``python srkit/infer.py -i <image|folder> -o <folder> --model <arch|option file>``.

    python srkit/infer.py -i photos/ -o out/ --model EIMN_A --weights EIMN_A_x2.pth --scale 2
    python srkit/infer.py -i a.png -o out/ --model options/test/IMDN/test_IMDN_x4.yml --tile 256 --bf16

Outputs are PNGs named ``<stem>_x{scale}.png``. Existing outputs are never replaced unless --force
(--skip-existing resumes an interrupted folder). Grey inputs give grey outputs; an alpha channel is
upscaled with bicubic and kept (srkit/tools/upscale.py states the policy).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ''):  # run as a script: import srkit from the repository, not srkit/'s own folder
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or '.').resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

from srkit.core.errors import DataError, OptionError  # noqa: E402
from srkit.engine.cli import run_entry_point  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--input', required=True, type=Path, help='an image, or a folder of images')
    parser.add_argument('-o', '--output', required=True, type=Path, help='folder for the results')
    parser.add_argument('--model', required=True, help='architecture name (e.g. EIMN_A) or option file (.yml)')
    parser.add_argument('--weights', help='checkpoint (default: path.pretrain_network_g of an option file)')
    parser.add_argument('--scale', type=int, help='upscaling factor (required with an architecture name)')
    parser.add_argument('--param-key', help="checkpoint entry (default: 'params_ema' when present, else 'params')")
    parser.add_argument('--tile', type=int, default=0, help='tile size in LR pixels (0: whole images)')
    parser.add_argument('--tile-overlap', type=int, default=16, help='LR pixels each tile sees beyond its border')
    parser.add_argument('--self-ensemble', action='store_true', help='average the x8 flip/transpose ensemble')
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument('--fp16', dest='precision', action='store_const', const='fp16', help='autocast fp16 (CUDA)')
    precision.add_argument('--bf16', dest='precision', action='store_const', const='bf16', help='autocast bf16')
    parser.set_defaults(precision='fp32')
    parser.add_argument('--device', default='auto', help='auto (CUDA when available), cpu, cuda, cuda:1')
    parser.add_argument('--allow-16bit', action='store_true', help='read 16-bit images (keeping the high byte)')
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument('--force', action='store_true', help='replace existing outputs')
    existing.add_argument('--skip-existing', action='store_true', help='leave existing outputs and skip their inputs')
    return parser.parse_args(argv)


def list_inputs(source: Path) -> list[Path]:
    """The image, or the images directly inside the folder (sorted); none is an error."""
    from srkit.data.image_io import IMAGE_EXTENSIONS
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError(f'--input {source}: no such file or folder.')
    images = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise DataError(f'--input {source}: the folder holds no images ({", ".join(IMAGE_EXTENSIONS)}).')
    return images


def plan_outputs(inputs: list[Path], output: Path, scale: int, force: bool,
                 skip_existing: bool) -> list[tuple[Path, Path]]:
    """(input, output) pairs, checked before any work: clashing names and existing files are refused."""
    pairs: list[tuple[Path, Path]] = []
    seen: dict[Path, Path] = {}
    for path in inputs:
        target = output / f'{path.stem}_x{scale}.png'
        if target in seen:
            raise DataError(f'{path} and {seen[target]} would both be written to {target}; rename one of them.')
        seen[target] = path
        pairs.append((path, target))
    existing = [t for _, t in pairs if t.exists()]
    if existing and not (force or skip_existing):
        raise DataError(f'{existing[0]} exists ({len(existing)} of {len(pairs)} outputs exist); pass --force to '
                        'replace them or --skip-existing to keep them.')
    return [(s, t) for s, t in pairs if not (skip_existing and t.exists())]


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    from srkit.core.threads import apply_threads
    from srkit.data.image_io import write_image
    from srkit.tools.models import load_model
    from srkit.tools.upscale import amp_dtype, read_source, upscale_source

    args = parse_args(argv)
    if args.tile < 0 or args.tile_overlap < 0:
        raise OptionError('--tile and --tile-overlap must be >= 0.')
    inputs = list_inputs(args.input)  # before the model loads: a wrong path fails at once
    model = load_model(args.model, weights=args.weights, scale=args.scale, device=args.device,
                       param_key=args.param_key)
    print(apply_threads(None, model.device), file=sys.stderr)  # SRKIT_NUM_THREADS or OMP_NUM_THREADS override
    dtype = amp_dtype(args.precision, model)
    pairs = plan_outputs(inputs, args.output, model.scale, args.force, args.skip_existing)
    for source, target in tqdm(pairs, desc=f'{model.arch} x{model.scale}', unit='img', disable=None):
        image = read_source(source, allow_16bit=args.allow_16bit)
        write_image(target, upscale_source(model, image, tile=args.tile, overlap=args.tile_overlap,
                                        ensemble=args.self_ensemble, dtype=dtype))
    print(f'{len(pairs)} image(s) written to {args.output}')


if __name__ == '__main__':
    run_entry_point(main)
