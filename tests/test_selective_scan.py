"""The chunked and the inference selective scans against the sequential recurrence (their definition), and
against mamba_ssm."""
from __future__ import annotations

import importlib
import math

import pytest
import torch

from srkit.ops import (
    HAS_MAMBA_KERNEL,
    auto_chunk_size,
    selective_scan,
    selective_scan_chunked,
    selective_scan_reference,
)

scan_module = importlib.import_module('srkit.ops.selective_scan')  # the package's attribute is the function
selective_scan_inference = scan_module.selective_scan_inference

F64_RTOL = 1e-5  # the brief's bound; float64 actually agrees to ~1e-14
F32_RTOL = 1e-4  # float32 chunked vs float64 reference: cumulative sums reorder the rounding


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max error relative to the largest reference value."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _inputs(length: int, dtype=torch.float64, batch=2, d_inner=6, d_state=4, groups=0, seed=0):
    """u, delta, A, B, C, D, z, delta_bias as Mamba feeds them (A < 0, B/C grouped when groups > 0)."""
    g = torch.Generator().manual_seed(seed)
    bc_shape = (batch, groups, d_state, length) if groups else (batch, d_state, length)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_()

    A = (-torch.exp(torch.randn(d_inner, d_state, generator=g, dtype=dtype))).requires_grad_()
    return (rand(batch, d_inner, length), rand(batch, d_inner, length, scale=0.5), A, rand(*bc_shape),
            rand(*bc_shape), rand(d_inner), rand(batch, d_inner, length), rand(d_inner, scale=0.5))


def _outputs_and_grads(fn, inputs, **kwargs):
    u, delta, A, B, C, D, z, delta_bias = inputs
    out = fn(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=True, **kwargs)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    return out, torch.autograd.grad((out * weights).sum(), inputs)


def test_reference_matches_the_recurrence_by_hand():
    u, delta, B, C = [1.0, 2.0, -1.0], [0.5, 1.0, 2.0], [1.0, -2.0, 0.5], [2.0, 1.0, 3.0]
    a, D, h, expected = -0.7, 0.3, 0.0, []
    for t in range(3):
        h = math.exp(delta[t] * a) * h + delta[t] * B[t] * u[t]
        y = C[t] * h + D * u[t]
        expected.append(y * 2.0 / (1 + math.exp(-2.0)))  # z = 2: y * silu(2)
    def t64(values):
        return torch.tensor(values, dtype=torch.float64)

    out = selective_scan_reference(t64(u).view(1, 1, 3), t64(delta).view(1, 1, 3), t64([[a]]), t64(B).view(1, 1, 3),
                                   t64(C).view(1, 1, 3), t64([D]), z=torch.full((1, 1, 3), 2.0, dtype=torch.float64))
    torch.testing.assert_close(out.flatten(), t64(expected), rtol=1e-12, atol=0)


@pytest.mark.parametrize('length', [1, 7, 64, 100, 257])
@pytest.mark.parametrize('checkpoint_chunks', [True, False])
def test_chunked_matches_sequential_float64(length, checkpoint_chunks):
    inputs = _inputs(length)
    ref, ref_grads = _outputs_and_grads(selective_scan_reference, inputs)
    # chunk 24 -> 32 (a multiple of block 8): no length here divides it except 1 and 7 fit in one chunk
    out, grads = _outputs_and_grads(selective_scan_chunked, inputs, chunk_size=24, block_size=8,
                                    checkpoint_chunks=checkpoint_chunks)
    assert _rel(out, ref) < F64_RTOL
    for name, got, want in zip(['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias'], grads, ref_grads):
        assert _rel(got, want) < F64_RTOL, name


def test_chunked_without_optional_inputs():
    u, delta, A, B, C, *_ = _inputs(50)
    ref = selective_scan_reference(u, delta.abs(), A, B, C)
    assert _rel(selective_scan_chunked(u, delta.abs(), A, B, C, chunk_size=16, block_size=4), ref) < F64_RTOL


def test_grouped_B_C_match_sequential_and_one_group_equals_ungrouped():
    inputs = _inputs(37, groups=3)
    ref, ref_grads = _outputs_and_grads(selective_scan_reference, inputs)
    out, grads = _outputs_and_grads(selective_scan_chunked, inputs, chunk_size=16, block_size=4)
    assert _rel(out, ref) < F64_RTOL
    assert all(_rel(g, r) < F64_RTOL for g, r in zip(grads, ref_grads))
    u, delta, A, B, C, D, z, bias = _inputs(37)
    flat = selective_scan_chunked(u, delta, A, B, C, D, z, bias, True)
    grouped = selective_scan_chunked(u, delta, A, B.unsqueeze(1), C.unsqueeze(1), D, z, bias, True)
    torch.testing.assert_close(grouped, flat)


