"""Qualitative figures: the same crop of HR, bicubic and each model's output side by side, PSNR under each.

A row per (image, box): the whole HR image with the box drawn in red, then the crops, each enlarged with
nearest-neighbour (so pixels stay visible, as SR papers show them) and captioned with its label and the
PSNR / SSIM of the WHOLE image (Y channel, crop border = scale: the numbers of the results tables).
Drawn with Pillow alone, so it needs no plotting package.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from srkit.core.errors import DataError, OptionError
from srkit.metrics.psnr_ssim import calculate_psnr, calculate_ssim
from srkit.ops.imresize import bicubic_degrade, imresize, modcrop
from srkit.tools.models import LoadedModel
from srkit.tools.upscale import super_resolve

__all__ = ['Box', 'Panel', 'prepare_pair', 'make_panels', 'compose_row', 'stack_rows']

BOX_COLOUR = (230, 25, 25)
CAPTION_H = 40
GAP = 6


@dataclass(frozen=True)
class Box:
    """A region in HR pixels: left, top, width, height."""

    x: int
    y: int
    w: int
    h: int

    def check(self, height: int, width: int, name: str) -> None:
        inside = 0 <= self.x and 0 <= self.y and self.x + self.w <= width and self.y + self.h <= height
        if self.w <= 0 or self.h <= 0 or not inside:
            raise OptionError(f'--box {self.x} {self.y} {self.w} {self.h} does not lie inside {name} '
                              f'({width}x{height} after cropping to the scale).')


@dataclass
class Panel:
    label: str
    image: np.ndarray          # HWC uint8, the HR size
    psnr: float | None = None  # None for the HR reference
    ssim: float | None = None


def prepare_pair(hr: np.ndarray, scale: int, lr: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(GT, LR): GT cropped to fit, LR given or made by the benchmark protocol (MATLAB bicubic, one rounding)."""
    if lr is None:
        gt = modcrop(hr, math.lcm(12, scale))
        return gt, bicubic_degrade(gt, scale)
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    if hr.shape[0] < h or hr.shape[1] < w:
        raise DataError(f'The LR image ({lr.shape[1]}x{lr.shape[0]}) times {scale} is larger than its HR image '
                        f'({hr.shape[1]}x{hr.shape[0]}): not a pair at this scale.')
    return hr[:h, :w], lr


def _scores(sr: np.ndarray, gt: np.ndarray, border: int) -> tuple[float, float]:
    a, b = (torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].double() for x in (sr, gt))
    return (float(calculate_psnr(a, b, border, test_y_channel=True)[0]),
            float(calculate_ssim(a, b, border, test_y_channel=True)[0]))


def make_panels(gt: np.ndarray, lr: np.ndarray, scale: int, models: list[tuple[str, LoadedModel]],
                tile: int = 0) -> list[Panel]:
    """HR, bicubic, then each model, all scored against ``gt``."""
    bicubic = np.clip(np.round(imresize(lr.astype(np.float64), scale)), 0, 255).astype(np.uint8)
    panels = [Panel('HR', gt), Panel('Bicubic', bicubic, *_scores(bicubic, gt, scale))]
    for label, model in models:
        if model.out_scale != scale:
            raise OptionError(f'Model "{label}" ({model.arch}) upscales x{model.out_scale}, not x{scale}.')
        sr = super_resolve(model, lr, tile=tile)
        panels.append(Panel(label, sr, *_scores(sr, gt, scale)))
    return panels


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _captioned(img: Image.Image, lines: list[str]) -> Image.Image:
    canvas = Image.new('RGB', (img.width, img.height + CAPTION_H), 'white')
    canvas.paste(img, (0, 0))
    draw, font = ImageDraw.Draw(canvas), _font(13)
    for i, text in enumerate(lines):
        width = draw.textlength(text, font=font)
        draw.text(((img.width - width) / 2, img.height + 3 + 17 * i), text, fill='black', font=font)
    return canvas


def compose_row(panels: list[Panel], box: Box, crop_width: int = 160) -> np.ndarray:
    """One figure row (HWC uint8): the HR image with the box, then every panel's crop with its caption."""
    hr_h, hr_w = panels[0].image.shape[:2]
    box.check(hr_h, hr_w, panels[0].label)
    crop_height = max(1, round(crop_width * box.h / box.w))
    tiles = []
    for panel in panels:
        crop = panel.image[box.y:box.y + box.h, box.x:box.x + box.w]
        crop_img = Image.fromarray(crop).resize((crop_width, crop_height), Image.Resampling.NEAREST)
        score = 'PSNR / SSIM' if panel.psnr is None else f'{panel.psnr:.2f} dB / {panel.ssim:.4f}'
        tiles.append(_captioned(crop_img, [panel.label, score]))
    full = Image.fromarray(panels[0].image)
    ImageDraw.Draw(full).rectangle((box.x, box.y, box.x + box.w - 1, box.y + box.h - 1), outline=BOX_COLOUR,
                                   width=max(2, full.width // 150))
    thumb_h = crop_height
    full = full.resize((max(1, round(full.width * thumb_h / full.height)), thumb_h), Image.Resampling.LANCZOS)
    tiles.insert(0, _captioned(full, ['whole image', f'box {box.x},{box.y} {box.w}x{box.h}']))
    width = sum(t.width for t in tiles) + GAP * (len(tiles) + 1)
    row = Image.new('RGB', (width, tiles[0].height + 2 * GAP), 'white')
    left = GAP
    for tile in tiles:
        row.paste(tile, (left, GAP))
        left += tile.width + GAP
    return np.asarray(row)


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of possibly different widths, left-aligned on white."""
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)
