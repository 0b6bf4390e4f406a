"""Mamba's selective scan (``selective_scan_fn`` semantics) that runs on any device.

Shapes follow mamba_ssm: u, delta, z (batch, d_inner, L); A (d_inner, d_state), real; B, C either
(batch, d_state, L) or grouped (batch, groups, d_state, L) with d_inner divisible by groups; D and
delta_bias (d_inner,). Per channel d and state n the recurrence is

    h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t,    y_t = <C_t, h_t> + D u_t,    out = y * silu(z)

with delta = softplus(delta + delta_bias) when asked. Half-precision inputs are computed in float32 and
returned in their own dtype, like the kernel.

``selective_scan_chunked`` cuts the sequence into chunks of T tokens, one after the other, and carries
the state between them. Inside a chunk the cumulative sum S of delta*A gives the decay between any two
steps as exp(S_t - S_k), k <= t, which is at most 1 for A <= 0 (Mamba's A = -exp(A_log)): no exponential
of a large positive number is ever formed. A chunk is scanned in two levels, both log-depth
(Hillis-Steele) scans over such differences: every block of 16 tokens from a zero state, all blocks at
once, then the chain of block end states. Intermediates are O(batch * d_inner * d_state * T) whatever L
is; with autograd each chunk is recomputed in the backward pass (activation checkpointing), so training
keeps only the chunk inputs and the (batch, d_inner, d_state) state between chunks.

``selective_scan_inference`` is the CPU forward when no gradient is wanted (``selective_scan`` picks it). It
runs the recurrence itself, one multiply-add per token, channel and state, on ``lanes`` runs of ``steps``
consecutive tokens side by side: each Python step updates all the lanes of a group at once, in place, in
two buffers the size of one group. A first sweep gives every lane's end state from a zero start; chaining
those (a short loop over the lanes, on (batch, d_inner, d_state) states) gives the state each lane is
really entered with; a second sweep from there gives the states the output reads. It computes one
exponential per element, exp(delta A) itself, where the log-depth scans compute one per pass, and no
concatenation: about 3.6x faster than the chunked scan on one CPU thread (d_inner 120, d_state 16:
MMA_light's scans), and as exact as the recurrence, since it is the recurrence. A lane's decay
exp(A * sum of its deltas) is floored at exp(LOG_DECAY_FLOOR) = 8.8e-27: the exact value often underflows
(half the lanes of MMA_light's backward scans), and x86 computes exponentials that underflow and products
of subnormal numbers about 10x slower; the state it multiplies then keeps a part below 1e-26 of itself
that it should have lost, far below float32's (and float64's) resolution.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

try:  # a source-only CUDA build: absent on most machines, and srkit must import without it
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _kernel_scan
except (ImportError, OSError):
    _kernel_scan = None

__all__ = [
    'HAS_MAMBA_KERNEL', 'auto_chunk_size', 'selective_scan', 'selective_scan_chunked', 'selective_scan_inference',
    'selective_scan_reference'
]

HAS_MAMBA_KERNEL = _kernel_scan is not None
CHUNK_BYTES = 2 * 2**20  # one (batch, d_inner, chunk, d_state) intermediate; a chunk's autograd peak is ~50x
BLOCK = 16  # tokens scanned together: log2(BLOCK) passes over a chunk, then one pass over its blocks
MIN_CHUNK, MAX_CHUNK = BLOCK, 1024  # past ~1k tokens fewer Python steps stop paying for cache misses
LOG_DECAY_FLOOR = -60.0  # selective_scan_inference's smallest decay over a lane (module docstring)
LANES, LANE_STEPS = 16, 16  # selective_scan_inference's group; 8x32, 16x8, 32x16 timed the same on MMA_light


class _Scan(NamedTuple):
    """Inputs in the layout both scans use: channels split as (groups, channels per group)."""
    u: Tensor  # (b, g, h, L)
    delta: Tensor  # (b, g, h, L), bias and softplus applied
    A: Tensor  # (g, h, n)
    B: Tensor  # (b, g, 1, L, n)
    C: Tensor  # (b, g, 1, L, n)


def _grouped(x: Tensor, name: str) -> Tensor:
    if x.dim() == 3:
        return x.unsqueeze(1)
    if x.dim() == 4:
        return x
    raise ValueError(f'selective_scan: {name} must be (batch, d_state, L) or (batch, groups, d_state, L), '
                     f'got shape {tuple(x.shape)} (time-invariant {name} is not supported)')


def _prepare(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, delta_bias: Tensor | None,
             delta_softplus: bool) -> _Scan:
    if A.is_complex():
        raise ValueError('selective_scan: complex A is not supported')
    dtype = torch.promote_types(u.dtype, torch.float32)
    B, C = _grouped(B, 'B'), _grouped(C, 'C')
    batch, d_inner, length = u.shape
    groups = B.shape[1]
    if C.shape[1] != groups or d_inner % groups:
        raise ValueError(f'selective_scan: B has {groups} groups and C {C.shape[1]}; both must be equal and '
                         f'divide d_inner = {d_inner}')
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    split = (batch, groups, d_inner // groups, length)
    return _Scan(u.to(dtype).reshape(split), delta.reshape(split), A.to(dtype).reshape(groups, -1, A.shape[-1]),
                 B.to(dtype).transpose(-1, -2).unsqueeze(2), C.to(dtype).transpose(-1, -2).unsqueeze(2))


def _finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    y = y.reshape(u.shape)
    if D is not None:
        y = y + D.to(y.dtype)[:, None] * u.to(y.dtype)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(u.dtype)


def selective_scan_reference(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                             z: Tensor | None = None, delta_bias: Tensor | None = None,
                             delta_softplus: bool = False) -> Tensor:
    """The definition: one step of the recurrence per token. Slow; the yardstick for the fast scans."""
    s = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    state = s.u.new_zeros(*s.u.shape[:3], A.shape[-1])
    ys = []
    for t in range(s.u.shape[-1]):
        step = s.delta[..., t, None]
        state = torch.exp(step * s.A) * state + (step * s.u[..., t, None]) * s.B[..., t, :]
        ys.append((state * s.C[..., t, :]).sum(-1))
    y = torch.stack(ys, -1) if ys else s.u.new_zeros(s.u.shape)
    return _finish(y, u, D, z)


def _linear_scan(x: Tensor, log_decay: Tensor) -> Tensor:
    """sum over k <= t of exp(S_t - S_k) x_k along dim -2, S the inclusive cumulative log decay.

    Log-depth (Hillis-Steele): after the pass with span s, entry t holds the terms k in (t - 2s, t]. Every
    exponent is a difference S_t - S_k with k <= t, so it is <= 0 when the decays are.
    """
    span, length = 1, x.shape[-2]
    while span < length:
        decay = torch.exp(log_decay[..., span:, :] - log_decay[..., :-span, :])
        x = torch.cat((x[..., :span, :], x[..., span:, :] + decay * x[..., :-span, :]), -2)
        span *= 2
    return x


def _scan_chunk(state: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                block: int) -> tuple[Tensor, Tensor]:
    """Outputs of one chunk entered with ``state`` (b, g, h, n), and the state it leaves.

    The chunk (a multiple of ``block`` tokens) is scanned in two levels: every block from a zero state,
    all blocks at once; then the blocks' end states are chained, and each block gets the decayed state
    it was really entered with.
    """
    *lead, length = u.shape
    blocks = (*lead, length // block, block, A.shape[-1])
    log_decay = (delta.unsqueeze(-1) * A.unsqueeze(-2)).reshape(blocks).cumsum(-2)
    local = _linear_scan(((delta * u).unsqueeze(-1) * B).reshape(blocks), log_decay)
    block_decay = log_decay[..., -1, :].cumsum(-2)  # (b, g, h, blocks, n)
    ends = _linear_scan(local[..., -1, :], block_decay) + torch.exp(block_decay) * state.unsqueeze(-2)
    entered = torch.cat((state.unsqueeze(-2), ends[..., :-1, :]), -2)
    states = local + torch.exp(log_decay) * entered.unsqueeze(-2)
    y = (states * C.reshape(*lead[:2], 1, *blocks[-3:])).sum(-1)
    return y.reshape(u.shape), ends[..., -1, :]


def auto_chunk_size(batch: int, d_inner: int, d_state: int, element_size: int = 4) -> int:
    """The largest power-of-two chunk whose (batch, d_inner, chunk, d_state) intermediate fits CHUNK_BYTES."""
    tokens = CHUNK_BYTES // max(1, batch * d_inner * d_state * element_size)
    return min(MAX_CHUNK, max(MIN_CHUNK, 2 ** int(math.log2(max(tokens, 1)))))


def _pad_tokens(x: Tensor, dim: int, extra: int) -> Tensor:
    """``extra`` zero tokens at the end of (negative) ``dim``: with delta = 0 they neither decay nor feed the state."""
    if not extra:
        return x
    return F.pad(x, [0, 0] * (-dim - 1) + [0, extra])


def selective_scan_chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                           z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                           chunk_size: int | None = None, block_size: int = BLOCK,
                           checkpoint_chunks: bool = True) -> Tensor:
    """The selective scan in pure PyTorch, chunk by chunk (memory bounded by the chunk, not by L).

    chunk_size: tokens per chunk, rounded up to a multiple of block_size; None picks ``auto_chunk_size``.
    block_size: tokens scanned together inside a chunk (log2(block_size) passes over the chunk).
    checkpoint_chunks: with autograd, recompute each chunk's intermediates in the backward pass instead of
    keeping them for every chunk.
    """
    s = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, groups, per_group, length = s.u.shape
    if chunk_size is None and s.u.is_meta:  # shapes only (complexity counting): nothing to bound
        chunk_size = length
    chunk = chunk_size or auto_chunk_size(batch, groups * per_group, A.shape[-1], s.u.element_size())
    chunk = -(-chunk // block_size) * block_size
    extra = -length % block_size
    u_, delta_ = _pad_tokens(s.u, -1, extra), _pad_tokens(s.delta, -1, extra)
    B_, C_ = _pad_tokens(s.B, -2, extra), _pad_tokens(s.C, -2, extra)
    recompute = checkpoint_chunks and torch.is_grad_enabled() and any(
        t.requires_grad for t in (s.u, s.delta, s.A, s.B, s.C))
    state = s.u.new_zeros(batch, groups, per_group, A.shape[-1])
    ys = []
    # split, not slicing: one backward node concatenates the chunks' gradients instead of each chunk
    # scattering into a zero tensor of the full length (O(L^2 / chunk) work)
    parts = zip(u_.split(chunk, -1), delta_.split(chunk, -1), B_.split(chunk, -2), C_.split(chunk, -2))
    for u_part, delta_part, B_part, C_part in parts:
        args = (state, u_part, delta_part, s.A, B_part, C_part, block_size)
        y, state = checkpoint(_scan_chunk, *args, use_reentrant=False) if recompute else _scan_chunk(*args)
        ys.append(y)
    y = torch.cat(ys, -1)[..., :length] if ys else s.u.new_zeros(s.u.shape)
    return _finish(y, u, D, z)


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _lane_layout(x: Tensor, group: int, steps: int) -> Tensor:
    """(batch, ..., L) -> (L // (group * steps), steps, batch, group, ...): lane j holds tokens
    [j * steps, (j + 1) * steps), lanes are taken ``group`` at a time, and the t-th tokens of a group's lanes
    are contiguous, as one step reads them."""
    x = x.reshape(*x.shape[:-1], -1, group, steps)
    dims = x.dim()
    return x.permute(dims - 3, dims - 1, 0, dims - 2, *range(1, dims - 3)).contiguous()


def selective_scan_inference(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                             z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                             lanes: int = LANES, steps: int = LANE_STEPS) -> Tensor:
    """The selective scan without autograd: the recurrence, ``lanes`` runs of ``steps`` tokens at a time.

    Its buffers are updated in place, so it refuses inputs that need a gradient (use
    ``selective_scan_chunked``). Memory: two (batch, d_inner, lanes * steps, d_state) buffers besides the
    inputs' size.
    """
    if _needs_grad(u, delta, A, B, C, delta_bias):
        raise RuntimeError('selective_scan_inference has no backward; use selective_scan_chunked for autograd')
    if lanes < 1 or steps < 1:
        raise ValueError(f'selective_scan_inference: lanes and steps must be >= 1, got {lanes} and {steps}')
    s = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    batch, groups, per_group, length = s.u.shape
    group = max(1, min(lanes, -(-length // steps)))  # lanes stepped together; 1 for an empty sequence
    extra = -length % (group * steps)  # padding tokens have delta = 0: decay 1 and no input
    # (group index, steps, b, lane, g, 1, h) and (group index, steps, b, lane, g, n, 1)
    delta_ = _lane_layout(_pad_tokens(s.delta, -1, extra).unsqueeze(2), group, steps)
    delta_u = _lane_layout(_pad_tokens(s.u, -1, extra).unsqueeze(2), group, steps).mul_(delta_)
    B_, C_ = (_lane_layout(_pad_tokens(x.permute(0, 1, 4, 2, 3), -1, extra), group, steps) for x in (s.B, s.C))
    A_ = s.A.transpose(-1, -2)  # (g, n, h)
    # (group index, b, lane, g, n, h): exp(A * a lane's sum of delta), floored (see LOG_DECAY_FLOOR)
    lane_decay = (delta_.sum(1) * A_).clamp_(min=LOG_DECAY_FLOOR).exp_()
    y = s.u.new_empty(*delta_.shape[:-2], per_group)  # (group index, steps, b, lane, g, h)
    _scan_lane_groups(delta_, delta_u, A_, B_, C_, lane_decay, y)
    y = y.permute(2, 4, 5, 0, 3, 1).reshape(batch, groups, per_group, -1)[..., :length]
    return _finish(y, u, D, z)


def _scan_lane_groups(delta: Tensor, delta_u: Tensor, A: Tensor, B: Tensor, C: Tensor, lane_decay: Tensor,
                      y: Tensor) -> None:
    """selective_scan_inference's loop over groups of lanes, in its layouts; writes the read-out into ``y``.

    States are laid out (..., d_state, channels): the read-out <C_t, h_t> is then a batched
    (1 x d_state) @ (d_state x channels) product instead of a reduction over 16 contiguous numbers.
    """
    steps, batch, group = delta.shape[1:4]
    d_groups, d_state, per_group = A.shape
    decay = y.new_empty(steps, batch, group, d_groups, d_state, per_group)
    states = torch.empty_like(decay)
    entered = y.new_zeros(batch, group + 1, d_groups, d_state, per_group)  # lane entry states, then the exit
    for index in range(delta.shape[0]):
        entered[:, 0] = entered[:, group]  # the previous group's exit state
        torch.mul(delta[index], A, out=decay).exp_()
        torch.mul(delta_u[index], B[index], out=states)
        decay_at, state_at = decay.unbind(0), states.unbind(0)  # views, indexed per step
        local = state_at[0]
        for t in range(1, steps):  # every lane's end state from a zero start
            local = torch.addcmul(state_at[t], decay_at[t], local)
        lane_ends = zip(local.unbind(1), lane_decay[index].unbind(1), entered.unbind(1), entered[:, 1:].unbind(1))
        for end, through, start, next_start in lane_ends:  # chained: the state each next lane is entered with
            torch.addcmul(end, through, start, out=next_start)
        state_at[0].addcmul_(decay_at[0], entered[:, :group])
        for t in range(1, steps):
            state_at[t].addcmul_(decay_at[t], state_at[t - 1])
        torch.matmul(C[index].reshape(-1, 1, d_state), states.view(-1, d_state, per_group),  # float32 under
                     out=y[index].view(-1, 1, per_group))  # autocast too: an out= product is not autocast


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
                   z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False) -> Tensor:
    """mamba_ssm's CUDA kernel on CUDA tensors when it is installed; else, on a CPU and without autograd,
    ``selective_scan_inference``; the chunked PyTorch scan otherwise (training, other devices, and the meta
    device, where complexity counting wants one op per pass, not one per token step)."""
    if _kernel_scan is not None and u.is_cuda:
        return _kernel_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if u.device.type == 'cpu' and not _needs_grad(u, delta, A, B, C, D, z, delta_bias):
        return selective_scan_inference(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