def test_float32_close_to_float64_reference():
    inputs64 = _inputs(300)
    inputs32 = [t.detach().float().requires_grad_() for t in inputs64]
    ref, ref_grads = _outputs_and_grads(selective_scan_reference, inputs64)
    out, grads = _outputs_and_grads(selective_scan_chunked, inputs32)
    assert out.dtype == torch.float32
    assert _rel(out.double(), ref) < F32_RTOL
    assert all(_rel(g.double(), r) < F32_RTOL for g, r in zip(grads, ref_grads))


def test_half_inputs_are_scanned_in_float32_and_returned_in_half():
    u, delta, A, B, C, D, z, bias = [t.detach() for t in _inputs(40, dtype=torch.float32)]
    half = selective_scan_chunked(u.half(), delta.half(), A, B.half(), C.half(), D, z.half(), bias, True)
    full = selective_scan_chunked(u.half().float(), delta.half().float(), A, B.half().float(), C.half().float(), D,
                                  z.half().float(), bias, True)
    assert half.dtype == torch.float16
    assert _rel(half.float(), full) < 2e-3  # only the final rounding to half differs


def test_strong_decay_stays_finite_and_exact():
    """Large delta*|A| over a long chunk: exp(-cumsum) would overflow, differences of cumsums do not."""
    u, delta, A, B, C, *_ = [t.detach() for t in _inputs(300)]
    delta, A = delta.abs() * 40 + 5, A * 20
    out = selective_scan_chunked(u, delta, A, B, C, chunk_size=256, block_size=256)
    assert torch.isfinite(out).all()
    assert _rel(out, selective_scan_reference(u, delta, A, B, C)) < F64_RTOL


def test_chunks_bound_the_work_set(monkeypatch):
    seen = []
    real = scan_module._scan_chunk

    def spy(state, u, *rest):
        seen.append(u.shape[-1])
        return real(state, u, *rest)

    monkeypatch.setattr(scan_module, '_scan_chunk', spy)
    u, delta, A, B, C, *_ = [t.detach() for t in _inputs(1000)]
    selective_scan_chunked(u, delta, A, B, C, chunk_size=64, block_size=16)
    assert max(seen) == 64 and sum(seen) == 1008  # 1000 tokens padded to a multiple of the block


def test_auto_chunk_size_fits_the_budget():
    for batch, d_inner, d_state in [(1, 96, 16), (1, 384, 16), (16, 384, 16), (1, 8, 4)]:
        chunk = auto_chunk_size(batch, d_inner, d_state)
        assert chunk & (chunk - 1) == 0 and scan_module.MIN_CHUNK <= chunk <= scan_module.MAX_CHUNK
        if chunk > scan_module.MIN_CHUNK:
            assert batch * d_inner * d_state * chunk * 4 <= scan_module.CHUNK_BYTES


def test_bad_shapes_are_rejected_with_the_reason():
    u, delta, A, B, C, *_ = [t.detach() for t in _inputs(8)]
    with pytest.raises(ValueError, match='time-invariant B'):
        selective_scan_chunked(u, delta, A, B[0, :, 0].expand(6, 4), C)
    with pytest.raises(ValueError, match='groups'):
        selective_scan_chunked(u, delta, A, B.reshape(2, 4, 1, 8).expand(2, 4, 4, 8), C)


def _detached(inputs):
    return [t.detach() for t in inputs]


def _scan_all(fn, inputs, **kwargs):
    u, delta, A, B, C, D, z, delta_bias = inputs
    return fn(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=True, **kwargs)


# lanes x steps of 3 x 5 = 15 tokens per group: no length here is a multiple of it, 37 and 100 span several groups
@pytest.mark.parametrize('length', [1, 7, 37, 100, 257])
@pytest.mark.parametrize('groups', [0, 3])
def test_inference_matches_sequential_float64(length, groups):
    inputs = _detached(_inputs(length, groups=groups))
    ref = _scan_all(selective_scan_reference, inputs)
    out = _scan_all(selective_scan_inference, inputs, lanes=3, steps=5)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert _rel(out, ref) < 1e-12  # the same recurrence, only grouped differently: float64 rounding


