"""Visual comparison figures: LR pairing, scores under each crop, the box, and the PNG itself."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image

from srkit.archs import ARCH_REGISTRY
from srkit.core.errors import DataError, OptionError
from srkit.data.image_io import write_image
from srkit.tools.models import load_model
from srkit.tools.visual_compare import BOX_COLOUR, Box, compose_row, make_panels, prepare_pair


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / 'scripts' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (h // 8 + 2, w // 8 + 2, 3))
    img = np.kron(coarse, np.ones((8, 8, 1)))[:h, :w] + rng.normal(0, 4, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_pairs_and_scores():
    hr = photo(50, 70)
    gt, lr = prepare_pair(hr, 2)
    assert gt.shape == (48, 60, 3) and lr.shape == (24, 30, 3)  # GTmod12, as the benchmark LR
    gt2, _ = prepare_pair(hr, 2, lr=lr[:20])
    assert gt2.shape == (40, 60, 3)
    with pytest.raises(DataError, match='not a pair'):
        prepare_pair(hr[:30], 2, lr=lr)
    panels = make_panels(gt, lr, 2, [('bicubic net', load_model('Bicubic', scale=2))])
    assert [p.label for p in panels] == ['HR', 'Bicubic', 'bicubic net']
    assert panels[0].psnr is None and 15 < panels[1].psnr < 60
    assert panels[2].psnr == pytest.approx(panels[1].psnr, abs=0.01)  # the same MATLAB bicubic, two routes
    with pytest.raises(OptionError, match='upscales x3, not x2'):
        make_panels(gt, lr, 2, [('x3', load_model('Bicubic', scale=3))])


def test_row_shows_the_box_and_one_crop_per_panel():
    gt, lr = prepare_pair(photo(48, 48), 2)
    panels = make_panels(gt, lr, 2, [])
    row = compose_row(panels, Box(8, 8, 16, 8), crop_width=100)
    assert row.shape[0] == 50 + 40 + 12  # crop 100x50, caption, margins
    assert row.shape[1] == 50 + 2 * 100 + 4 * 6  # thumbnail (48x48 shown 50 high), HR and bicubic crops, gaps
    assert (np.abs(row.astype(int) - BOX_COLOUR).sum(axis=2) < 30).sum() > 20  # the red box on the thumbnail
    with pytest.raises(OptionError, match='does not lie inside'):
        compose_row(panels, Box(40, 40, 16, 16))


def test_script_writes_the_figure_and_keeps_an_existing_one(tmp_path):
    write_image(tmp_path / 'a.png', photo(60, 72, 1))
    write_image(tmp_path / 'b.png', photo(48, 48, 2))
    torch.manual_seed(0)
    ckpt = tmp_path / 'tiny.pth'
    torch.save({'params': ARCH_REGISTRY.get('EDSR_tiny')(upscale=2).state_dict()}, ckpt)
    out = tmp_path / 'fig.png'
    argv = ['--hr', str(tmp_path / 'a.png'), str(tmp_path / 'b.png'), '--scale', '2', '--box', '4', '4', '20', '20',
            '--model', 'tiny', 'EDSR_tiny', str(ckpt), '--model', 'bic', 'Bicubic', '--out', str(out),
            '--device', 'cpu']
    script = load_script('visual_compare')
    script.main(argv)
    img = np.asarray(Image.open(out))
    assert img.shape[0] > 2 * 160 and img.shape[1] > 5 * 160  # two rows; thumbnail + HR, bicubic, 2 models
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 100
    before = out.read_bytes()
    with pytest.raises(DataError, match='exists'):
        script.main(argv)
    assert out.read_bytes() == before
    with pytest.raises(OptionError, match='one per image'):
        script.main(argv[:5] + ['--box', '1', '1', '4', '4', '--box', '1', '1', '4', '4', '--box', '1', '1', '4', '4']
                    + argv[10:] + ['--force'])
