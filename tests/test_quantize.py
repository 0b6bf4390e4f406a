"""INT8 quantization and FP16 export of a plain ETDS: files appear only verified, bad input gets one message."""
from pathlib import Path

import numpy as np
import pytest
import torch
from script_helpers import load_script, user_error

from srkit.archs.etds_arch import ETDS, ETDSForInference
from srkit.archs.etds_convert import convert_etds
from srkit.core.errors import DataError, SrkitError
from srkit.data.image_io import write_image
from srkit.tools.onnx_export import FP16_ATOL, export_onnx, verify_onnx
from srkit.tools.quantize import DEFAULT_MIN_PSNR, calibration_patches, model_scale, output_psnr, quantize_int8

pytest.importorskip('onnx', reason='quantization tests need the onnx package')
pytest.importorskip('onnxruntime', reason='quantization tests need onnxruntime')


def _plain_etds(tmp_path: Path, scale: int = 2) -> tuple[torch.nn.Module, Path]:
    """A tiny plain ETDS converted from a seeded training form (so it carries the image, as released ones do)."""
    torch.manual_seed(0)
    plain = convert_etds(ETDS(upscale=scale, num_block=2, num_feat=16)).eval()
    return plain, export_onnx(plain, tmp_path / 'fp32.onnx', (1, 3, 16, 16))


def _images(folder: Path, count: int = 3, size: int = 40) -> Path:
    """Smooth photographs-like images: gradients plus a little seeded noise."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, size)
    for index in range(count):
        img = ramp[:, None, None] * [1, 0.5, 0.2] + ramp[None, :, None] * [0, 0.3, 0.1]
        img = img + rng.normal(0, 8, (size, size, 3))
        write_image(folder / f'{index}.png', np.clip(img, 0, 255).astype(np.uint8))
    return folder


def test_int8_model_is_written_runs_and_is_close_to_fp32(tmp_path: Path):
    _, fp32 = _plain_etds(tmp_path)
    patches = calibration_patches(_images(tmp_path / 'train'), 2, size=(12, 12), count=6)
    psnr = quantize_int8(fp32, tmp_path / 'int8.onnx', patches)
    assert psnr >= DEFAULT_MIN_PSNR
    assert model_scale(tmp_path / 'int8.onnx') == (2, None)
    import onnx
    ops = {node.op_type for node in onnx.load(tmp_path / 'int8.onnx').graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    other = calibration_patches(tmp_path / 'train', 2, size=(10, 14), count=2, seed=9)  # other crops and size
    assert output_psnr(fp32, tmp_path / 'int8.onnx', other) >= DEFAULT_MIN_PSNR
    assert sorted(p.name for p in tmp_path.iterdir()) == ['fp32.onnx', 'int8.onnx', 'train']


def test_patches_are_seeded_lr_crops_of_large_enough_images(tmp_path: Path):
    folder = _images(tmp_path / 'train')
    write_image(folder / 'small.png', np.zeros((8, 8, 3), np.uint8))  # never drawn: smaller than 24x36
    first = calibration_patches(folder, 3, size=(8, 12), count=5, seed=4)
    assert [p.shape for p in first] == [(1, 3, 8, 12)] * 5 and all(p.dtype == np.float32 for p in first)
    again = calibration_patches(folder, 3, size=(8, 12), count=5, seed=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert all(0 <= p.min() and p.max() <= 1 and p.std() > 0 for p in first)
    with pytest.raises(DataError, match='no image is at least 360x360'):
        calibration_patches(folder, 3, size=(120, 120))


def test_a_file_that_is_not_an_image_is_named(tmp_path: Path):
    folder = _images(tmp_path / 'train')
    (folder / 'broken.png').write_text('not a png')
    with pytest.raises(DataError, match='broken.png: not a readable image'):
        calibration_patches(folder, 2)


@pytest.mark.parametrize('make', [lambda tmp: tmp / 'absent', lambda tmp: tmp / 'empty'])
def test_no_calibration_images_is_one_clear_error_and_no_file(tmp_path: Path, make):
    _, fp32 = _plain_etds(tmp_path)
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('not an image')
    with pytest.raises(DataError, match='calibration'):
        calibration_patches(make(tmp_path), 2)
    with pytest.raises(SrkitError, match='needs calibration images'):
        quantize_int8(fp32, tmp_path / 'int8.onnx', [])
    assert not (tmp_path / 'int8.onnx').exists()


def test_a_model_below_the_bound_is_not_written(tmp_path: Path):
    _, fp32 = _plain_etds(tmp_path)
    patches = calibration_patches(_images(tmp_path / 'train'), 2, size=(12, 12), count=2)
    with pytest.raises(SrkitError, match='below the 200 dB required; nothing was written'):
        quantize_int8(fp32, tmp_path / 'int8.onnx', patches, min_psnr=200)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['fp32.onnx', 'train']


def test_fp16_export_keeps_float32_io_and_matches_pytorch(tmp_path: Path):
    import onnx
    plain, _ = _plain_etds(tmp_path, scale=3)
    path = export_onnx(plain, tmp_path / 'fp16.onnx', (1, 3, 16, 16), fp16=True)
    model = onnx.load(path)
    assert {t.data_type for t in model.graph.initializer if t.dims} == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert verify_onnx(plain, path, [torch.rand(1, 3, 16, 16), torch.rand(1, 3, 21, 9)], atol=FP16_ATOL) > 0


def test_scripts_quantize_and_export_fp16(tmp_path: Path, capsys):
    _, fp32 = _plain_etds(tmp_path)
    train = _images(tmp_path / 'train')
    quantize = load_script('quantize_onnx.py')
    args = ['--model', str(fp32), '--calibration', str(train), '--output', str(tmp_path / 'int8.onnx'),
            '--patches', '4', '--patch-size', '12']
    quantize.main(args)
    assert 'wrote' in capsys.readouterr().out
    assert 'exists' in user_error(quantize.main, args, capsys)
    missing = ['--model', str(fp32), '--calibration', str(tmp_path / 'none'), '--output', str(tmp_path / 'b.onnx')]
    assert 'calibration folder not found' in user_error(quantize.main, missing, capsys)
    (tmp_path / 'bad.onnx').write_text('not a model')
    bad = ['--model', str(tmp_path / 'bad.onnx'), '--calibration', str(train), '--output', str(tmp_path / 'b.onnx')]
    assert 'onnxruntime cannot load' in user_error(quantize.main, bad, capsys)
    assert not (tmp_path / 'b.onnx').exists()

    weights = tmp_path / 'w.pth'
    torch.save({'params': ETDSForInference(upscale=2, num_block=5, num_feat=16).state_dict()}, weights)
    load_script('export_onnx.py').main(['--arch', 'ETDSForInference_M5C16', '--scale', '2', '--weights', str(weights),
                                        '--output', str(tmp_path / 'fp16.onnx'), '--fp16', '--height', '12',
                                        '--width', '12'])
    assert 'onnxruntime matches PyTorch' in capsys.readouterr().out


def test_a_model_that_does_not_upscale_is_refused(tmp_path: Path):
    down = export_onnx(torch.nn.Conv2d(3, 3, 3, stride=2, padding=1).eval(), tmp_path / 'down.onnx', (1, 3, 16, 16))
    with pytest.raises(SrkitError, match='is not an upscaled image'):
        model_scale(down)
