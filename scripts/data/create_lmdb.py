"""Pack a folder of images into a BasicSR-layout LMDB: ``data.mdb`` + ``meta_info.txt``.

Keys are the file names without extension; values are PNG bytes (re-encoded, compression level
``--compress-level``, BasicSR's default 1); meta_info.txt has one ``name.png (h,w,c) level`` line per image.
Every image is decoded on the way in, so a corrupt file fails here, not in the middle of a training run.

    python scripts/data/create_lmdb.py --input datasets/DIV2K/DIV2K_train_HR_sub \\
        --output datasets/DIV2K/DIV2K_train_HR_sub.lmdb

Use the LMDB with ``io_backend: {type: lmdb}`` and ``dataroot_gt: .../DIV2K_train_HR_sub.lmdb``.
The output must not exist: nothing is ever overwritten.
"""
from __future__ import annotations

import argparse
import functools
import shutil
from multiprocessing import Pool
from pathlib import Path

from PIL import Image

from srkit.core.errors import DataError, OptionError
from srkit.data.file_backends import DiskBackend, strip_image_extension
from srkit.data.image_io import encode_png, read_image
from srkit.engine.cli import run_entry_point


def encode_one(path: Path, compress_level: int) -> tuple[bytes, tuple[int, int, int]]:
    img = read_image(path)
    return encode_png(img, compress_level), img.shape


def create_lmdb(input_dir: Path, output: Path, compress_level: int = 1, batch: int = 1000, workers: int = 1) -> int:
    """Write the LMDB; returns the number of images. A failed run removes its own partial output."""
    names = DiskBackend(input_dir).keys()
    if not names:
        raise DataError(f'{input_dir}: no images found.')
    keys = [strip_image_extension(n) for n in names]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise DataError(f'{input_dir}: several files share the key {duplicates[0]!r} (same name, other extension).')
    if output.exists():
        raise DataError(f'{output}: already exists; choose a new output (nothing is overwritten).')
    paths = [input_dir / n for n in names]
    map_size = int(sum(_raw_size(p) for p in paths) * 1.2) + (64 << 20)  # PNG rarely exceeds the raw size
    output.mkdir(parents=True)
    try:
        lines = _write(paths, keys, output, map_size, compress_level, batch, workers)
    except BaseException:
        shutil.rmtree(output)
        raise
    (output / 'meta_info.txt').write_text(''.join(lines), encoding='utf-8')
    return len(lines)


def _raw_size(path: Path) -> int:
    """Bytes of the decoded 8-bit RGB image, from the header only."""
    try:
        with Image.open(path) as img:
            return img.width * img.height * 3
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f'{path}: not a readable image ({exc}).') from None


def _write(paths: list[Path], keys: list[str], output: Path, map_size: int, compress_level: int, batch: int,
           workers: int) -> list[str]:
    import lmdb

    work = functools.partial(encode_one, compress_level=compress_level)
    pool = Pool(workers) if workers > 1 else None
    env = lmdb.open(str(output), map_size=map_size)
    lines = []
    try:
        txn = env.begin(write=True)
        encoded = pool.imap(work, paths) if pool else map(work, paths)
        for i, (key, (data, (h, w, c))) in enumerate(zip(keys, encoded), 1):
            txn.put(key.encode('utf-8'), data)
            lines.append(f'{key}.png ({h},{w},{c}) {compress_level}\n')
            if i % batch == 0:
                txn.commit()
                txn = env.begin(write=True)
        txn.commit()
    finally:
        env.close()
        if pool:
            pool.terminate()
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--input', required=True, type=Path, help='folder of images')
    parser.add_argument('--output', required=True, type=Path, help='new LMDB folder, e.g. name.lmdb')
    parser.add_argument('--compress-level', type=int, default=1, choices=range(10), metavar='0-9',
                        help='PNG compression level (default 1)')
    parser.add_argument('--batch', type=int, default=1000, help='images per LMDB transaction (default 1000)')
    parser.add_argument('--workers', type=int, default=1, help='processes decoding/encoding (default 1)')
    args = parser.parse_args(argv)
    if args.batch < 1 or args.workers < 1:
        raise OptionError(f'--batch {args.batch} --workers {args.workers}: both must be positive.')
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    count = create_lmdb(args.input, args.output, args.compress_level, args.batch, args.workers)
    print(f'{count} images written to {args.output} (meta_info.txt beside data.mdb).')


if __name__ == '__main__':
    run_entry_point(main)
