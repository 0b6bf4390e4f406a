"""Property test of the sampler: ranks together serve exactly the single-process epoch (hypothesis).

hypothesis is imported here only, so a machine without it still collects and runs the rest of the suite.
"""
import pytest
from test_samplers import epoch

from srkit.data.samplers import EnlargedSampler

hypothesis = pytest.importorskip('hypothesis')
st = hypothesis.strategies


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(size=st.integers(1, 12), ratio=st.integers(1, 3), replicas=st.integers(1, 5),
                  seed=st.integers(0, 2 ** 40), shuffle=st.booleans())
def test_ranks_together_are_the_single_process_epoch(size, ratio, replicas, seed, shuffle):
    single = epoch(EnlargedSampler(size, seed, shuffle, ratio), 1)
    ranks = [epoch(EnlargedSampler(size, seed, shuffle, ratio, replicas, r), 1) for r in range(replicas)]
    assert len({len(keys) for keys in ranks}) == 1  # every rank runs the same number of steps
    by_position = {r + k * replicas: key for r, keys in enumerate(ranks) for k, key in enumerate(keys)}
    assert [by_position[p] for p in range(len(single))] == single
    padding = [by_position[p] for p in range(len(single), len(by_position))]
    assert len(padding) < replicas
    assert all(index == single[p % len(single)][0] for p, (index, _) in enumerate(padding, len(single)))
