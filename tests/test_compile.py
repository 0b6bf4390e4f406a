"""``train.compile`` for every registered architecture: its training step through torch.compile (inductor) gives
eager's output, finite gradients, and does not compile again on the next step.

Minutes per network on a CPU (inductor generates and builds C++ for the forward and the backward), so these run
only when asked: ``python -m pytest -m compile tests/test_compile.py`` (docs/GPU.md and docs/BENCHMARKS.md
record the last run). Nothing here names an architecture: registering one puts it under test.
"""
from __future__ import annotations

import copy

import pytest
import torch
from test_arch_registry import SR_NAMES, fit, runner, scales_of, seeded_rand, spec_of

from srkit.archs import create
from srkit.models.sr_model import compile_for_training

pytestmark = pytest.mark.compile
SIDE = 8  # LR patch side before the spec's pad_multiple / min_size: compilation time barely depends on it


@pytest.mark.parametrize('name', SR_NAMES)
def test_training_step_compiles_once_and_matches_eager(name: str) -> None:
    spec = spec_of(name)
    scale = scales_of(name)[0]
    torch.manual_seed(0)
    eager = create(name, None if spec.scale_in_forward else scale, **spec.example_args).train()
    compiled_net = copy.deepcopy(eager)
    step = compile_for_training(compiled_net)
    side = fit(SIDE, spec)
    x = seeded_rand(2, 3, side, side)

    def forward(net: torch.nn.Module) -> torch.Tensor:
        return runner(net, spec, scale)(x)

    trains = any(p.requires_grad for p in eager.parameters())  # a fixed upsampler (Bicubic) has nothing to train
    torch.manual_seed(1)  # the same dropout / drop-path draws in both
    expected = forward(eager)
    torch.manual_seed(1)
    out = runner(step, spec, scale)(x)  # type: ignore[arg-type]
    if trains:
        expected.abs().mean().backward()
        out.abs().mean().backward()
    tolerance = 1e-4 * max(1.0, float(expected.abs().max()))
    assert (out - expected).abs().max() <= tolerance, 'the compiled forward differs from eager'
    for (key, a), b in zip(eager.named_parameters(), compiled_net.parameters()):
        if a.grad is not None:
            assert b.grad is not None and torch.isfinite(b.grad).all(), key
    with torch._dynamo.config.patch(error_on_recompile=True):  # a second step runs the same graph
        again = runner(step, spec, scale)(x)  # type: ignore[arg-type]
        if trains:
            again.abs().mean().backward()
