"""ETDS plain form's inference form: the same function, restructured for CPU speed (issue 18).

ETDSForInference is already a plain conv + ReLU stack; on a CPU at batch 1 eager PyTorch loses time to
the NCHW layout (oneDNN reorders every conv's input and output to its blocked layout) and to a fresh
tensor per ReLU. Here the features stay in channels_last memory (oneDNN's NHWC kernels, no reorders),
ReLUs run in place, the 1x1 ``conv_clip`` is a GEMM over the NHWC view restricted to the image channels
(the x3 dummy channel, dropped by the plain form, is not computed), and the pixel shuffle reads that
GEMM's output directly.

Only the layout and the in-place updates differ from eager, so the output is equal within float32
rounding (well within 1e-5).
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from srkit.archs.etds_arch import ETDSForInference

__all__ = ['FusedETDSForInference', 'fuse_etds_plain']


class FusedETDSForInference(nn.Module):
    """ETDSForInference restructured for inference; built by ``fuse_etds_plain``."""

    clip_t: torch.Tensor
    clip_b: torch.Tensor

    def __init__(self, net: ETDSForInference) -> None:
        super().__init__()
        self.convs = nn.ModuleList(copy.deepcopy(conv).requires_grad_(False)
                                   for conv in (net.conv_first, *net.backbone_convs, net.conv_last))
        channels = net.num_image_ch
        clip = net.conv_clip
        assert clip.bias is not None
        self.register_buffer('clip_t', clip.weight.detach()[:channels].flatten(1).t().contiguous())
        self.register_buffer('clip_b', clip.bias.detach()[:channels].clone())
        self.scale = net.upsampler.upscale_factor

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        for conv in self.convs:
            x = F.relu_(conv(x))
        n, c, h, w = x.shape
        clipped = F.relu_(torch.addmm(self.clip_b, x.permute(0, 2, 3, 1).reshape(-1, c), self.clip_t))
        s = self.scale  # PixelShuffle read straight from the NHWC rows: one copy to the NCHW image
        image = clipped.view(n, h, w, -1, s, s).permute(0, 3, 1, 4, 2, 5)
        return image.reshape(n, -1, h * s, w * s)


def fuse_etds_plain(net: nn.Module) -> nn.Module:
    """The plain form's inference form (``ArchSpec.inference_form``): a new module equal to ``net``."""
    if not isinstance(net, ETDSForInference):
        raise TypeError(f'fuse_etds_plain expects an ETDSForInference, got {type(net).__name__}')
    return FusedETDSForInference(net).eval()
