"""REFERENCE.md's tables, read from ../shared at test time (the numbers are never copied into tests)."""
from __future__ import annotations

import re
from pathlib import Path

from conftest import shared_path


def _rows(section_title: str) -> list[list[str]]:
    text = Path(shared_path('REFERENCE.md')).read_text(encoding='utf-8')
    start = text.index(section_title)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith('## '):
            break
        if line.startswith('|') and not set(line) <= set('|-: '):
            rows.append([cell.strip() for cell in line.strip('|').split('|')])
    return rows[1:]  # without the header


def measured() -> dict[str, dict[str, tuple[float, float]]]:
    """'Measured' table: checkpoint -> {'Set5': (psnr, ssim), 'Set14': (psnr, ssim)}."""
    table = {}
    for name, set5, set14 in _rows('## Measured'):
        table[name] = {'Set5': _pair(set5), 'Set14': _pair(set14)}
    return table


def published() -> dict[str, dict[str, tuple[float, float]]]:
    """EIMN/IMDN published table: checkpoint -> {set name: (psnr, ssim)}."""
    sets = ('Set5', 'Set14', 'BSD100', 'Urban100', 'Manga109')
    return {row[0]: dict(zip(sets, map(_pair, row[1:]))) for row in _rows('## Published numbers')
            if re.match(r'^(EIMN|IMDN)', row[0])}


def _pair(cell: str) -> tuple[float, float]:
    psnr, ssim = cell.split('/')
    return float(psnr), float(ssim)


def etds_published() -> dict[str, dict[str, float]]:
    """ETDS published PSNR table: 'ETDS_M4C32_x2' -> {'Set5': psnr, 'Set14': ..., 'DIV2K-val': ...}."""
    sets = ('Set5', 'Set14', 'BSD100', 'Urban100', 'DIV2K-val')
    table = {}
    for variant, *cells in _rows('## Published numbers'):
        if re.fullmatch(r'M\d+C\d+', variant):
            for scale, cell in zip((2, 3, 4), cells):
                table[f'ETDS_{variant}_x{scale}'] = dict(zip(sets, map(float, cell.split('/'))))
    return table


def plain_baseline_set5() -> dict[str, float]:
    """The ETDS section's Plain baseline line ('Plain_M6C32_x4: Set5 31.32'): checkpoint -> Set5 PSNR."""
    text = Path(shared_path('REFERENCE.md')).read_text(encoding='utf-8')
    return {name: float(psnr) for name, psnr in re.findall(r'(Plain_M\d+C\d+_x\d): Set5 (\d+\.\d+)', text)}
