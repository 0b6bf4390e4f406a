"""test.py end to end on real benchmark images in the three layouts, with the parameter-free Bicubic network.

Bicubic upscaling of BasicSR-layout LR must reproduce REFERENCE.md's measured bicubic rows: a check of
data loading, inference, quantisation, Y conversion, cropping, SSIM and averaging all at once.
"""
import pytest
from conftest import shared_path
from reference import measured

from srkit.config.options import parse_options
from srkit.engine.tester import run_test

METRICS = {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': True},
           'ssim': {'type': 'calculate_ssim', 'crop_border': 0, 'test_y_channel': True}}


def bicubic_test(tmp_path, scale: int, dataset: dict) -> tuple[float, float]:
    metrics = {k: dict(v, crop_border=scale) for k, v in METRICS.items()}
    options = parse_options({'name': 'bicubic', 'scale': scale, 'network_g': {'type': 'Bicubic', 'upscale': scale},
                             'datasets': {'test_1': {'name': 'set', **dataset}},
                             'path': {'results_root': str(tmp_path / f'r{scale}')},
                             'val': {'metrics': metrics, 'pbar': False}}, is_train=False)
    result = run_test(options)[0]
    return result.mean['psnr'], result.mean['ssim']


@pytest.mark.parametrize('set_name, scale', [('Set5', 2), ('Set5', 3), ('Set5', 4), ('Set14', 2)])
def test_basicsr_layout_reproduces_measured_bicubic(tmp_path, set_name, scale):
    data = shared_path('data', set_name)
    psnr, ssim = bicubic_test(tmp_path, scale, {'type': 'PairedImageDataset', 'dataroot_gt': str(data / 'GTmod12'),
                                                'dataroot_lq': str(data / f'LRbicx{scale}')})
    ref_psnr, ref_ssim = measured()[f'bicubic x{scale}'][set_name]
    assert psnr == pytest.approx(ref_psnr, abs=0.002)
    assert ssim == pytest.approx(ref_ssim, abs=0.0005)


def test_hr_only_layout_makes_the_same_lr(tmp_path):
    data = shared_path('data', 'Set5')
    psnr, _ = bicubic_test(tmp_path, 4, {'type': 'HRBicubicDataset', 'dataroot_gt': str(data / 'HR')})
    assert psnr == pytest.approx(measured()['bicubic x4']['Set5'][0], abs=0.002)


def test_edsr_layout(tmp_path):
    data = shared_path('data', 'Set5')
    psnr, _ = bicubic_test(tmp_path, 2, {'type': 'PairedImageDataset', 'dataroot_gt': str(data / 'HR'),
                                         'dataroot_lq': str(data / 'LR_bicubic' / 'X2'), 'filename_tmpl': '{}x2'})
    # EDSR-style LR comes from the HR cropped to a multiple of 2 (not 12), rounded between passes:
    # a slightly different image set than GTmod12, so close to but not equal to the BasicSR-layout figure.
    assert psnr == pytest.approx(measured()['bicubic x2']['Set5'][0], abs=0.1)
