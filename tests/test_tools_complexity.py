"""Activations, traced peak memory, latency, and the complexity table against the published figures."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from conftest import REPO
from torch import nn

from srkit.core.errors import SrkitError
from srkit.tools.complexity import count_activations, measure_latency, peak_memory_bytes
from srkit.tools.complexity_table import measure_complexity, read_table_csv, reference_input_hw, table_markdown


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / 'scripts' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def three_convs() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3, padding=1),
                         nn.Conv2d(8, 3, 3, padding=1), nn.Flatten(), nn.Linear(3 * 10 * 10, 5))


def test_activations_and_peak_memory_by_hand():
    net = three_convs()
    param_bytes = 4 * sum(p.numel() for p in net.parameters())
    # convolution outputs 8, 8, 3 channels of 10x10, and the linear layer's 5 outputs
    assert count_activations(net, (3, 10, 10)) == 800 + 800 + 300 + 5
    # in-place ReLU allocates nothing; the first conv's output is freed once the second's exists, so the
    # peak is input + two 8-channel maps (during the second conv), not the sum of every output
    assert peak_memory_bytes(net, (3, 10, 10)) == param_bytes + 4 * (300 + 800 + 800)
    assert peak_memory_bytes(net, (2, 3, 10, 10)) == param_bytes + 4 * 2 * (300 + 800 + 800)


class _Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * 2


def test_latency_times_the_runs_after_the_warmup():
    net = _Counting()
    assert measure_latency(net, (3, 4, 4), warmup=2, runs=5) > 0
    assert net.calls == 7


def test_reference_input_sizes():
    assert [reference_input_hw(s) for s in (2, 3, 4)] == [(360, 640), (240, 427), (180, 320)]
    assert reference_input_hw(4, same_size_output=True) == (720, 1280)


# Published params (K) and Multi-Adds (G) for a 1280x720 output (ARCHS.md; EIMN Multi-Adds as the authors'
# script prints them, which the paper truncates to whole G); None: not published.
# EIMN at every scale is checked by test_complexity.py; one row here checks the table's own input sizes.
PUBLISHED = {('IMDN', 2): (694, 158.8), ('IMDN', 3): (703, 71.5), ('IMDN', 4): (715, 40.9),
             ('EIMN_A', 4): (880, 47.7891), ('IMDN_RTC', 2): (20.19, None),
             ('ETDSForInference_M4C32', 2): (41.5, None), ('ETDSForInference_M4C32', 4): (54.1, None),
             ('ETDSForInference_M5C16', 3): (16.9, None), ('ETDSForInference_M7C48', 4): (170, None)}


@pytest.mark.parametrize('arch,scale', sorted(PUBLISHED))
def test_table_matches_published_figures_within_one_percent(arch, scale):
    row = measure_complexity(arch, scale)
    params_k, macs_g = PUBLISHED[arch, scale]
    assert row.params / 1e3 == pytest.approx(params_k, rel=0.01)
    if macs_g is not None:
        assert row.macs / 1e9 == pytest.approx(macs_g, rel=0.01)
    assert row.activations > 0 and row.peak_memory > 4 * row.params and row.latency_ms is None


def test_script_writes_markdown_and_csv(tmp_path, capsys):
    script = load_script('complexity')
    md, csv_path = tmp_path / 't.md', tmp_path / 't.csv'
    script.main(['--arch', 'IMDN_RTC', 'ETDSForInference_M5C16', '--scales', '2', '4', '--out', str(md), str(csv_path),
                 '--device', 'cpu', '--latency', '--warmup', '0', '--runs', '1'])
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith('[')]
    assert len(progress) == 4 and progress[0].startswith('[1/4] IMDN_RTC x2: 20.2 K params, ')
    assert all(', latency ' in line and ' s left)' in line for line in progress)
    rows = read_table_csv(csv_path)
    assert [(r.arch, r.scale) for r in rows] == [('IMDN_RTC', 2), ('IMDN_RTC', 4), ('ETDSForInference_M5C16', 2),
                                                  ('ETDSForInference_M5C16', 4)]
    assert all(r.latency_ms > 0 and r.device.startswith('cpu') for r in rows)
    assert md.read_text() == table_markdown(rows)
    assert '| ETDSForInference_M5C16 | x2 | 640x360 | 13.9 |' in md.read_text()


def test_script_on_a_cpu_measures_no_latency_by_default_and_reports_each_row(monkeypatch, capsys):
    """Latency is real 1280x720 forwards (minutes for a table on a CPU): off unless asked for or on a GPU."""
    script = load_script('complexity')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)  # a CPU-only machine, whatever runs the test

    def no_forward(*args, **kwargs):
        raise AssertionError('latency was measured by default on a CPU')

    monkeypatch.setattr('srkit.tools.complexity_table.measure_latency', no_forward)
    script.main(['--arch', 'IMDN_RTC', 'ETDSForInference_M5C16', '--scales', '2', '3'])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'latency not measured on cpu by default (--latency measures it)'
    assert [line.split(':')[0] for line in out[1:5]] == ['[1/4] IMDN_RTC x2', '[2/4] IMDN_RTC x3',
                                                         '[3/4] ETDSForInference_M5C16 x2',
                                                         '[4/4] ETDSForInference_M5C16 x3']
    assert 'latency' not in ''.join(out[1:5])
    assert all(line.endswith('| - | - |') for line in out if line.startswith('| ETDS') or line.startswith('| IMDN'))


def test_script_skips_unsupported_scales_and_refuses_bad_arguments(tmp_path, capsys):
    script = load_script('complexity')
    script.main(['--arch', 'IMDN_AS', '--scales', '2', '4', '--no-latency', '--out', str(tmp_path / 'as.csv')])
    assert 'skipped IMDN_AS x2: IMDN_AS supports scales [4]' in capsys.readouterr().out
    (row,) = read_table_csv(tmp_path / 'as.csv')
    assert (row.scale, row.input_h, row.input_w, row.latency_ms) == (4, 720, 1280, None)  # same-size output
    with pytest.raises(SrkitError, match='No architecture called "EIMN_X"'):
        script.main(['--arch', 'EIMN_X', '--no-latency'])
    with pytest.raises(SrkitError, match='.md or .csv'):
        script.main(['--arch', 'IMDN_RTC', '--scales', '2', '--no-latency', '--out', str(tmp_path / 't.txt')])
