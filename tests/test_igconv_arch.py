"""IGConv / IGConv+: generated kernels, instantiation, the geometric ensemble, IGSample, composition."""

import pytest
import torch
import torch.nn.functional as F

from srkit.archs import arch_spec, create
from srkit.archs.igconv_arch import (
    IGConv,
    IGConvSR,
    IGSample,
    SubPixelConv,
    geometric_ensemble,
    implicit_grid_sample,
)
from srkit.config.options import parse_options
from srkit.core.errors import OptionError

SMALL = {'implicit_dim': 16, 'latent_layers': 2}
HOSTS = [
    {'type': 'EDSR_tiny'},
    {'type': 'EIMN', 'embed_dims': 16, 'num_stages': 2},
    {'type': 'IMDN', 'nf': 16, 'num_modules': 2},
]
D4 = [
    lambda k: k,
    lambda k: k.flip(-1),
    lambda k: k.flip(-2),
    lambda k: k.flip(-2, -1),
    lambda k: torch.rot90(k, 1, (-2, -1)),
    lambda k: torch.rot90(k, -1, (-2, -1)),
    lambda k: k.transpose(-2, -1),
    lambda k: torch.rot90(k, 1, (-2, -1)).flip(-1),
]


def _perturbed(module, seed=0):
    """Non-trivial weights everywhere (IGSample starts near zero, which would hide layout errors)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return module


def test_generated_kernel_shape_and_scale_dependence():
    gen = IGConv(5, 3, implicit_dim=16, latent_layers=2, geo_ensemble=False)
    kernels = {s: gen.kernel(s) for s in (1, 2, 3, 4)}
    for s, k in kernels.items():
        assert k.shape == (3 * s * s, 5, 3, 3)
    # x2's four sub-pixel kernels differ from one another (they sit at different grid points)
    k2 = kernels[2].view(3, 4, 5, 3, 3)
    assert not torch.allclose(k2[:, 0], k2[:, 3])


def test_phase_saturates_beyond_max_s():
    """The phase sees 2 / min(s, max_s): with max_s = 2, x3 and x4 share it, so both kernels follow one rule."""
    gen = IGConv(2, 3, implicit_dim=8, latent_layers=1, geo_ensemble=False, max_s=2)
    with torch.no_grad():
        gen.freq.zero_()  # then every kernel entry depends on the phase only
    k3, k4 = gen.kernel(3).view(3, 9, 2, 3, 3), gen.kernel(4).view(3, 16, 2, 3, 3)
    assert torch.allclose(k3[:, 0], k4[:, 0], atol=1e-6)
    assert not torch.allclose(gen.kernel(1).view(3, 2, 3, 3), k3[:, 0], atol=1e-4)


@pytest.mark.parametrize('geo', [False, True])
def test_instantiated_igconv_equals_dynamic(geo):
    torch.manual_seed(0)
    ig = _perturbed(IGConv(8, 3, geo_ensemble=geo, **SMALL))
    x = torch.randn(2, 8, 9, 11)
    for s in (1, 2, 3, 4):
        baked = ig.instantiate(s)
        assert isinstance(baked, SubPixelConv) and baked[0].bias is None
        assert sum(p.numel() for p in baked.parameters()) == 3 * s * s * 8 * 9
        assert (baked(x) - ig(x, s)).abs().max() <= 1e-5
        with pytest.raises(ValueError):
            baked(x, s + 1)


def test_geometric_ensemble_is_invariant_to_flips_and_rotations():
    k = torch.randn(6, 4, 3, 3)
    ens = geometric_ensemble(k)
    assert not torch.allclose(ens, k)
    for transform in D4:
        assert torch.allclose(transform(ens), ens, atol=1e-6)  # the averaged kernel is D4-symmetric
        assert torch.allclose(geometric_ensemble(transform(k)), ens, atol=1e-6)  # and forgets the orientation


def test_ensembled_kernel_equals_averaging_the_eight_transformed_convolutions():
    """The paper's definition (its check_geo_rep.py): mean of conv(T(x))^-1 over the 8 transforms T."""
    k, x = torch.randn(5, 4, 3, 3), torch.randn(1, 4, 10, 10)
    transforms = [  # (forward on images, inverse on outputs)
        (lambda t: t, lambda t: t),
        (lambda t: t.flip(-1), lambda t: t.flip(-1)),
        (lambda t: t.flip(-2), lambda t: t.flip(-2)),
        (lambda t: t.flip(-2, -1), lambda t: t.flip(-2, -1)),
        (lambda t: torch.rot90(t, -1, (-2, -1)), lambda t: torch.rot90(t, 1, (-2, -1))),
        (lambda t: torch.rot90(t, 1, (-2, -1)), lambda t: torch.rot90(t, -1, (-2, -1))),
        (lambda t: t.transpose(-2, -1), lambda t: t.transpose(-2, -1)),
        (lambda t: torch.rot90(t, 1, (-2, -1)).flip(-1), lambda t: torch.rot90(t.flip(-1), -1, (-2, -1))),
    ]
    averaged = sum(inv(F.conv2d(fwd(x), k, padding=1)) for fwd, inv in transforms) / 8
    assert torch.allclose(F.conv2d(x, geometric_ensemble(k), padding=1), averaged, atol=1e-5)


