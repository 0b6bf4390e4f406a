"""Parameter and Multi-Adds counts in the convention of the lightweight-SR papers.

Convention (it reproduces the published figures): Multi-Adds are multiply-accumulates of every matrix
product the forward runs (convolutions of any kind and groups, linear layers, matmuls), biases not
counted, plus 2 per output element of an affine BatchNorm (1 without affine), as the NTIRE/AIM
efficient-SR counter charges them. Activations, LayerNorm, pooling, PixelShuffle and element-wise
products (attention gates) count nothing (``convention='fvcore'`` adds what fvcore's default handles charge
beyond those products, norms, upsampling and average pooling, and the selective scan, as the transformer and Mamba
papers' tables do). Measured for a 1280x720 output:

- IMDN: 158.77 / 71.50 / 40.89 G (input 640x360 / 427x240 / 320x180); paper 158.8 / 71.5 / 40.9 G.
- EIMN_L: 212.7201 / 95.2779 / 54.3744 G and EIMN_A: 186.3789 / 83.5890 / 47.7891 G with the input
  the EIMN authors used (720//s x 1280//s, i.e. 426 wide at x3), equal to their script's output
  to the last digit; the paper rounds them to 212 / 95 / 54 and 186 / 83 / 47 G.

Beyond the papers' two columns (the NTIRE efficient-SR reports add these): activations are the elements
of every convolution and linear-layer output; peak memory is traced as the largest total of live tensor
storage (parameters, buffers, input and intermediate results) during one no-grad forward, which is what
``torch.cuda.max_memory_allocated`` reports less the allocator's rounding and convolution workspaces;
latency is the median wall time of real forwards after a warm-up.

The forward runs on a copy of the network on the meta device (shapes only, no arithmetic), so counting
a 1280x720 output costs milliseconds; networks that need real values fall back to a real forward.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

__all__ = ['CONVENTIONS', 'count_macs', 'count_params', 'count_activations', 'peak_memory_bytes', 'measure_latency',
           'measure_cuda_peak_memory']

T = TypeVar('T')
Convention = Literal['srkit', 'fvcore']
CONVENTIONS: tuple[Convention, ...] = ('srkit', 'fvcore')
# Ops whose outputs are "activations": convolutions, and linear layers (1x1 convolutions over tokens).
_ACTIVATION_OPS = {torch.ops.aten.convolution.default, torch.ops.aten.addmm.default, torch.ops.aten.mm.default}


def _cpu_sdpa_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query, key, value)


# FlopCounterMode knows the CUDA attention kernels only: on CPU, F.scaled_dot_product_attention (with or without
# attn_mask) runs aten._scaled_dot_product_flash_attention_for_cpu, which it would count as zero.
_EXTRA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


@contextlib.contextmanager
def _frozen(net: nn.Module) -> Any:
    """Parameters without requires_grad for the counted forward: FlopCounterMode's module tracker registers
    grad hooks on every module input that requires grad, and a view of a parameter taken under no_grad
    (``self.td.expand(...)``, passed to a submodule) requires grad but has no grad_fn, so it raises
    AssertionError('Expected gradient function to be set')."""
    flags = [(p, p.requires_grad) for p in net.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def count_params(net: nn.Module) -> int:
    """Trainable parameters (what the papers' "Params" column counts; frozen ones are left out)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def _fvcore_norm(arguments: dict[str, Any], out: Any) -> int:
    return arguments['input'].numel() * (5 if arguments.get('weight') is not None else 4)  # fvcore: "a rough estimate"


def _fvcore_interpolate(arguments: dict[str, Any], out: torch.Tensor) -> int:
    return out.numel() * {'nearest': 1, 'bilinear': 4}.get(arguments.get('mode', 'nearest'), 0)


# fvcore's default handles beyond matrix products (fvcore/nn/flop_count.py, 0.1.5), by the functional call its jit
# trace records as aten::layer_norm, aten::upsample_nearest2d, ...: the norms 5 per input element with an affine
# weight and 4 without, nearest upsampling 1 and bilinear 4 per output element, adaptive average pooling 1 per input
# element, grid sampling 4 per output element. Other modes (bicubic, nearest-exact) have no handle: 0.
_FVCORE_CHARGES: dict[Callable[..., Any], Callable[[dict[str, Any], Any], int]] = {
    F.layer_norm: _fvcore_norm, F.group_norm: _fvcore_norm, F.instance_norm: _fvcore_norm,
    F.interpolate: _fvcore_interpolate, F.grid_sample: lambda arguments, out: 4 * out.numel(),
    F.adaptive_avg_pool2d: lambda arguments, out: arguments['input'].numel()}


class _FvcoreCharges(TorchFunctionMode):
    """Charges the ops in ``_FVCORE_CHARGES`` at the function call, where fvcore's jit trace sees them: below it
    torch decomposes some (an adaptive pool to 1x1 runs as a plain mean, which fvcore does not charge)."""

    def __init__(self, add: Callable[[int], None]) -> None:
        super().__init__()
        self.add = add

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        charge = _FVCORE_CHARGES.get(func)
        if charge is not None:
            self.add(charge(inspect.signature(func).bind(*args, **kwargs).arguments, out))
        return out


@contextlib.contextmanager
def _counting_scans(net: nn.Module, add: Callable[[int], None]) -> Any:
    """Each module's ``selective_scan`` attribute (MambaIR's SS2D) wrapped to charge MambaIR's own count of a scan,
    9 B L D N + B D L for u (B, D, L) and A (D, N): its ``flops_selective_scan_ref`` with D and grouped B, C."""
    scanning = [vars(m) for m in net.modules() if callable(vars(m).get('selective_scan'))]  # instance attributes
    originals: list[Callable[..., torch.Tensor]] = [attributes['selective_scan'] for attributes in scanning]

    def counted(scan: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def run(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            b, d, length = u.shape
            add(9 * b * length * d * A.shape[-1] + b * d * length)
            return scan(u, delta, A, *args, **kwargs)
        return run

    for attributes, scan in zip(scanning, originals):
        attributes['selective_scan'] = counted(scan)
    try:
        yield
    finally:
        for attributes, scan in zip(scanning, originals):
            attributes['selective_scan'] = scan


def _forward_macs(net: nn.Module, shape: tuple[int, ...], device: torch.device | str,
                  convention: Convention = 'srkit') -> int:
    extra_macs = 0

    def add(macs: int) -> None:
        nonlocal extra_macs
        extra_macs += macs

    def count_norm(module: _BatchNorm, inputs: tuple, output: torch.Tensor) -> None:
        add(output.numel() * (2 if module.affine else 1))

    fvcore = convention == 'fvcore'
    scans = _counting_scans(net, add) if fvcore else contextlib.nullcontext()
    charges = _FvcoreCharges(add) if fvcore else contextlib.nullcontext()
    handles = [m.register_forward_hook(count_norm) for m in net.modules() if isinstance(m, _BatchNorm)]
    try:
        with _frozen(net), scans, FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS) as counter, \
                charges, torch.no_grad():
            net(torch.zeros(shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return counter.get_total_flops() // 2 + extra_macs


def _batch_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(input_shape) if len(input_shape) == 4 else (1, *input_shape)


def _on_meta_or_real(net: nn.Module, input_shape: Sequence[int],
                     run: Callable[[nn.Module, tuple[int, ...], Any], T]) -> T:
    """``run(eval-mode net, batch shape, device)`` on a meta copy; a real forward when values are needed.

    ``net`` itself is left as it was (mode, device, parameters).
    """
    shape = _batch_shape(input_shape)
    try:
        meta_net = copy.deepcopy(net).to('meta').eval()
        return run(meta_net, shape, 'meta')
    except (NotImplementedError, RuntimeError):  # a forward that reads values (e.g. .item()) needs real data
        training = net.training
        device = next(net.parameters(), torch.empty(0)).device
        try:
            return run(net.eval(), shape, device)
        finally:
            net.train(training)


def count_macs(net: nn.Module, input_shape: Sequence[int], convention: Convention = 'srkit') -> int:
    """Multi-Adds of one eval-mode forward on an input of ``input_shape`` ((C, H, W) or (N, C, H, W)).

    ``convention``: 'srkit', the lightweight-CNN papers' count (the module docstring); 'fvcore', what fvcore's
    FlopCountAnalysis gives (the transformer and Mamba papers' tables, SMFANet's script): on top of it, norms at 5
    per element (4 without affine), nearest / bilinear upsampling at 1 / 4 per output element, adaptive average
    pooling at 1 per input element (``_FVCORE_CHARGES``), and a selective scan at MambaIR's own formula (see
    ``_counting_scans``). ``net`` itself is left as it was (mode, device, parameters).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f'convention must be one of {", ".join(CONVENTIONS)}, got {convention!r}')
    return _on_meta_or_real(net, input_shape, lambda n, shape, device: _forward_macs(n, shape, device, convention))


class _ForwardProbe(TorchDispatchMode):
    """Follows every op of a forward: activation elements, and the live tensor storage after each op.

    Storages are held by weak reference, so one freed by the forward leaves the total as it would leave
    an allocator; an op's inputs are still referenced when its output is added, as they are in memory.
    """

    def __init__(self, resident: list[torch.Tensor]) -> None:
        super().__init__()
        self.activations = 0
        self.live: dict[StorageWeakRef, int] = {}
        self.current = 0
        for tensor in resident:
            self._add(tensor)
        self.peak = self.current

    def _add(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        ref = StorageWeakRef(storage)
        if ref not in self.live:
            self.live[ref] = storage.nbytes()
            self.current += storage.nbytes()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for ref in [r for r in self.live if r.expired()]:  # before adding: a freed address can be reused
            self.current -= self.live.pop(ref)
        outputs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        for tensor in outputs:
            self._add(tensor)
        if func in _ACTIVATION_OPS:
            self.activations += sum(t.numel() for t in outputs)
        self.peak = max(self.peak, self.current)
        return out


def _probe(net: nn.Module, shape: tuple[int, ...], device: Any) -> _ForwardProbe:
    x = torch.zeros(shape, device=device)
    resident = [*net.parameters(), *net.buffers(), x]
    with torch.no_grad():
        probe = _ForwardProbe(resident)
        with probe:
            net(x)
    return probe


def count_activations(net: nn.Module, input_shape: Sequence[int]) -> int:
    """Elements of every convolution and linear-layer output of one forward (NTIRE's "#Activations").

    A proxy for memory traffic, which often predicts latency better than Multi-Adds.
    """
    return _on_meta_or_real(net, input_shape, _probe).activations


def peak_memory_bytes(net: nn.Module, input_shape: Sequence[int]) -> int:
    """Largest total of live tensor storage during one no-grad forward, parameters and input included.

    Traced, not measured, so it is the same on every machine and costs no memory: the figure to compare
    networks by. ``measure_cuda_peak_memory`` gives what one GPU's allocator actually held.
    """
    return _on_meta_or_real(net, input_shape, _probe).peak


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure_latency(net: nn.Module, input_shape: Sequence[int], device: torch.device | str = 'cpu', *,
                    warmup: int = 3, runs: int = 10, amp_dtype: torch.dtype | None = None) -> float:
    """Median seconds of ``runs`` no-grad forwards after ``warmup`` untimed ones (kernel selection, caches).

    The median, not the mean, so one preempted run on a shared machine does not move the figure.
    """
    device = torch.device(device)
    x = torch.rand(_batch_shape(input_shape), device=device)
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    times = []
    with torch.no_grad(), autocast:
        for index in range(warmup + runs):
            _synchronize(device)
            start = time.perf_counter()
            net(x)
            _synchronize(device)
            if index >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_cuda_peak_memory(net: nn.Module, input_shape: Sequence[int], device: torch.device | str) -> int:
    """Bytes the CUDA allocator held at its peak over one no-grad forward, parameters included."""
    device = torch.device(device)
    x = torch.rand(_batch_shape(input_shape), device=device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        net(x)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device)
