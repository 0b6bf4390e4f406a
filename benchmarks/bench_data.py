"""Read throughput of 480x480 training sub-images: a PNG folder against the same images in an LMDB.

BSD200 photos are 481x321, too small for one 480x480 crop, so each tile is two 480x240 crops (of a photo
and the next one, portrait photos turned) stacked: real photographic content, the size DIV2K sub-images
have. The tiles go into a temporary folder (PNG, Pillow's default compression), the LMDB is built from it
with scripts/data/create_lmdb.py (PNG level 1, BasicSR's default), and both are read in the same run,
page cache warm, through srkit's backends: bytes only, then bytes + decode to an RGB array.

    python benchmarks/bench_data.py --source ../shared/data/BSD200/HR --count 200 --repeats 3
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from srkit.data.file_backends import DiskBackend, FileBackend, LmdbBackend, load_image
from srkit.data.image_io import read_image, write_image

REPO = Path(__file__).resolve().parents[1]


def make_tiles(source: Path, folder: Path, count: int) -> None:
    """``count`` 480x480 PNG tiles, each two 480x240 crops of consecutive photos of ``source``."""
    photos = [p for p in sorted(source.iterdir()) if p.suffix.lower() in ('.png', '.jpg', '.bmp')]
    if len(photos) < 2:
        raise SystemExit(f'{source}: needs at least two images')

    def half(path: Path, lower: bool) -> np.ndarray:
        img = read_image(path)
        img = img if img.shape[1] >= img.shape[0] else img.transpose(1, 0, 2)
        if img.shape[0] < 240 or img.shape[1] < 480:
            raise SystemExit(f'{path}: {img.shape[0]}x{img.shape[1]} is too small for a 480x240 crop')
        return img[-240:, :480] if lower else img[:240, :480]

    for i in range(count):
        a, b = photos[i % len(photos)], photos[(i + 1) % len(photos)]
        tile = np.concatenate([half(a, (i // len(photos)) % 2 == 1), half(b, True)], axis=0)
        write_image(folder / f'tile{i:04d}.png', tile)


def throughput(backend: FileBackend, decode: bool, repeats: int) -> float:
    """Median images per second over ``repeats`` passes of every key."""
    keys = backend.keys()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for key in keys:
            load_image(backend, key) if decode else backend.get(key)
        rates.append(len(keys) / (time.perf_counter() - start))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--source', type=Path, default=REPO.parent / 'shared' / 'data' / 'BSD200' / 'HR',
                        help='folder of photos at least 480x240 (default ../shared/data/BSD200/HR)')
    parser.add_argument('--count', type=int, default=200, help='number of 480x480 tiles (default 200)')
    parser.add_argument('--repeats', type=int, default=3, help='passes over the tiles per figure (default 3)')
    parser.add_argument('--workdir', type=Path, default=None, help='where to build them (default: a temp dir)')
    args = parser.parse_args(argv)
    spec = importlib.util.spec_from_file_location('create_lmdb', REPO / 'scripts' / 'data' / 'create_lmdb.py')
    create_lmdb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(create_lmdb)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder, db = Path(tmp) / 'tiles', Path(tmp) / 'tiles.lmdb'
        make_tiles(args.source, folder, args.count)
        create_lmdb.create_lmdb(folder, db)
        png_mb = sum(p.stat().st_size for p in folder.iterdir()) / 2 ** 20
        print(f'{args.count} tiles of 480x480: PNG folder {png_mb:.1f} MiB, '
              f'LMDB {(db / "data.mdb").stat().st_size / 2 ** 20:.1f} MiB')
        disk, lmdb_backend = DiskBackend(folder), LmdbBackend(db)
        for decode, what in ((False, 'bytes only'), (True, 'bytes + PNG decode')):
            png = throughput(disk, decode, args.repeats)
            lmdb_rate = throughput(lmdb_backend, decode, args.repeats)
            print(f'{what:>20}: PNG folder {png:8.1f} img/s | LMDB {lmdb_rate:8.1f} img/s | '
                  f'LMDB/PNG {lmdb_rate / png:.2f}x')


if __name__ == '__main__':
    main()
