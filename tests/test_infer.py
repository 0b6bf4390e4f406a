"""srkit/infer.py: sizes, grey and alpha policy, tiling, precision checks, and refusing to overwrite."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image

from srkit.archs import ARCH_REGISTRY
from srkit.core.errors import CheckpointError, DataError, OptionError
from srkit.data.image_io import img_to_tensor, tensor_to_img
from srkit.infer import main
from srkit.ops.imresize import imresize
from srkit.tools.models import load_model
from srkit.tools.upscale import amp_dtype


def smooth(h: int, w: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (h // 4 + 2, w // 4 + 2, channels))
    return np.kron(coarse, np.ones((4, 4, 1)))[:h, :w].astype(np.uint8)


@pytest.fixture
def ckpt(tmp_path):
    """A randomly initialised EDSR_tiny x2 in srkit's checkpoint layout."""
    torch.manual_seed(0)
    path = tmp_path / 'edsr_tiny_x2.pth'
    torch.save({'params': ARCH_REGISTRY.get('EDSR_tiny')(upscale=2).state_dict()}, path)
    return path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / 'in'
    folder.mkdir()
    Image.fromarray(smooth(23, 31, 3)).save(folder / 'rgb.png')
    Image.fromarray(smooth(17, 14, 1)[..., 0]).save(folder / 'grey.png')
    rgba = np.concatenate([smooth(15, 19, 3, 1), smooth(15, 19, 1, 2)], axis=2)  # real transparency
    Image.fromarray(rgba, 'RGBA').save(folder / 'rgba.png')
    return folder


def run(args: list, **kw) -> None:
    main([str(a) for a in args], **kw)


def network_output(ckpt, rgb: np.ndarray) -> np.ndarray:
    model = load_model('EDSR_tiny', weights=str(ckpt), scale=2, device='cpu')
    with torch.no_grad():
        return tensor_to_img(model.net(img_to_tensor(rgb).unsqueeze(0)))


