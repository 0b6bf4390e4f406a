"""benchmarks/bench_igconv.py and bench_igconv_training.py (loaded from their files): the pieces their figures
rest on. The latency table times the instantiated form of the authors' SMFANetIG(Plus), so that form must be
the same function; the budget table counts the multi-scale model's slowest scale against the sum of the three
single-scale runs."""
from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / 'benchmarks'


def _load(name: str) -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f'{name}.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope='module')
def latency() -> Iterator[ModuleType]:
    yield from _load('bench_igconv')


@pytest.fixture(scope='module')
def training() -> Iterator[ModuleType]:
    yield from _load('bench_igconv_training')


def test_sizes_are_width_by_height(latency):
    assert latency.parse_size('64') == (64, 64)
    assert latency.parse_size('320x180') == (180, 320)


@pytest.mark.parametrize('upsampler', ['igconv', 'igconv_plus'])
def test_instantiated_smfanet_ig_is_the_same_function_with_a_plain_conv_tail(latency, upsampler):
    torch.manual_seed(0)
    net = latency.multi_scale('SMFANet', upsampler).eval()
    assert type(net).__name__ == latency.AUTHORS_IG['SMFANet'][upsampler]
    x = torch.rand(1, 3, 16, 12)
    with torch.no_grad():
        for scale in (2, 3):
            baked, forward = latency.instantiated(net, scale)
            assert isinstance(baked.to_img[0], torch.nn.Conv2d)  # the tail that is timed: conv + shuffle
            out = forward(x)
            assert out.shape == (1, 3, 16 * scale, 12 * scale)
            torch.testing.assert_close(out, net(x, scale), rtol=1e-4, atol=1e-5)


def test_smfanet_parameters_row_uses_the_authors_classes(latency):
    row = next(r for r in latency.parameter_table(['SMFANet']) if r.startswith('| SMFANet'))
    three = sum(latency.params(latency.host({'type': 'SMFANet'}, s)) for s in (2, 3, 4))
    plus = latency.params(latency.multi_scale('SMFANet', 'igconv_plus'))
    assert f'{three / 1e6:.3f} M' in row and f'{plus / 1e6:.3f} M' in row and plus > three


def test_first_reaching_is_the_first_validation_at_or_above(training):
    curve = {100: {2: 30.0}, 200: {2: 33.0}, 300: {2: 32.0}, 400: {2: 34.0}}
    assert training.first_reaching(curve, 2, 33.0) == 200
    assert training.first_reaching(curve, 2, 33.5) == 400
    assert training.first_reaching(curve, 2, 35.0) is None


def test_budget_counts_the_slowest_scale_against_the_sum_of_three_runs(training):
    bicubic = {2: 30.0, 3: 27.0, 4: 25.0}
    multi = {it: {2: 30.0 + it / 100, 3: 27.0 + it / 200, 4: 25.0 + it / 400} for it in (100, 200, 300, 400)}
    single = {s: {it: {s: bicubic[s] + it / 400} for it in (100, 200, 300, 400)} for s in (2, 3, 4)}
    rows = training.budget_table(multi, single, bicubic, [0.5, 1.0])
    plus_one = [r for r in rows if r.startswith('| bicubic + 1 |')]
    assert [r.strip('| ').split(' | ')[3:5] for r in plus_one[:3]] == [['100', '400'], ['200', '400'], ['400', '400']]
    assert '| 400 (the slowest scale) | 1200 (the sum) (0.33x) |' in plus_one[3]
    plus_half = next(r for r in rows if r.startswith('| bicubic + 0.5 | all three'))
    assert '| 200 (the slowest scale) | 600 (the sum) (0.33x) |' in plus_half
    # never reached by a single-scale run: no sum, no ratio
    single[4] = {it: {4: 25.2} for it in (100, 200, 300, 400)}
    rows = training.budget_table(multi, single, bicubic, [0.5])
    row = next(r for r in rows if r.startswith('| bicubic + 0.5 | all'))
    assert row.endswith('| - (the sum) |')
