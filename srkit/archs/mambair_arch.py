"""MambaIR (Guo et al., ECCV 2024, arXiv 2402.15648): SwinIR's layout with the attention replaced by a
2D selective scan (SS2D) and a channel-attention conv block.

Every residual state-space block scans the whole feature map in four orders (rows, columns, and both
reversed) with Mamba's selective scan, sums the four results and gates them with a SiLU branch; a CAB
(convs + RCAN channel attention) follows. The scan runs through ``srkit.ops.selective_scan`` (mamba_ssm's
CUDA kernel when it imports, srkit's PyTorch scan otherwise), so no CUDA build is needed.

Constructor, parameter names and forward are the authors' (csguoh/MambaIR basicsr/archs/mambair_arch.py),
so the released MambaIR_SR2/3/4 and MambaIR_light2/3/4 checkpoints load strictly. Also accepted, as in the
IGConv authors' copy (dslisleedh/IGConv igconv/archs/mambair_ig_arch.py): ``upsampler: igconv`` (IGConv
tail) and ``igconv+igsample`` (IGConv+: IGConv tail plus an IGSample skip), with their arguments; the
network is then called ``net(x, scale)``.

Defaults differ from the authors' class in three places, so that ``MambaIR`` alone is the published
classic-SR model: embed_dim 180 (96), six groups (four), upsampler ``pixelshuffle`` ('', denoising).
The authors' option files set all three.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from srkit.archs.edsr_arch import DIV2K_RGB_MEAN, Upsample
from srkit.archs.eimn_arch import DropPath
from srkit.archs.igconv_arch import IGConv, IGSample
from srkit.archs.mma_arch import CAB, ChannelAttention
from srkit.archs.spec import ArchSpec, require_positive
from srkit.archs.window_ops import IG_UPSAMPLERS, add_skip, resi_conv
from srkit.core.registry import ARCH_REGISTRY
from srkit.ops.selective_scan import selective_scan

__all__ = ['LightCAB', 'SS2D', 'VSSBlock', 'ResidualGroup', 'MambaIR', 'MambaIR_light', 'MambaIR_IGConv',
           'MambaIR_IGConvPlus', 'MambaIR_light_IGConv', 'MambaIR_light_IGConvPlus']

Upsampler = Literal['pixelshuffle', 'pixelshuffledirect', 'igconv', 'igconv+igsample', '']
SQUEEZE = 30  # the channel attention's squeeze factor: embed_dim // 30 channels in its bottleneck

# Scans see the whole image (tiles would not). Parameter counts: the authors' code with their test option
# files (tests/fixtures/mambair/official_keys.json.gz), which the released checkpoints match.
_SCALES = (2, 3, 4, 8)
MAMBAIR_SPEC = ArchSpec(scales=_SCALES, tiling_exact=False,
                        subpixel_tail=('conv_before_upsample', 'upsample', 'conv_last'),
                        params={2: 20_421_863, 3: 20_606_503, 4: 20_569_575})
LIGHT_SPEC = ArchSpec(scales=_SCALES, tiling_exact=False, subpixel_tail=('upsample',),
                      params={2: 905_016, 3: 913_131, 4: 924_492})


def _ig_spec(params: int) -> ArchSpec:
    """One network for every scale (``net(x, scale)``); the count is the IGConv option files' network."""
    return ArchSpec(scales=(), scale_arg=None, scale_in_forward=True, tiling_exact=False,
                    params={s: params for s in (2, 3, 4)})


class LightCAB(CAB):
    """The lightweight models' channel-attention block (``is_light_sr``, the pixelshuffledirect models):
    pointwise + depthwise convs and a dilated depthwise conv, for a larger receptive field at fewer parameters.
    The classic models use MMA's CAB (conv3x3 C -> C/3, GELU, conv3x3 back, channel attention): the same
    module under the same names."""

    def __init__(self, num_feat: int, squeeze_factor: int = SQUEEZE) -> None:
        nn.Module.__init__(self)
        hidden = num_feat // 2
        self.cab = nn.Sequential(
            nn.Conv2d(num_feat, hidden, 1), nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden), nn.GELU(),
            nn.Conv2d(hidden, num_feat, 1), nn.Conv2d(num_feat, num_feat, 3, 1, 2, dilation=2, groups=num_feat),
            ChannelAttention(num_feat, squeeze_factor))