def test_igsample_with_zero_offsets_is_bilinear_upsampling():
    lr = torch.rand(2, 3, 7, 9)
    for s in (2, 3, 4):
        raw = torch.zeros(2, 12 * s * s, 7, 9)
        expected = F.interpolate(lr, scale_factor=s, mode='bilinear', align_corners=False)
        assert torch.allclose(implicit_grid_sample(lr, raw, s), expected, atol=1e-5)


def test_igsample_offset_moves_the_sampling_point_in_lr_pixels():
    """An x offset of +1 LR pixel with an open scope (sigmoid -> 1): offset * 1 * 0.5 = half a pixel."""
    lr = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 3, 4, 8).contiguous()  # value = column index
    s = 2
    raw = torch.zeros(1, 12 * s * s, 4, 8)
    raw[:, :3 * s * s] = 1.0  # x offsets of R, G, B
    raw[:, 6 * s * s:] = 50.0  # scopes: sigmoid ~ 1
    moved = implicit_grid_sample(lr, raw, s)
    plain = implicit_grid_sample(lr, torch.zeros_like(raw), s)
    inner = (slice(None), slice(None), slice(None), slice(2, -3))  # away from the clamped borders
    assert torch.allclose(moved[inner] - plain[inner], torch.full_like(moved[inner], 0.5), atol=1e-4)


def test_fresh_igsample_starts_near_bilinear_with_the_official_offset_rows():
    """The official initialisation repeats one (x, y) row pair for R, G and B: rows x, y, x, y, x, y."""
    torch.manual_seed(0)
    sample = IGSample(8, implicit_dim=16, latent_layers=1)
    last = sample.convs.query_kernel[-1].weight
    assert torch.equal(last[0], last[2]) and torch.equal(last[1], last[5]) and not torch.equal(last[0], last[1])
    assert not last[6:].any()
    lr, feat = torch.rand(1, 3, 6, 6), torch.randn(1, 8, 6, 6)
    bilinear = F.interpolate(lr, scale_factor=2, mode='bilinear', align_corners=False)
    assert (sample(lr, feat, 2) - bilinear).abs().max() < 0.05


def test_instantiated_igsample_equals_dynamic():
    torch.manual_seed(1)
    sample = _perturbed(IGSample(8, implicit_dim=16, latent_layers=1))
    lr, feat = torch.rand(1, 3, 6, 7), torch.randn(1, 8, 6, 7)
    for s in (2, 3, 4):
        assert (sample.instantiate(s)(lr, feat) - sample(lr, feat, s)).abs().max() <= 1e-5


@pytest.mark.parametrize('host', HOSTS, ids=lambda h: h['type'])
@pytest.mark.parametrize('upsampler', ['igconv', 'igconv_plus'])
def test_composition_on_every_host_serves_every_scale(host, upsampler):
    torch.manual_seed(0)
    net = _perturbed(IGConvSR(host, upsampler, **SMALL)).eval()
    keys = list(net.state_dict())
    assert not any(k.startswith(('encoder.conv_last', 'encoder.upsampler.0', 'encoder.tail.0')) for k in keys)
    assert any('freq' in k for k in keys) and (any(k.startswith('skip.') for k in keys) == (upsampler != 'igconv'))
    x = torch.rand(1, 3, 8, 10)
    for s in (2, 3, 4):
        out = net(x, s)
        assert out.shape == (1, 3, 8 * s, 10 * s)
        baked = net.instantiate(s)
        assert (baked(x) - out).abs().max() <= 1e-5
        assert not any('freq' in k for k in baked.state_dict())


def test_edsr_mean_shift_and_img_range_stay_around_the_new_tail():
    torch.manual_seed(0)
    net = IGConvSR({'type': 'EDSR', 'num_feat': 8, 'num_block': 1, 'img_range': 255.0}, **SMALL).eval()
    enc, x = net.encoder, torch.rand(1, 3, 6, 6)
    feat = enc.conv_first((x - enc.mean) * 255.0)
    feat = enc.conv_after_body(enc.body(feat)) + feat
    igconv = enc.upsample.upsampler
    expected = igconv(feat, 3) / 255.0 + enc.mean
    assert torch.allclose(net(x, 3), expected, atol=1e-6)


