"""The 12 official ETDS checkpoints through test.py's code path reproduce REFERENCE.md; the training form
evaluated through ETDSModel gives what its converted plain form gives."""
from pathlib import Path

import pytest
import torch
from conftest import shared_path
from reference import etds_published, measured, plain_baseline_set5
from reproduction import evaluate_with_test_py

from srkit.archs.etds_arch import ETDS_M6C32
from srkit.archs.etds_convert import convert_etds, save_params
from srkit.core.checkpoint import load_checkpoint_file

CHECKPOINTS = [f'ETDS_{v}_x{s}' for v in ('M4C32', 'M5C16', 'M6C32', 'M7C48') for s in (2, 3, 4)]
MEASURED_TOLERANCE_DB = 0.002   # same network, same protocol: float noise only
PUBLISHED_TOLERANCE_DB = 0.02   # REFERENCE.md's bar for the published two-decimal figures
NORMAL_LOSS = 'weights/ETDS/ETDS_M6C32_x4_normal_loss.pth'




@pytest.mark.slow
@pytest.mark.parametrize('name', CHECKPOINTS)
def test_official_checkpoint_reproduces_reference(name: str, tmp_path: Path):
    scale = int(name[-1])
    expected, published = measured()[name], etds_published()[name]
    for set_name in ('Set5', 'Set14'):
        psnr, ssim = evaluate_with_test_py(f'options/test/ETDS/test_{name}.yml', f'weights/ETDS/{name}.pth',
                                           set_name, scale, tmp_path / set_name)
        assert psnr == pytest.approx(expected[set_name][0], abs=MEASURED_TOLERANCE_DB), (name, set_name)
        assert ssim == pytest.approx(expected[set_name][1], abs=1e-4), (name, set_name)  # table has 4 decimals
        assert psnr == pytest.approx(published[set_name], abs=PUBLISHED_TOLERANCE_DB), (name, set_name)


def test_plain_baseline_reproduces_its_log(tmp_path: Path):
    published = plain_baseline_set5()['Plain_M6C32_x4']
    psnr, _ = evaluate_with_test_py('options/test/ETDS/test_Plain_M6C32_x4.yml', 'weights/ETDS/Plain_M6C32_x4.pth',
                                    'Set5', 4, tmp_path)
    assert psnr == pytest.approx(published, abs=PUBLISHED_TOLERANCE_DB)


# The authors' own test logs of the two released non-ETDS-recipe checkpoints (ECNUSR/ETDS at 64ad1b8,
# results/Plain_M6C32_x4/test_Plain_M6C32_x4_20221011_144715.log and
# results/ETDS_M6C32_x4_normal_loss/test_ETDS_M6C32_x4_normal_loss_20221010_095921.log): PSNR/SSIM, Y, crop 4,
# on LR made as REFERENCE.md's protocol makes it. The same network under the same protocol: float noise only.
OFFICIAL_TEST_LOGS = {
    ('options/test/ETDS/test_Plain_M6C32_x4.yml', 'weights/ETDS/Plain_M6C32_x4.pth'):
        {'Set5': (31.3246, 0.8830), 'Set14': (28.0912, 0.7695)},
    ('options/test/ETDS/test_ETDS_M6C32_x4_normal_loss.yml', NORMAL_LOSS):
        {'Set5': (31.3525, 0.8837), 'Set14': (28.1063, 0.7698)},
}
LOGGED = [(files, set_name) for files, sets in OFFICIAL_TEST_LOGS.items() for set_name in sets]


@pytest.mark.slow
@pytest.mark.parametrize('files,set_name', LOGGED, ids=[f'{Path(f[1]).stem}-{s}' for f, s in LOGGED])
def test_plain_baseline_and_ablation_reproduce_the_official_test_logs(files: tuple[str, str], set_name: str,
                                                                      tmp_path: Path):
    psnr, ssim = evaluate_with_test_py(*files, set_name, 4, tmp_path)
    expected_psnr, expected_ssim = OFFICIAL_TEST_LOGS[files][set_name]
    assert psnr == pytest.approx(expected_psnr, abs=MEASURED_TOLERANCE_DB)
    assert ssim == pytest.approx(expected_ssim, abs=1e-4)  # the logs have four decimals


def test_training_form_through_etds_model_equals_its_conversion(tmp_path: Path):
    state = load_checkpoint_file(shared_path(NORMAL_LOSS))
    converted = save_params(convert_etds(state), tmp_path / 'plain.pth')
    # the plain option file's own weights argument is replaced by the converted file through ``extra``
    dual_psnr, dual_ssim = evaluate_with_test_py('options/test/ETDS/test_ETDS_M6C32_x4_normal_loss.yml', NORMAL_LOSS,
                                                 'Set5', 4, tmp_path / 'dual')
    plain_psnr, plain_ssim = evaluate_with_test_py('options/test/ETDS/test_ETDS_M6C32_x4.yml', NORMAL_LOSS, 'Set5', 4,
                                                   tmp_path / 'plain', extra=[f'path.pretrain_network_g={converted}'])
    assert dual_psnr == pytest.approx(plain_psnr, abs=1e-3)
    assert dual_ssim == pytest.approx(plain_ssim, abs=1e-5)
    assert 30.0 < dual_psnr < measured()['ETDS_M6C32_x4']['Set5'][0]  # a trained x4 net, below the full recipe


def test_normal_loss_ablation_never_trained_its_residual_stream():
    """The official unfreeze bug, seen in a released file: with fixed_residual_model_iters 0 the residual
    stream (and residual-to-backbone convs) ends exactly at srkit's initialisation."""
    state = load_checkpoint_file(shared_path(NORMAL_LOSS))
    init = ETDS_M6C32(upscale=4).state_dict()
    residual = [k for k in init if 'residual' in k]
    assert residual and all(torch.equal(state[k], init[k]) for k in residual)
    assert not torch.equal(state['conv_first.weight'], init['conv_first.weight'])