def _inverse_softplus_dt(size: int, dt_min: float, dt_max: float, floor: float) -> Tensor:
    """Mamba's step-size bias: softplus(bias) log-uniform in [dt_min, dt_max]."""
    dt = torch.exp(torch.rand(size) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


class SS2D(nn.Module):
    """2D selective scan over (B, H, W, C) tokens: in_proj, depthwise conv + SiLU, four directional scans
    (row-major, column-major, both reversed) with their own projections, A and D, summed; LayerNorm, SiLU gate
    from the second half of in_proj, out_proj.

    The four directions run as one scan of 4 * d_inner channels, B and C grouped by direction.
    ``selective_scan`` is an attribute so a test can swap in the reference scan.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 3, expand: float = 2.0,
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_scale: float = 1.0, dt_init_floor: float = 1e-4,
                 conv_bias: bool = True, bias: bool = False) -> None:
        super().__init__()
        self.d_state = d_state
        self.d_inner = d_inner = int(expand * d_model)
        self.dt_rank = rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=conv_bias)
        bound = d_inner ** -0.5  # nn.Linear's default init, which the authors' stacked Linears keep
        self.x_proj_weight = nn.Parameter(torch.empty(4, rank + 2 * d_state, d_inner).uniform_(-bound, bound))
        dt_std = rank ** -0.5 * dt_scale
        self.dt_projs_weight = nn.Parameter(torch.empty(4, d_inner, rank).uniform_(-dt_std, dt_std))
        self.dt_projs_bias = nn.Parameter(torch.stack(
            [_inverse_softplus_dt(d_inner, dt_min, dt_max, dt_init_floor) for _ in range(4)]))
        # S4D-real: A = -(1..d_state) for every channel of every direction; kept as log, in float32
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(4 * d_inner, 1))
        self.Ds = nn.Parameter(torch.ones(4 * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)
        for proj in (self.in_proj, self.out_proj):  # the authors' MambaIR._init_weights
            nn.init.trunc_normal_(proj.weight, std=0.02)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)
        self.selective_scan: Callable[..., Tensor] = selective_scan

    def forward(self, x: Tensor) -> Tensor:
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))
        y = self.out_norm(self._scan(x).to(self.out_norm.weight.dtype))  # the scan's float32, as the authors'
        return self.out_proj(y * F.silu(z))

    def _scan(self, x: Tensor) -> Tensor:
        """(B, D, H, W) -> (B, H, W, D): the sum of the four directional scans, each back in image order."""
        b, d, h, w = x.shape
        length = h * w
        orders = torch.stack([x.flatten(2), x.transpose(2, 3).flatten(2)], dim=1)  # (B, 2, D, L)
        xs = torch.cat([orders, orders.flip(-1)], dim=1)  # (B, 4, D, L)
        proj = torch.einsum('bkdl,kcd->bkcl', xs, self.x_proj_weight)
        dts, Bs, Cs = proj.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum('bkrl,kdr->bkdl', dts, self.dt_projs_weight)
        y = self.selective_scan(
            xs.float().flatten(1, 2), dts.float().flatten(1, 2), -torch.exp(self.A_logs.float()), Bs.float(),
            Cs.float(), self.Ds.float(), delta_bias=self.dt_projs_bias.float().flatten(), delta_softplus=True,
        ).view(b, 4, d, length)
        y = y[:, :2] + y[:, 2:].flip(-1)  # reversed scans back in scan order: rows, columns
        rows = y[:, 0].view(b, d, h, w)
        cols = y[:, 1].view(b, d, w, h).transpose(2, 3)
        return (rows + cols).permute(0, 2, 3, 1)


class VSSBlock(nn.Module):
    """Residual state-space block on (B, H, W, C): x*s1 + SS2D(LN(x)), then x*s2 + CAB(LN(x)), with
    learnt per-channel scales s1, s2 on the skips."""

    def __init__(self, hidden_dim: int, drop_path: float = 0.0, d_state: int = 16, expand: float = 2.0,
                 is_light_sr: bool = False) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim)
        self.self_attention = SS2D(hidden_dim, d_state, expand=expand)
        self.drop_path = DropPath(drop_path)
        self.skip_scale = nn.Parameter(torch.ones(hidden_dim))
        self.conv_blk = LightCAB(hidden_dim) if is_light_sr else CAB(hidden_dim, 3, SQUEEZE)
        self.ln_2 = nn.LayerNorm(hidden_dim)
        self.skip_scale2 = nn.Parameter(torch.ones(hidden_dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x * self.skip_scale + self.drop_path(self.self_attention(self.ln_1(x)))
        local = self.conv_blk(self.ln_2(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x * self.skip_scale2 + local


class BasicLayer(nn.Module):
    """The blocks of one residual group (``use_checkpoint``: recompute each in the backward pass)."""

    def __init__(self, dim: int, depth: int, drop_path: Sequence[float], d_state: int, mlp_ratio: float,
                 use_checkpoint: bool, is_light_sr: bool) -> None:
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(VSSBlock(dim, drop_path[i], d_state, mlp_ratio, is_light_sr)
                                    for i in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x


class ResidualGroup(nn.Module):
    """Residual state-space group (RSSG): blocks, then a conv, plus the group's input. Tokens (B, H, W, C)."""

    def __init__(self, dim: int, depth: int, d_state: int, mlp_ratio: float, drop_path: Sequence[float],
                 use_checkpoint: bool, resi_connection: str, is_light_sr: bool) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, depth, drop_path, d_state, mlp_ratio, use_checkpoint, is_light_sr)
        self.conv = resi_conv(dim, resi_connection)

    def forward(self, x: Tensor) -> Tensor:
        y = self.residual_group(x).permute(0, 3, 1, 2)
        return self.conv(y).permute(0, 2, 3, 1) + x