def test_bad_encoders_are_refused_with_the_option_path():
    with pytest.raises(OptionError, match='encoder.upscale is not an option'):
        create('IGConvSR', encoder={'type': 'EDSR_tiny', 'upscale': 2})
    with pytest.raises(OptionError, match='network_g.encoder.num_feats') as caught:
        create('IGConvSR', encoder={'type': 'EDSR', 'num_feats': 8})
    assert caught.value.key == 'network_g.encoder.num_feats'
    with pytest.raises(OptionError, match='no sub-pixel tail'):
        create('IGConvSR', encoder={'type': 'IMDN_AS', 'nf': 16, 'num_modules': 1})
    with pytest.raises(ValueError, match='needs the scale'):
        IGConvSR({'type': 'EDSR_tiny'}, **SMALL)(torch.rand(1, 3, 4, 4))


def test_yaml_network_g_selects_host_and_upsampler():
    data = {'name': 'x', 'scale': 4, 'network_g': {'type': 'IGConvSR', 'upsampler': 'igconv_plus',
                                                   'encoder': {'type': 'EIMN_A', 'embed_dims': 16}},
            'datasets': {'test_1': {'name': 't', 'type': 'HRBicubicDataset', 'dataroot_gt': '.'}}}
    options = parse_options(data, is_train=False)
    assert options.network_g.args['upsampler'] == 'igconv_plus'
    assert arch_spec('IGConvSR').supports_scale(7)
    with pytest.raises(OptionError, match='upsampler'):
        parse_options({**data, 'network_g': {**data['network_g'], 'upsampler': 'igconvplus'}}, is_train=False)


@torch.no_grad()
def test_igconv_plus_adds_the_skip_to_the_hosts_finished_image():
    """As the official IGConv+ networks: host output (tail / img_range + mean) plus the IGSample skip."""
    torch.manual_seed(0)
    net = _perturbed(IGConvSR(encoder={'type': 'EDSR_tiny'}, upsampler='igconv_plus', **SMALL)).eval()
    x = torch.rand(1, 3, 6, 7)
    enc = net.encoder
    feat = enc.conv_first((x - enc.mean) * enc.img_range)
    feat = enc.conv_after_body(enc.body(feat)) + feat
    host = enc.upsample.upsampler(feat, 3) / enc.img_range + enc.mean
    assert torch.allclose(net(x, 3), host + net.skip(x, feat, 3), atol=1e-6)


@torch.no_grad()
def test_skip_replaces_mean_is_the_official_sum_less_the_hosts_mean():
    torch.manual_seed(0)
    official = _perturbed(IGConvSR(encoder={'type': 'EDSR_tiny'}, upsampler='igconv_plus', **SMALL)).eval()
    variant = IGConvSR(encoder={'type': 'EDSR_tiny'}, upsampler='igconv_plus', skip_replaces_mean=True, **SMALL).eval()
    variant.load_state_dict(official.state_dict())
    x = torch.rand(1, 3, 6, 7)
    assert torch.allclose(variant(x, 2), official(x, 2) - official.encoder.mean, atol=1e-6)
    with pytest.raises(OptionError, match='igconv_plus only'):
        create('IGConvSR', encoder={'type': 'EDSR_tiny'}, upsampler='igconv', skip_replaces_mean=True)


def test_a_kept_kernel_follows_every_change_of_the_weights():
    """Without gradients the generated kernel is kept per scale; any in-place change, a loaded state dict or
    another scale makes a new one, and with gradients it is always generated afresh (so it trains)."""
    torch.manual_seed(0)
    ig = _perturbed(IGConv(4, 3, geo_ensemble=True, **SMALL))
    x = torch.randn(1, 4, 5, 6)
    with torch.no_grad():
        first = ig(x, 2)
        assert torch.equal(ig(x, 2), first) and ig.kernel(2) is ig.kernel(2)
        assert ig(x, 3).shape == (1, 3, 15, 18)
        ig.freq.mul_(1.5)
        moved = ig(x, 2)
        assert not torch.allclose(moved, first)
        state = {k: v.clone() for k, v in ig.state_dict().items()}
        state['amplitude'] += 0.1
        ig.load_state_dict(state)
        assert not torch.allclose(ig(x, 2), moved)
    ig(x, 2).sum().backward()
    assert ig.freq.grad is not None and ig.freq.grad.abs().sum() > 0


def test_a_scale_above_max_s_is_extrapolated_with_one_warning(caplog):
    ig = IGConv(4, 3, max_s=4, **SMALL)
    x = torch.randn(1, 4, 3, 3)
    with caplog.at_level('WARNING', logger='srkit'):
        assert ig(x, 4).shape == (1, 3, 12, 12) and not caplog.records
        assert ig(x, 6).shape == (1, 3, 18, 18)
        ig(x, 6)
    assert len(caplog.records) == 1 and 'x6 is above max_s 4' in caplog.text and 'extrapolated' in caplog.text
