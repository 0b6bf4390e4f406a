"""The re-parameterisation identity of the ETDS appendix (the authors' scripts/validation/reparameterization.py):
a conv followed by a conv is one conv with the composed kernel, for every kernel shape; srkit's converters
fold layers with srkit.ops.conv_compose."""
from __future__ import annotations

import random

import pytest
import torch
from torch.nn import functional as F

from srkit.ops.conv_compose import compose_convs

# (c1, c2, c3, k1, k2, k3, k4): w1 is c1 x c2 x k1 x k2 (applied second), w2 is c2 x c3 x k3 x k4 (first);
# the authors' four fixed cases, then random ones as in their script (odd kernels up to 15, up to 64 channels).
FIXED = [(32, 32, 32, 1, 1, 3, 3), (32, 32, 32, 3, 3, 1, 1), (32, 32, 32, 3, 1, 1, 3), (32, 32, 32, 1, 3, 3, 1)]
_draw = random.Random(0)
RANDOM = [(_draw.randint(1, 64), _draw.randint(1, 64), _draw.randint(1, 64),
           *(_draw.randint(0, 7) * 2 + 1 for _ in range(4))) for _ in range(20)]


@pytest.mark.parametrize('shape', FIXED + RANDOM, ids=lambda s: 'x'.join(map(str, s)))
def test_two_convs_are_one(shape: tuple[int, ...]) -> None:
    c1, c2, c3, k1, k2, k3, k4 = shape
    gen = torch.Generator().manual_seed(sum(shape))
    w1, b1 = torch.randn(c1, c2, k1, k2, generator=gen, dtype=torch.float64), torch.rand(c1, generator=gen,
                                                                                             dtype=torch.float64)
    w2, b2 = torch.randn(c2, c3, k3, k4, generator=gen, dtype=torch.float64), torch.rand(c2, generator=gen,
                                                                                             dtype=torch.float64)
    x = torch.rand(1, c3, 48, 48, generator=gen, dtype=torch.float64)
    w3, b3 = compose_convs(w1, b1, w2, b2)
    assert w3.shape == (c1, c3, k1 + k3 - 1, k2 + k4 - 1)
    two, one = F.conv2d(F.conv2d(x, w2, b2), w1, b1), F.conv2d(x, w3, b3)
    assert torch.allclose(one, two, rtol=1e-10, atol=1e-9 * two.abs().max().item())


def test_kernels_that_do_not_chain_are_refused() -> None:
    with pytest.raises(ValueError, match='do not chain'):
        compose_convs(torch.zeros(4, 3, 3, 3), torch.zeros(4), torch.zeros(5, 2, 1, 1), torch.zeros(5))