class PatchEmbed(nn.Module):
    """NCHW feature map -> (B, H, W, C) tokens, optionally normalised (patch_norm)."""

    def __init__(self, embed_dim: int, norm_layer: Callable[[int], nn.Module] | None) -> None:
        super().__init__()
        self.norm = norm_layer(embed_dim) if norm_layer is not None else None

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        return self.norm(x) if self.norm is not None else x


@ARCH_REGISTRY.register(meta=MAMBAIR_SPEC)
class MambaIR(nn.Module):
    """MambaIR with the authors' arguments (see the module docstring for the three changed defaults).

    upsampler: ``pixelshuffle`` (classic SR: conv to 64, conv + pixel-shuffle stages, conv),
    ``pixelshuffledirect`` (lightweight SR: one conv + pixel shuffle; also selects the lightweight CAB),
    ``igconv`` / ``igconv+igsample`` (the IGConv authors' forms, ``forward(x, scale)``), or '' (denoising
    and JPEG: same size, added to the input). IGConv takes ``sk_kernel_size``, ``implicit_dim``,
    ``latent_layers``, ``geo_ensemble`` and, with IGSample only, ``max_s`` (as in the official code; plain
    ``igconv`` keeps max_s 4); IGSample gets half the implicit width and depth. ``return_skip``: in training,
    IGConv+ returns (image, skip). ``img_size`` and ``patch_size`` only label the training patch;
    ``window_size``, ``interval`` and ``num_heads`` (left over in some of the authors' option files, which
    their ``**kwargs`` swallows) are accepted and unused.
    """

    mean: Tensor

    def __init__(self, img_size: int = 64, patch_size: int = 1, in_chans: int = 3, embed_dim: int = 180,
                 depths: Sequence[int] = (6, 6, 6, 6, 6, 6), drop_rate: float = 0.0, d_state: int = 16,
                 mlp_ratio: float = 2.0, drop_path_rate: float = 0.1,
                 norm_layer: Callable[[int], nn.Module] = nn.LayerNorm, patch_norm: bool = True,
                 use_checkpoint: bool = False, upscale: int = 2, img_range: float = 1.0,
                 upsampler: Upsampler = 'pixelshuffle', resi_connection: Literal['1conv', '3conv'] = '1conv',
                 sk_kernel_size: int = 3, implicit_dim: int = 256, latent_layers: int = 4, geo_ensemble: bool = True,
                 max_s: int = 4, return_skip: bool = True, window_size: int | None = None,
                 interval: Sequence[int] | None = None, num_heads: Sequence[int] | None = None) -> None:
        super().__init__()
        require_positive(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                         d_state=d_state, upscale=upscale, sk_kernel_size=sk_kernel_size, implicit_dim=implicit_dim,
                         latent_layers=latent_layers, max_s=max_s)
        require_positive(**{f'depths[{i}]': d for i, d in enumerate(depths)})
        if not depths:
            raise ValueError('depths must list at least one residual group')
        if embed_dim < SQUEEZE:
            raise ValueError(f'embed_dim must be at least {SQUEEZE} (the channel attention squeezes it by {SQUEEZE}), '
                             f'got {embed_dim}')
        if mlp_ratio <= 0 or int(mlp_ratio * embed_dim) < 1:
            raise ValueError(f'mlp_ratio must be positive, got {mlp_ratio}')
        if upsampler == 'pixelshuffle' and upscale & (upscale - 1) and upscale != 3:
            raise ValueError(f'upsampler pixelshuffle supports upscale 2^n and 3, not {upscale}')
        self.img_range = img_range
        self.upscale = upscale
        self.upsampler = upsampler
        self.return_skip = return_skip
        self.scale_in_forward = upsampler in IG_UPSAMPLERS
        rgb_mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.0,)
        self.register_buffer('mean', torch.tensor(rgb_mean).view(1, -1, 1, 1), persistent=False)
        self.patches_resolution = (img_size // patch_size, img_size // patch_size)

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbed(embed_dim, norm_layer if patch_norm else None)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        starts = [sum(depths[:i]) for i in range(len(depths))]
        light = upsampler == 'pixelshuffledirect'
        self.layers = nn.ModuleList(
            ResidualGroup(embed_dim, depth, d_state, mlp_ratio, rates[start:start + depth], use_checkpoint,
                          resi_connection, light) for depth, start in zip(depths, starts))
        self.norm = norm_layer(embed_dim)
        self.conv_after_body = resi_conv(embed_dim, resi_connection)

        self.upsample: nn.Module
        if upsampler == 'pixelshuffle':
            num_feat = 64
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, num_feat, 3, 1, 1),
                                                      nn.LeakyReLU(inplace=True))
            self.upsample = Upsample(upscale, num_feat)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, 1, 1)
        elif upsampler == 'pixelshuffledirect':
            self.upsample = nn.Sequential(nn.Conv2d(embed_dim, upscale ** 2 * in_chans, 3, 1, 1),
                                          nn.PixelShuffle(upscale))
        elif upsampler == 'igconv':
            self.upsample = IGConv(embed_dim, sk_kernel_size, implicit_dim, latent_layers, geo_ensemble)
        elif upsampler == 'igconv+igsample':
            self.upsample = IGConv(embed_dim, sk_kernel_size, implicit_dim, latent_layers, geo_ensemble, max_s)
            self.skip = IGSample(embed_dim, sk_kernel_size, implicit_dim // 2, latent_layers // 2, geo_ensemble,
                                 max_s)
        elif upsampler == '':
            self.conv_last = nn.Conv2d(embed_dim, in_chans, 3, 1, 1)
        else:
            raise ValueError(f'unknown upsampler {upsampler!r}; use one of {", ".join(map(repr, get_args(Upsampler)))}')

    def forward_features(self, x: Tensor) -> Tensor:
        """The residual groups between the shallow conv and conv_after_body (NCHW in and out)."""
        x = self.pos_drop(self.patch_embed(x))
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).permute(0, 3, 1, 2)

    def forward(self, x: Tensor, scale: int | None = None) -> Tensor | tuple[Tensor, Tensor]:
        if self.scale_in_forward and scale is None:
            raise ValueError(f'MambaIR with upsampler {self.upsampler} is called as net(x, scale)')
        if not self.scale_in_forward and scale is not None and scale != self.upscale:
            raise ValueError(f'this MambaIR was built for x{self.upscale}, not x{scale}')
        lr = x
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        shallow = self.conv_first(x)
        features = self.conv_after_body(self.forward_features(shallow)) + shallow
        if self.upsampler == 'pixelshuffle':
            out = self.conv_last(self.upsample(self.conv_before_upsample(features)))
        elif self.upsampler == 'pixelshuffledirect':
            out = self.upsample(features)
        elif self.scale_in_forward:
            out = self.upsample(features, scale)
        else:
            out = x + self.conv_last(features)
        out = out / self.img_range + mean
        if self.upsampler != 'igconv+igsample':
            return out
        return add_skip(out, self.skip(lr, features, scale), self.training, self.return_skip)


