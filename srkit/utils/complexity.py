"""Parameter and Multi-Adds counts in the convention of the lightweight-SR papers.

Convention (it reproduces the published figures): Multi-Adds are multiply-accumulates of every matrix
product the forward runs (convolutions of any kind and groups, linear layers, matmuls), biases not
counted, plus 2 per output element of an affine BatchNorm (1 without affine), as the NTIRE/AIM
efficient-SR counter charges them. Activations, LayerNorm, pooling, PixelShuffle and element-wise
products (attention gates) count nothing. Measured for a 1280x720 output:

- IMDN: 158.77 / 71.50 / 40.89 G (input 640x360 / 427x240 / 320x180); paper 158.8 / 71.5 / 40.9 G.
- EIMN_L: 212.7201 / 95.2779 / 54.3744 G and EIMN_A: 186.3789 / 83.5890 / 47.7891 G with the input
  the EIMN authors used (720//s x 1280//s, i.e. 426 wide at x3), equal to their script's output
  to the last digit; the paper rounds them to 212 / 95 / 54 and 186 / 83 / 47 G.

The forward runs on a copy of the network on the meta device (shapes only, no arithmetic), so counting
a 1280x720 output costs milliseconds; networks that need real values fall back to a real forward.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.flop_counter import FlopCounterMode

__all__ = ['count_macs', 'count_params']


def count_params(net: nn.Module) -> int:
    """Trainable parameters (what the papers' "Params" column counts; frozen ones are left out)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def _forward_macs(net: nn.Module, shape: tuple[int, ...], device: torch.device | str) -> int:
    norm_macs = 0

    def count_norm(module: _BatchNorm, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal norm_macs
        norm_macs += output.numel() * (2 if module.affine else 1)

    handles = [m.register_forward_hook(count_norm) for m in net.modules() if isinstance(m, _BatchNorm)]
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(torch.zeros(shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return counter.get_total_flops() // 2 + norm_macs


def count_macs(net: nn.Module, input_shape: Sequence[int]) -> int:
    """Multi-Adds of one eval-mode forward on an input of ``input_shape`` ((C, H, W) or (N, C, H, W)).

    ``net`` itself is left as it was (mode, device, parameters).
    """
    shape = tuple(input_shape) if len(input_shape) == 4 else (1, *input_shape)
    try:
        meta_net = copy.deepcopy(net).to('meta').eval()
        return _forward_macs(meta_net, shape, 'meta')
    except (NotImplementedError, RuntimeError):  # a forward that reads values (e.g. .item()) needs real data
        training = net.training
        device = next(net.parameters(), torch.empty(0)).device
        try:
            return _forward_macs(net.eval(), shape, device)
        finally:
            net.train(training)