def test_folder_of_rgb_grey_and_rgba(images, ckpt, tmp_path):
    out = tmp_path / 'out'
    run(['-i', images, '-o', out, '--model', 'EDSR_tiny', '--weights', ckpt, '--scale', 2, '--device', 'cpu'])
    assert sorted(p.name for p in out.iterdir()) == ['grey_x2.png', 'rgb_x2.png', 'rgba_x2.png']
    rgb = np.asarray(Image.open(out / 'rgb_x2.png'))
    assert rgb.shape == (46, 62, 3)
    np.testing.assert_array_equal(rgb, network_output(ckpt, np.asarray(Image.open(images / 'rgb.png'))))
    grey = Image.open(out / 'grey_x2.png')
    assert grey.mode == 'L' and grey.size == (28, 34)
    grey_in = np.repeat(np.asarray(Image.open(images / 'grey.png'))[..., None], 3, axis=2)
    expected = np.asarray(Image.fromarray(network_output(ckpt, grey_in)).convert('L'))
    np.testing.assert_array_equal(np.asarray(grey), expected)
    rgba = Image.open(out / 'rgba_x2.png')
    assert rgba.mode == 'RGBA' and rgba.size == (38, 30)
    alpha_in = np.asarray(Image.open(images / 'rgba.png'))[..., 3]
    expected_alpha = np.clip(np.round(imresize(alpha_in / 255.0, 2) * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(rgba)[..., 3], expected_alpha)


def test_existing_outputs_are_kept_unless_force(images, ckpt, tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'rgb_x2.png').write_bytes(b'mine')
    base = ['-i', images / 'rgb.png', '-o', out, '--model', 'EDSR_tiny', '--weights', ckpt, '--scale', 2]
    with pytest.raises(DataError, match='rgb_x2.png exists.*--force'):
        run(base)
    assert (out / 'rgb_x2.png').read_bytes() == b'mine'
    run(base + ['--skip-existing'])
    assert (out / 'rgb_x2.png').read_bytes() == b'mine'
    run(base + ['--force'])
    assert Image.open(out / 'rgb_x2.png').size == (62, 46)


def test_clashing_names_are_refused(images, ckpt, tmp_path):
    Image.fromarray(smooth(8, 8, 3)).save(images / 'rgb.jpg')
    with pytest.raises(DataError, match='would both be written'):
        run(['-i', images, '-o', tmp_path / 'o', '--model', 'EDSR_tiny', '--weights', ckpt, '--scale', 2])
    assert not (tmp_path / 'o').exists()


def test_tiles_and_padding(tmp_path, images):
    torch.manual_seed(1)
    path = tmp_path / 'imdn_as.pth'
    torch.save(ARCH_REGISTRY.get('IMDN_AS')(nf=16, num_modules=1).state_dict(), path)
    spec_yml = tmp_path / 'imdn_as.yml'
    spec_yml.write_text(f'name: as\nscale: 4\nnetwork_g: {{type: IMDN_AS, nf: 16, num_modules: 1}}\n'
                        f'path: {{pretrain_network_g: {path}}}\n')
    out = tmp_path / 'out'
    run(['-i', images / 'rgb.png', '-o', out, '--model', spec_yml])  # 23x31: not a multiple of 4, padded
    whole = np.asarray(Image.open(out / 'rgb_x4.png'))
    assert whole.shape == (23, 31, 3)  # same-size model
    run(['-i', images / 'rgb.png', '-o', out, '--model', spec_yml, '--tile', 12, '--tile-overlap', 12, '--force'])
    tiled = np.asarray(Image.open(out / 'rgb_x4.png')).astype(int)
    assert np.abs(tiled - whole).max() <= 1


def test_self_ensemble_and_bf16_run_on_cpu(images, ckpt, tmp_path):
    base = ['-i', images / 'rgb.png', '--model', 'EDSR_tiny', '--weights', ckpt, '--scale', 2, '--device', 'cpu']
    run(base + ['-o', tmp_path / 'e', '--self-ensemble'])
    run(base + ['-o', tmp_path / 'b', '--bf16'])
    plain = network_output(ckpt, np.asarray(Image.open(images / 'rgb.png'))).astype(int)
    ensemble, bf16 = (np.asarray(Image.open(tmp_path / f / 'rgb_x2.png')).astype(int) for f in ('e', 'b'))
    assert ensemble.shape == bf16.shape == plain.shape
    assert np.abs(ensemble - plain).mean() > 1  # an untrained net is not flip-equivariant: the flag took effect
    assert 0 < np.abs(bf16 - plain).mean() < 3  # bf16 rounding, not a different network


def test_precision_refusals(ckpt):
    model = load_model('EDSR_tiny', weights=str(ckpt), scale=2, device='cpu')
    with pytest.raises(OptionError, match='CUDA'):
        amp_dtype('fp16', model)
    unsafe = dataclasses.replace(model, spec=dataclasses.replace(model.spec, fp16_safe=False))
    with pytest.raises(OptionError, match='not fp16-safe'):
        amp_dtype('fp16', unsafe)
    assert amp_dtype('bf16', model) is torch.bfloat16 and amp_dtype('fp32', model) is None


def test_model_argument_errors(ckpt, tmp_path):
    with pytest.raises(OptionError, match='--scale'):
        load_model('EDSR_tiny', weights=str(ckpt))
    with pytest.raises(OptionError, match='--weights'):
        load_model('EDSR_tiny', scale=2)
    with pytest.raises(CheckpointError, match='does not fit') as caught:
        load_model('EDSR_tiny', weights=str(ckpt), scale=3)
    assert '--scale match the checkpoint' in str(caught.value) and 'strict_load_g' not in str(caught.value)
    yml = tmp_path / 'm.yml'
    yml.write_text(f'name: m\nscale: 2\nnetwork_g: {{type: EDSR_tiny}}\npath: {{pretrain_network_g: {ckpt}}}\n')
    with pytest.raises(OptionError, match='disagrees'):
        load_model(str(yml), scale=4)
    assert load_model('Bicubic', scale=3).out_scale == 3  # nothing to load


def test_cli_refuses_a_wrong_checkpoint_cleanly(images, ckpt, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / 'srkit' / 'infer.py'), '-i', str(images), '-o',
                             str(tmp_path / 'o'), '--model', 'EDSR_tiny', '--weights', str(ckpt), '--scale', '4'],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith('srkit: error: Checkpoint') and 'does not fit EDSR_tiny' in result.stderr
    assert 'Traceback' not in result.stderr and not (tmp_path / 'o').exists()