@ARCH_REGISTRY.register(meta=LIGHT_SPEC)
def MambaIR_light(upscale: int = 2, in_chans: int = 3, **kwargs: Any) -> MambaIR:
    """MambaIR-light as released (905K parameters at x2): 60 features, four groups of six blocks, d_state 10,
    mlp_ratio 1.2, the pixelshuffledirect tail and the lightweight CAB."""
    options = {'embed_dim': 60, 'depths': (6, 6, 6, 6), 'd_state': 10, 'mlp_ratio': 1.2,
               'upsampler': 'pixelshuffledirect', **kwargs}
    return MambaIR(upscale=upscale, in_chans=in_chans, **options)


def _ig(upsampler: str, geo_ensemble: bool, kwargs: dict[str, Any], light: bool) -> MambaIR:
    """The IGConv option files' network: MambaIR's or MambaIR-light's (the IGConv paper's light size:
    d_state 16, mlp_ratio 1.5, classic CAB) body, return_skip false as those files set it."""
    body = {'embed_dim': 60, 'depths': (6, 6, 6, 6), 'd_state': 16, 'mlp_ratio': 1.5} if light else {}
    return MambaIR(**{**body, 'upsampler': upsampler, 'geo_ensemble': geo_ensemble, 'return_skip': False, **kwargs})


