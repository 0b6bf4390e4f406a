"""The official EIMN and IMDN checkpoints, run through test.py's code path with the shipped option files,
reproduce REFERENCE.md: the measured table within float noise and the published table within its bar.

Cost (one thread, quiet machine): Set5 for all nine checkpoints, Set14 for IMDN x2/x3/x4 and EIMN_A_x4
(IMDN's three scales are the ones with a protocol question; EIMN_A_x4 is the cheapest EIMN), IMDN's Set5
again on EDSR-style LR. The other EIMN Set14 rows cost 10-25 s each and are left to test.py users.
"""
from pathlib import Path

import pytest
import torch
from conftest import shared_path
from reference import measured, published
from reproduction import evaluate_with_test_py

CHECKPOINTS = {  # name: (option file, weights under ../shared, scale)
    **{f'EIMN_{v}_x{s}': (f'options/test/EIMN/test_EIMN_{v}_x{s}.yml', f'weights/EIMN/EIMN_{v}_x{s}.pth', s)
       for v, scales in (('A', (2, 3, 4)), ('L', (2, 3))) for s in scales},
    **{f'IMDN_x{s}': (f'options/test/IMDN/test_IMDN_x{s}.yml', f'weights/IMDN/IMDN_x{s}.pth', s) for s in (2, 3, 4)},
}
RTC = ('options/test/IMDN/test_IMDN_RTC_x2.yml', 'weights/IMDN/model_RTC.pth', 2)
CASES = [(name, 'Set5') for name in CHECKPOINTS] + [(name, 'Set14') for name in
                                                      ('IMDN_x2', 'IMDN_x3', 'IMDN_x4', 'EIMN_A_x4')]
MEASURED_PSNR_DB = 0.002     # same network, same protocol: float noise only
MEASURED_SSIM = 1e-4         # the measured table has four decimals
PUBLISHED_PSNR_DB = 0.02     # REFERENCE.md's bar for the published two-decimal figures
PUBLISHED_SSIM = 0.0005
# IMDN's published Set5 x2/x4 figures (38.00, 32.21) were scored in MATLAB on EDSR-style LR. On the
# BasicSR-layout LR (GTmod12 + float bicubic, one rounding) the official code gives 37.9716 / 32.1802
# (REFERENCE.md, measured), and so does srkit: gaps of 0.028 and 0.030 dB to the published figures, a
# difference of LR files, not of the network. test_imdn_published_set5_on_edsr_style_lr shows srkit meets
# the published figures within the bar when fed the LR they were made with.
PROTOCOL_GAPS = {('IMDN_x2', 'Set5'), ('IMDN_x4', 'Set5')}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: two threads on the shared 2-core runners contend and slow SSIM down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.parametrize('name,set_name', CASES, ids=[f'{n}-{s}' for n, s in CASES])
def test_official_checkpoint_reproduces_reference(name: str, set_name: str, tmp_path: Path):
    option_file, weights, scale = CHECKPOINTS[name]
    psnr, ssim = evaluate_with_test_py(option_file, weights, set_name, scale, tmp_path)
    expected = measured()[name][set_name]
    assert psnr == pytest.approx(expected[0], abs=MEASURED_PSNR_DB)
    assert ssim == pytest.approx(expected[1], abs=MEASURED_SSIM)
    paper_psnr, paper_ssim = published()[name][set_name]
    assert ssim == pytest.approx(paper_ssim, abs=PUBLISHED_SSIM)
    if (name, set_name) in PROTOCOL_GAPS:
        assert paper_psnr - 0.04 < psnr < paper_psnr - PUBLISHED_PSNR_DB  # the documented gap, no larger
    else:
        assert psnr == pytest.approx(paper_psnr, abs=PUBLISHED_PSNR_DB)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['IMDN_x2', 'IMDN_x3', 'IMDN_x4'])
def test_imdn_published_set5_on_edsr_style_lr(name: str, tmp_path: Path):
    """IMDN's published protocol: HR cropped to a multiple of s, LR = MATLAB imresize of the uint8 image."""
    option_file, weights, scale = CHECKPOINTS[name]
    data = shared_path('data', 'Set5')
    edsr_layout = (f"datasets={{test_1: {{name: Set5, type: PairedImageDataset, dataroot_gt: {data}/HR, "
                   f"dataroot_lq: {data}/LR_bicubic/X{scale}, filename_tmpl: '{{}}x{scale}'}}}}")
    psnr, ssim = evaluate_with_test_py(option_file, weights, 'Set5', scale, tmp_path, extra=[edsr_layout])
    paper_psnr, paper_ssim = published()[name]['Set5']
    assert psnr == pytest.approx(paper_psnr, abs=PUBLISHED_PSNR_DB)
    assert ssim == pytest.approx(paper_ssim, abs=PUBLISHED_SSIM)


def test_imdn_rtc_beats_bicubic_by_more_than_2db(tmp_path: Path):
    psnr, _ = evaluate_with_test_py(*RTC[:2], 'Set5', RTC[2], tmp_path)
    assert psnr > measured()['bicubic x2']['Set5'][0] + 2.0
    assert psnr < measured()['IMDN_x2']['Set5'][0]  # 20K parameters: below the full IMDN


def test_every_published_eimn_and_imdn_checkpoint_is_covered():
    assert set(published()) == set(CHECKPOINTS)
    assert {n for n in measured() if n.startswith(('EIMN', 'IMDN'))} == set(CHECKPOINTS)
