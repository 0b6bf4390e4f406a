"""ETDS equivalent transformation: exact (within 1e-5) on random and official weights, refuses when not."""
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path
from PIL import Image
from script_helpers import load_script, user_error

from srkit.archs import etds_convert
from srkit.archs.etds_arch import ETDS, ETDSForInference
from srkit.archs.etds_convert import convert_etds, etds_hyperparams, verify_conversion
from srkit.core.errors import CheckpointError


def _random_training_model(scale: int, num_block: int, num_feat: int, seed: int) -> ETDS:
    """Every weight random, the residual stream included: the block structure must carry real values."""
    torch.manual_seed(seed)
    net = ETDS(upscale=scale, num_block=num_block, num_feat=num_feat)
    with torch.no_grad():
        for conv in net.modules():
            if isinstance(conv, torch.nn.Conv2d):
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn_like(conv.weight) * (2 / fan_in) ** 0.5)
                conv.bias.copy_(torch.randn_like(conv.bias) * 0.1)
        net.conv_last.bias.add_(0.5)
    return net.eval()


def _max_diff(training: ETDS, plain: ETDSForInference, image: torch.Tensor) -> float:
    with torch.no_grad():
        return (training(image)[0].clamp(0, 1) - plain(image)).abs().max().item()


@pytest.mark.parametrize('num_block,num_feat', [(4, 32), (5, 16)])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_random_training_models_convert_within_1e5(scale, num_block, num_feat):
    training = _random_training_model(scale, num_block, num_feat, seed=scale * 10 + num_block)
    plain = convert_etds(training)
    image = torch.rand(1, 3, 21, 19, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        raw = training(image)[0]
    assert raw.min() < 0 and raw.max() > 1  # the clamp is exercised, not only the convs
    assert _max_diff(training, plain, image) <= 1e-5
    assert isinstance(plain, ETDSForInference) and plain.conv_last.out_channels == (28 if scale == 3 else 3 * scale**2)


def test_state_dict_source_and_shape_inference():
    training = _random_training_model(3, 2, 12, seed=0)
    assert etds_hyperparams(training.state_dict()) == {'num_in_ch': 3, 'num_out_ch': 3, 'upscale': 3,
                                                       'num_block': 2, 'num_feat': 12, 'num_residual_feat': 3}
    plain = convert_etds(training.state_dict())
    assert _max_diff(training, plain, torch.rand(1, 3, 8, 8)) <= 1e-5


def test_converter_leaves_the_training_model_alone():
    training = _random_training_model(2, 2, 12, seed=1).train()
    before = {k: v.clone() for k, v in training.state_dict().items()}
    convert_etds(training)
    assert training.training
    assert all(torch.equal(before[k], v) for k, v in training.state_dict().items())


def _lr_image(name: str) -> torch.Tensor:
    array = np.asarray(Image.open(shared_path('data', 'Set5', 'LRbicx4', name)).convert('RGB'), dtype=np.float32)
    return torch.from_numpy(array / 255).permute(2, 0, 1)[None]


def test_official_dual_stream_checkpoint_converts_within_1e5():
    state = torch.load(shared_path('weights', 'ETDS', 'ETDS_M6C32_x4_normal_loss.pth'), weights_only=True)
    training = ETDS(upscale=4, num_block=6, num_feat=32)
    training.load_state_dict(state, strict=True)
    image = _lr_image('bird.png')
    plain = convert_etds(state, check_image=image)
    assert _max_diff(training.eval(), plain, image) <= 1e-5
    reloaded = ETDSForInference(upscale=4, num_block=6, num_feat=32)
    reloaded.load_state_dict(plain.state_dict(), strict=True)


def test_converter_refuses_a_sabotaged_conversion(monkeypatch):
    fold_last = etds_convert._fold_last

    def sabotaged(training, plain):
        fold_last(training, plain)
        plain.conv_last.bias[5] -= 1e-3  # one sub-pixel of one colour, slightly off

    monkeypatch.setattr(etds_convert, '_fold_last', sabotaged)
    with pytest.raises(CheckpointError, match='not equivalent'):
        convert_etds(_random_training_model(4, 2, 12, seed=2))


def test_verify_conversion_catches_a_wrong_dummy_channel_and_nan():
    training = _random_training_model(3, 2, 12, seed=3)
    plain = convert_etds(training)
    images = [torch.rand(1, 3, 8, 8)]
    with torch.no_grad():
        plain.conv_clip.weight[5, 27] = 1.0  # lets the dummy channel leak into a real one
    with pytest.raises(CheckpointError):
        verify_conversion(training, plain, images)
    with torch.no_grad():
        plain.conv_clip.weight[5, 27] = 0.0
        plain.conv_first.bias[0] = float('nan')
    with pytest.raises(CheckpointError):
        verify_conversion(training, plain, images)


def test_plain_form_input_is_refused():
    with pytest.raises(CheckpointError, match='already in the plain inference form'):
        convert_etds(ETDSForInference(upscale=2, num_block=1, num_feat=8).state_dict())


def _cli():
    return load_script('convert_etds.py')


def test_cli_writes_params_and_never_overwrites_unasked(tmp_path: Path, capsys):
    training = _random_training_model(2, 2, 12, seed=4)
    source, output = tmp_path / 'train.pth', tmp_path / 'out' / 'plain.pth'
    torch.save({'params': {f'module.{k}': v for k, v in training.state_dict().items()}}, source)
    cli = _cli()
    cli.main(['--input', str(source), '--output', str(output), '--num-block', '2', '--scale', '2'])
    plain = ETDSForInference(upscale=2, num_block=2, num_feat=12)
    plain.load_state_dict(torch.load(output, weights_only=True)['params'], strict=True)
    assert _max_diff(training, plain.eval(), torch.rand(1, 3, 9, 9)) <= 1e-5
    written = output.read_bytes()

    assert 'exists' in user_error(cli.main, ['--input', str(source), '--output', str(output)], capsys)
    assert output.read_bytes() == written
    cli.main(['--input', str(source), '--output', str(output), '--force'])
    assert sorted(p.name for p in output.parent.iterdir()) == ['plain.pth']  # no temporary files left


def test_cli_rejects_a_checkpoint_of_another_shape(tmp_path: Path, capsys):
    source, output = tmp_path / 'train.pth', tmp_path / 'plain.pth'
    torch.save(_random_training_model(2, 2, 12, seed=5).state_dict(), source)
    message = user_error(_cli().main, ['--input', str(source), '--output', str(output), '--arch', 'ETDS_M6C32'], capsys)
    assert 'num_block: expected 6, found 2' in message
    assert not output.exists()