def test_inference_default_lanes_and_without_optional_inputs():
    u, delta, A, B, C, *_ = _detached(_inputs(300))  # 300 tokens: more than one default group, not a multiple
    ref = selective_scan_reference(u, delta.abs(), A, B, C)
    assert _rel(selective_scan_inference(u, delta.abs(), A, B, C), ref) < F64_RTOL
    assert _rel(selective_scan_inference(u, delta.abs(), A, B, C, lanes=1, steps=1), ref) < F64_RTOL
    empty = selective_scan_inference(u[..., :0], delta[..., :0], A, B[..., :0], C[..., :0])
    assert empty.shape == (2, 6, 0)


def test_inference_float32_and_half():
    inputs64 = _detached(_inputs(300))
    inputs32 = [t.float() for t in inputs64]
    ref = _scan_all(selective_scan_reference, inputs64)
    out = _scan_all(selective_scan_inference, inputs32)
    assert out.dtype == torch.float32
    assert _rel(out.double(), ref) < F32_RTOL
    assert _rel(out, _scan_all(selective_scan_chunked, inputs32)) < F32_RTOL
    u, delta, A, B, C, D, z, bias = inputs32
    half = selective_scan_inference(u.half(), delta.half(), A, B.half(), C.half(), D, z.half(), bias, True)
    full = selective_scan_inference(u.half().float(), delta.half().float(), A, B.half().float(), C.half().float(), D,
                                    z.half().float(), bias, True)
    assert half.dtype == torch.float16
    assert _rel(half.float(), full) < 2e-3


def test_inference_ignores_autocast_like_the_kernel():
    """The read-out is a matmul, which CPU autocast runs in half precision unless it writes into a float32
    ``out``: the scan must stay in float32, as mamba_ssm's kernel does."""
    inputs = [t.float() for t in _detached(_inputs(60))]
    full = _scan_all(selective_scan_inference, inputs)
    for dtype in (torch.float16, torch.bfloat16):
        with torch.autocast('cpu', dtype=dtype):
            torch.testing.assert_close(_scan_all(selective_scan_inference, inputs), full, rtol=0, atol=0)


def test_inference_strong_decay_stays_finite_and_exact():
    """Decays that underflow float32 over a lane (exp(A * sum of delta) < e^-87): floored, still exact."""
    u, delta, A, B, C, *_ = _detached(_inputs(300))
    delta, A = delta.abs() * 40 + 5, A * 20
    for dtype in (torch.float64, torch.float32):
        args = [t.to(dtype) for t in (u, delta, A, B, C)]
        out = selective_scan_inference(*args, lanes=4, steps=8)
        assert torch.isfinite(out).all()
        assert _rel(out.double(), selective_scan_reference(u, delta, A, B, C)) < F64_RTOL


def test_inference_refuses_autograd_and_selective_scan_picks_the_scan_by_need(monkeypatch):
    inputs = _inputs(40)
    with pytest.raises(RuntimeError, match='selective_scan_chunked'):
        _scan_all(selective_scan_inference, inputs)
    calls = []

    def spy(name):
        real = getattr(scan_module, name)

        def scan(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)
        monkeypatch.setattr(scan_module, name, scan)

    spy('selective_scan_inference')
    spy('selective_scan_chunked')
    with torch.no_grad():
        no_grad = _scan_all(selective_scan, inputs)
    with_grad = _scan_all(selective_scan, inputs)
    assert calls == ['selective_scan_inference', 'selective_scan_chunked']
    assert with_grad.requires_grad and not no_grad.requires_grad
    assert _rel(no_grad, with_grad.detach()) < F64_RTOL
    calls.clear()
    _scan_all(selective_scan, [t.to('meta') for t in _detached(inputs)])  # shapes only: the chunked scan
    assert calls == ['selective_scan_chunked']


@pytest.mark.skipif(not (HAS_MAMBA_KERNEL and torch.cuda.is_available()),
                    reason='mamba_ssm (source-only CUDA build) is not installed or no CUDA device: nothing to compare')
def test_dispatches_to_mamba_kernel_and_agrees_with_chunked():
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    inputs = [t.detach().float().cuda().requires_grad_() for t in _inputs(1000, d_inner=64, d_state=16)]
    kernel, kernel_grads = _outputs_and_grads(selective_scan_fn, inputs)
    ours, our_grads = _outputs_and_grads(selective_scan, inputs)
    chunked, chunked_grads = _outputs_and_grads(selective_scan_chunked, inputs)
    torch.testing.assert_close(ours, kernel)  # the dispatcher used the kernel
    assert all(torch.equal(o, k) for o, k in zip(our_grads, kernel_grads))
    assert _rel(chunked, kernel) < F32_RTOL
    assert all(_rel(c, k) < 1e-3 for c, k in zip(chunked_grads, kernel_grads))
