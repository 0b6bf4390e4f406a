"""ONNX export: onnxruntime matches PyTorch within 1e-4, at any input size when exported dynamic."""
import sys
from pathlib import Path

import pytest
import torch
from script_helpers import load_script, user_error
from torch import nn

from srkit.archs.etds_arch import ETDS, ETDSForInference
from srkit.core.errors import SrkitError
from srkit.tools.onnx_export import export_onnx, verify_onnx

pytest.importorskip('onnx', reason='ONNX export tests need the onnx package')
pytest.importorskip('onnxruntime', reason='ONNX export tests need onnxruntime')


def _plain_etds(scale: int) -> ETDSForInference:
    torch.manual_seed(scale)
    net = ETDSForInference(upscale=scale, num_block=2, num_feat=16)
    with torch.no_grad():
        net.conv_last.bias.add_(0.5)  # some outputs clamp at 0 or 1, some do not
    return net.eval()


@pytest.mark.parametrize('scale', [3, 4])
def test_plain_etds_matches_at_several_sizes(tmp_path: Path, scale):
    net = _plain_etds(scale)
    path = export_onnx(net, tmp_path / 'etds.onnx', (1, 3, 16, 16))
    sizes = [torch.rand(1, 3, 16, 16), torch.rand(1, 3, 23, 9), torch.rand(1, 3, 40, 33)]
    assert verify_onnx(net, path, sizes, atol=1e-4) <= 1e-4


def _input_dims(path: Path) -> list:
    import onnx
    return [d.dim_value or d.dim_param for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim]


def test_conv_only_net_static_and_dynamic_axes(tmp_path: Path):
    import onnx
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1)).eval()
    static = export_onnx(net, tmp_path / 'static.onnx', (1, 3, 12, 20), dynamic_hw=False)
    dynamic = export_onnx(net, tmp_path / 'dynamic.onnx', (1, 3, 12, 20), opset=13)
    assert _input_dims(static) == [1, 3, 12, 20]
    assert _input_dims(dynamic)[:2] == [1, 3] and all(isinstance(d, str) for d in _input_dims(dynamic)[2:])
    assert onnx.load(dynamic).opset_import[0].version == 13
    assert verify_onnx(net, static, torch.rand(1, 3, 12, 20)) <= 1e-4
    with pytest.raises(SrkitError, match=r'does not accept an input of shape \(1, 3, 7, 31\)'):
        verify_onnx(net, static, torch.rand(1, 3, 7, 31))
    assert verify_onnx(net, dynamic, [torch.rand(1, 3, 7, 31)]) <= 1e-4


def test_verify_fails_when_the_file_is_not_the_network(tmp_path: Path):
    net = _plain_etds(4)
    path = export_onnx(net, tmp_path / 'etds.onnx', (1, 3, 8, 8))
    with torch.no_grad():
        net.conv_first.bias.add_(0.3)
    with pytest.raises(SrkitError, match='differs from PyTorch'):
        verify_onnx(net, path, torch.rand(1, 3, 8, 8))


def test_tuple_output_is_refused_and_nothing_is_written(tmp_path: Path):
    with pytest.raises(SrkitError, match='convert_etds'):
        export_onnx(ETDS(upscale=2, num_block=1, num_feat=8), tmp_path / 'train.onnx', (1, 3, 8, 8))
    assert list(tmp_path.iterdir()) == []


def test_missing_package_is_named(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # makes `import onnxruntime` fail
    with pytest.raises(SrkitError, match='"onnxruntime"'):
        verify_onnx(nn.Identity(), tmp_path / 'x.onnx', torch.rand(1, 3, 4, 4))


def _cli():
    return load_script('export_onnx.py')


def test_cli_loads_wrapped_weights_exports_and_keeps_existing_files(tmp_path: Path, capsys):
    net = ETDSForInference(upscale=2, num_block=5, num_feat=16)
    weights, output = tmp_path / 'w.pth', tmp_path / 'etds.onnx'
    torch.save({'params_ema': net.state_dict(), 'params': {}}, weights)
    args = ['--arch', 'ETDSForInference_M5C16', '--scale', '2', '--weights', str(weights), '--output', str(output),
            '--height', '12', '--width', '10']
    cli = _cli()
    cli.main(args)
    assert verify_onnx(net.eval(), output, torch.rand(1, 3, 5, 17)) <= 1e-4
    written = output.read_bytes()
    assert 'exists' in user_error(cli.main, args, capsys)
    assert output.read_bytes() == written
    assert 'does not fit' in user_error(cli.main, args[:3] + ['3'] + args[4:] + ['--force'], capsys)  # x2 weights, x3
    assert output.read_bytes() == written and sorted(p.name for p in tmp_path.iterdir()) == ['etds.onnx', 'w.pth']


def test_imdn_rtc_official_weights_export_and_match(tmp_path: Path):
    """IMDN_RTC (the real-time IMDN) with its official weights, as a mobile deployment would ship it."""
    from conftest import SHARED

    from srkit.archs.weights import load_pretrained
    from srkit.core.registry import ARCH_REGISTRY
    net = ARCH_REGISTRY.get('IMDN_RTC')(upscale=2)
    weights = SHARED / 'weights' / 'IMDN' / 'model_RTC.pth'
    if weights.exists():  # the official checkpoint; random weights otherwise (the export path is the same)
        load_pretrained(net, weights, strict=True, arch_type='IMDN_RTC')
    net.eval()
    path = export_onnx(net, tmp_path / 'rtc.onnx', (1, 3, 32, 32))
    assert verify_onnx(net, path, [torch.rand(1, 3, 32, 32), torch.rand(1, 3, 45, 61)], atol=1e-4) <= 1e-4
