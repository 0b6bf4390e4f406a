"""IGConv as its authors released it: EDSRIG / EDSRIGPlus against the official code's outputs (a golden
fixture, tests/fixtures/igconv/README.md), the official parameter layout, and refusals of foreign checkpoints."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from srkit.archs import create
from srkit.archs.edsr_ig_arch import EDSRIG, EDSRIGPlus
from srkit.archs.igconv_arch import IGConv, IGSample, SubPixelConv, instantiate_upsamplers
from srkit.core.errors import OptionError

GOLDEN = Path(__file__).resolve().parent / 'fixtures' / 'igconv' / 'official_golden.pt'
TOLERANCE = 1e-5


@pytest.fixture(scope='module')
def golden() -> dict[str, Any]:
    return torch.load(GOLDEN, map_location='cpu', weights_only=True)


def _loaded(cls: type, golden: dict[str, Any], state: str, **kwargs: Any) -> torch.nn.Module:
    net = cls(**golden['args'], **kwargs).eval()
    net.load_state_dict(golden[state], strict=True)
    return net


def test_a_seed_draws_the_official_initial_weights(golden: dict[str, Any]) -> None:
    torch.manual_seed(0)
    state = EDSRIGPlus(**golden['args']).state_dict()
    assert list(state) == list(golden['init'])
    for key, value in state.items():
        assert torch.equal(value, golden['init'][key]), key


@torch.no_grad()
def test_edsrig_equals_the_official_network_at_every_scale(golden: dict[str, Any]) -> None:
    net = _loaded(EDSRIG, golden, 'ig_state', img_range=255.0, geo_ensemble=False)
    for scale, expected in golden['ig_out'].items():
        assert (net(golden['input'], scale) - expected).abs().max() <= TOLERANCE, scale


@torch.no_grad()
def test_edsrig_plus_equals_the_official_network_in_eval_and_training(golden: dict[str, Any]) -> None:
    net = _loaded(EDSRIGPlus, golden, 'plus_state', img_range=1.0, geo_ensemble=True)
    for scale, expected in golden['plus_out'].items():
        assert (net(golden['input'], scale) - expected).abs().max() <= TOLERANCE, scale
    net.train()
    image, skip = net(golden['input'], 3)
    assert (image - golden['plus_train'][0]).abs().max() <= TOLERANCE
    assert (skip - golden['plus_train'][1]).abs().max() <= TOLERANCE


@torch.no_grad()
def test_instantiated_network_equals_the_official_instantiated_igconv(golden: dict[str, Any]) -> None:
    net = _loaded(EDSRIG, golden, 'ig_state', img_range=255.0, geo_ensemble=False)
    baked = instantiate_upsamplers(net, 3)
    assert isinstance(baked.upsample, SubPixelConv) and isinstance(net.upsample, IGConv)
    assert (baked(golden['input'], 3) - golden['ig_instantiated']).abs().max() <= TOLERANCE
    with pytest.raises(ValueError, match='instantiated for x3'):
        baked(golden['input'], 2)


@torch.no_grad()
def test_igsample_frequency_order_is_the_official_one(golden: dict[str, Any]) -> None:
    """Group 0 reads the even frequencies and group 1 the odd ones (the official ``(g d) -> (d g)``): giving each
    group one block of frequencies instead generates other offset kernels from the same weights."""
    net = _loaded(EDSRIGPlus, golden, 'plus_state', img_range=1.0, geo_ensemble=True)
    skip = net.skip
    assert isinstance(skip, IGSample)
    official = skip.convs.kernel(2)
    half = skip.convs.freq.shape[1] // 2
    blocks = torch.cat([torch.arange(0, half, 2), torch.arange(1, half, 2)])
    skip.convs.freq[:, :half] = skip.convs.freq[:, :half][:, blocks].clone()
    skip.convs.freq[:, half:] = skip.convs.freq[:, half:][:, blocks].clone()
    skip.convs.phase.weight.copy_(skip.convs.phase.weight[blocks])
    skip.convs.phase.bias.copy_(skip.convs.phase.bias[blocks])
    regrouped = skip.convs.kernel(2)
    assert (regrouped - official).abs().max() > 0.1 * official.abs().max()


def test_the_official_option_files_network_sections_build() -> None:
    """The network_g of EDSRIG_DIV2K.yaml / EDSRIGPlus_DIV2K.yaml, as written (at a smaller width and depth)."""
    common = {'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 16, 'num_block': 2, 'upscale': 2, 'res_scale': 0.1,
              'img_range': 1.0, 'rgb_mean': [0.4488, 0.4371, 0.4040], 'implicit_dim': 256, 'latent_layers': 4}
    plain = create('EDSRIG', **common, geo_ensemble=False)
    plus = create('EDSRIGPlus', **common, geo_ensemble=True, return_skip=False)
    assert plain(torch.rand(1, 3, 5, 4), 3).shape == (1, 3, 15, 12)
    plus.train()
    assert plus(torch.rand(1, 3, 5, 4), 4).shape == (1, 3, 20, 16)  # return_skip false: the image only


def test_the_paper_size_has_the_official_layout() -> None:
    """EDSR-IGConv+ at the paper's size (256 features, 32 blocks): the official tensor shapes of the upsampler
    and the skip, and EDSR's encoder unchanged."""
    net = EDSRIGPlus(num_feat=256, num_block=32, res_scale=0.1, img_range=1.0)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes['upsample.freq'] == (256 * 9, 256, 1, 1) and shapes['upsample.phase.weight'] == (128, 1, 1, 1)
    assert shapes['skip.convs.freq'] == (256 * 9, 256, 1, 1)
    assert shapes['skip.convs.query_kernel.4.weight'] == (12, 128, 1, 1)
    encoder = sum(v.numel() for k, v in net.state_dict().items() if not k.startswith(('upsample.', 'skip.')))
    assert encoder == 256 * 3 * 9 + 256 + 32 * 2 * (256 * 256 * 9 + 256) + 256 * 256 * 9 + 256


def test_srmodel_refuses_a_network_that_takes_the_scale_per_call(tmp_path) -> None:
    from training_helpers import tiny_options

    from srkit.models.sr_model import SRModel

    options = tiny_options(tmp_path, ['network_g={type: EDSRIG, num_feat: 8, num_block: 1, implicit_dim: 16, '
                                      'latent_layers: 2}'])
    with pytest.raises(OptionError, match='use model_type MultiScaleModel'):
        SRModel(options, torch.device('cpu'))
