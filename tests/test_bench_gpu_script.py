"""benchmarks/bench_gpu.py (loaded from its file, run through its main) runs on a CPU in --tiny mode, so it is
exercised before it meets a GPU; it covers every registered family with a preset that exists, and refuses what it
cannot do with a message."""
from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from srkit.archs import ARCH_REGISTRY, arch_spec

SCRIPT = Path(__file__).resolve().parents[1] / 'benchmarks' / 'bench_gpu.py'


@pytest.fixture(scope='module')
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location('bench_gpu', SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_tiny_cpu_run_measures_two_families_and_writes_json(bench, tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert bench.main(['--device', 'cpu', '--tiny', '--families', 'espcn', 'fsrcnn', '--json', str(out)]) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report['setup']['tiny'] and report['setup']['device'] == 'CPU'
    rows = {row['family']: row for row in report['rows']}
    assert list(rows) == ['espcn', 'fsrcnn']
    for family, preset in (('espcn', 'ESPCN'), ('fsrcnn', 'FSRCNN')):
        row = rows[family]
        assert row['preset'] == preset and row['params'] > 0 and row['note'] == ''
        assert (row['lr_patch'], row['batch'], row['precision']) == (16, 2, 'bf16')  # tiny sizes; no fp16 on a CPU
        assert row['train_its'] > 0 and row['infer_ms'] > 0
        assert row['train_peak_mib'] is None and row['infer_peak_mib'] is None  # CUDA's allocator only
        assert f'| {family} | {preset} | {row["params"]:,} | 16 x 2 | bf16 | yes |' in table


def test_every_family_is_covered_once_with_a_registered_preset(bench):
    families = bench.families()
    listed = [name for names in families.values() for name in names]
    assert sorted(listed) == sorted(n for n in ARCH_REGISTRY.names() if not arch_spec(n).discriminator)
    assert set(bench.RECIPES) | set(bench.NOT_MEASURED) <= set(families)
    for family, names in families.items():
        if family in bench.NOT_MEASURED:
            continue
        recipe = bench.recipe_for(family, names)
        spec = arch_spec(recipe.preset)
        assert recipe.preset in names, f'{family}: {recipe.preset} is not one of its presets'
        assert spec.scale_in_forward or spec.supports_scale(bench.SCALE), f'{recipe.preset} has no x4'
        assert recipe.lr_patch >= 16 and recipe.batch >= 1


def test_an_unknown_family_is_refused_naming_the_known_ones(bench, capsys):
    assert bench.main(['--device', 'cpu', '--tiny', '--families', 'edsr', 'nosuch']) == 2
    err = capsys.readouterr().err
    assert 'Unknown families nosuch' in err and 'edsr' in err and 'swinir' in err


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message given where CUDA is absent')
def test_asking_for_cuda_without_it_says_what_to_do(bench, capsys):
    assert bench.main(['--families', 'espcn']) == 2
    assert 'CUDA is not available here' in capsys.readouterr().err