@ARCH_REGISTRY.register(meta=_ig_spec(21_262_311))
def MambaIR_IGConv(**kwargs: Any) -> MambaIR:
    """MambaIR-IGConv (IGConv options/*/MambaIR/MambaIR_IG*_DF2K.yaml): any scale, ``net(x, scale)``."""
    return _ig('igconv', False, kwargs, light=False)


@ARCH_REGISTRY.register(meta=_ig_spec(22_159_591))
def MambaIR_IGConvPlus(**kwargs: Any) -> MambaIR:
    """MambaIR-IGConv+ (geometric ensemble and IGSample skip); ``max_s: 8`` gives the S8 model's setting."""
    return _ig('igconv+igsample', True, kwargs, light=False)


@ARCH_REGISTRY.register(meta=_ig_spec(2_156_943))
def MambaIR_light_IGConv(**kwargs: Any) -> MambaIR:
    """MambaIR-light-IGConv (IGConv options/*/MambaIR_Light/*IG_DIV2K.yaml)."""
    return _ig('igconv', False, kwargs, light=True)


@ARCH_REGISTRY.register(meta=_ig_spec(2_501_263))
def MambaIR_light_IGConvPlus(**kwargs: Any) -> MambaIR:
    """MambaIR-light-IGConv+ (IGConv options/*/MambaIR_Light/*IGPlus_DIV2K.yaml)."""
    return _ig('igconv+igsample', True, kwargs, light=True)
