"""srkit chooses torch's CPU thread count (issue 18): the override order, the automatic count and where it is used."""
import logging
import os
import textwrap

import pytest
import torch

from srkit.config.options import parse_options, parse_yaml_text
from srkit.core import threads
from srkit.core.dist import DistContext
from srkit.core.errors import DataError, OptionError
from srkit.core.threads import apply_threads, available_cpus, busy_cores, cgroup_cpu_limit, choose_threads


@pytest.fixture(autouse=True)
def machine(monkeypatch, tmp_path):
    """A machine with 8 CPUs, no cgroup quota, an idle load, no /proc/stat and no thread variables (pytest-xdist sets
    OMP_NUM_THREADS); torch's setters record instead of changing the test process."""
    for name in ('SRKIT_NUM_THREADS', 'OMP_NUM_THREADS', 'LOCAL_WORLD_SIZE'):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(threads, 'CGROUP_CPU_MAX', tmp_path / 'no_cgroup')
    monkeypatch.setattr(threads, 'PROC_STAT', tmp_path / 'no_proc_stat')  # the load average alone, unless a test
    monkeypatch.setattr(os, 'getloadavg', lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(threads.time, 'process_time', lambda: 0.0)
    calls = {}
    monkeypatch.setattr(torch, 'set_num_threads', lambda n: calls.__setitem__('intra', n))
    monkeypatch.setattr(torch, 'set_num_interop_threads', lambda n: calls.__setitem__('interop', n))
    return calls


def load(monkeypatch, one_minute):
    monkeypatch.setattr(os, 'getloadavg', lambda: (one_minute, 0.0, 0.0))


def test_the_option_wins_then_the_variable_then_omp_then_automatic(monkeypatch):
    monkeypatch.setenv('SRKIT_NUM_THREADS', '3')
    monkeypatch.setenv('OMP_NUM_THREADS', '2')
    assert choose_threads(5, 1) == (5, 'option num_threads')
    assert choose_threads(None, 1) == (3, 'SRKIT_NUM_THREADS=3')
    monkeypatch.delenv('SRKIT_NUM_THREADS')
    assert choose_threads(None, 1)[0] == 2 and 'OMP_NUM_THREADS=2' in choose_threads(None, 1)[1]
    monkeypatch.delenv('OMP_NUM_THREADS')
    count, reason = choose_threads(None, 1)
    assert count == 8 and reason.startswith('automatic: 8 CPUs')


def test_omp_lists_take_the_first_level_and_nonsense_is_ignored(monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '4,2')
    assert choose_threads(None, 1)[0] == 4
    monkeypatch.setenv('OMP_NUM_THREADS', 'lots')
    count, reason = choose_threads(None, 1)
    assert count == 8 and "OMP_NUM_THREADS='lots' is not a thread count, ignored" in reason


@pytest.mark.parametrize('text, cpus', [('200000 100000\n', 2), ('150000 100000', 1), ('50000 100000', 1),
                                        ('max 100000', None), ('garbage', None), ('', None)])
def test_cgroup_quota_is_read_from_cpu_max(tmp_path, text, cpus):
    path = tmp_path / 'cpu.max'
    path.write_text(text)
    assert cgroup_cpu_limit(path) == cpus
    assert cgroup_cpu_limit(tmp_path / 'absent') is None


def test_the_smaller_of_affinity_and_cgroup_quota_counts(monkeypatch, tmp_path):
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 3, 5}, raising=False)
    assert available_cpus()[0] == 3
    (tmp_path / 'cpu.max').write_text('200000 100000')
    monkeypatch.setattr(threads, 'CGROUP_CPU_MAX', tmp_path / 'cpu.max')
    cpus, source = available_cpus()
    assert cpus == 2 and 'cgroup quota' in source
    monkeypatch.delattr(os, 'sched_getaffinity', raising=False)  # macOS / Windows: the machine's count
    monkeypatch.setattr(os, 'cpu_count', lambda: 1)
    assert available_cpus() == (1, 'CPUs')


def test_cores_busy_elsewhere_are_subtracted(monkeypatch):
    load(monkeypatch, 3.2)
    assert busy_cores(1) == (3, 3.2)
    count, reason = choose_threads(None, 1)
    assert count == 5 and 'about 3 kept busy' in reason and '3.20' in reason
    load(monkeypatch, 0.4)
    assert choose_threads(None, 1)[0] == 8  # rounded: a light load takes no core


def test_this_process_own_share_of_the_load_is_not_counted(monkeypatch):
    """After ten minutes of CPU time the load average holds about one thread of this process: not another's."""
    load(monkeypatch, 1.0)
    assert busy_cores(1)[0] == 1
    monkeypatch.setattr(threads.time, 'process_time', lambda: 600.0)
    assert busy_cores(1)[0] == 0
    load(monkeypatch, 2.1)
    assert busy_cores(2)[0] == 0  # two ranks started together: both shares are ours


def runnable(monkeypatch, tmp_path, *counts: int) -> None:
    """/proc/stat whose procs_running reads ``counts`` in turn (the last one from then on)."""
    stat = tmp_path / 'stat'
    looks = iter(counts)
    monkeypatch.setattr(threads, 'PROC_STAT', stat)
    def look(count: int) -> None:
        stat.write_text(f'cpu 1 2\nprocs_running {count}\nprocs_blocked 0\n')

    monkeypatch.setattr(threads.time, 'sleep', lambda seconds: look(next(looks, counts[-1])))
    look(next(looks))


def test_a_load_that_has_ended_is_not_counted(monkeypatch, tmp_path):
    """The load average still holds a job that ended seconds ago; nothing else runs now: all cores are free."""
    load(monkeypatch, 3.2)
    runnable(monkeypatch, tmp_path, 1)  # this process alone
    assert busy_cores(1) == (0, 3.2) and choose_threads(None, 1)[0] == 8


def test_runnable_now_is_the_largest_of_several_looks_and_never_raises_the_load(monkeypatch, tmp_path):
    load(monkeypatch, 3.2)
    runnable(monkeypatch, tmp_path, 1, 3, 2, 1, 1)  # one look in five sees two other threads
    assert threads.runnable_now() == 3
    runnable(monkeypatch, tmp_path, 1, 3, 2, 1, 1)
    assert busy_cores(1) == (2, 3.2)
    runnable(monkeypatch, tmp_path, 9)  # a burst right now above the minute's average: the average stands
    assert busy_cores(1) == (3, 3.2)
    runnable(monkeypatch, tmp_path, 3)  # two ranks of one torchrun job, both running: neither counts as busy
    assert busy_cores(2) == (1, 3.2)


def test_torchrun_ranks_share_the_free_cores(monkeypatch):
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '4')
    assert threads.local_world_size() == 4
    count, reason = choose_threads(None, threads.local_world_size())
    assert count == 2 and 'shared by 4 processes' in reason
    load(monkeypatch, 2.0)
    assert choose_threads(None, 2)[0] == 3  # (8 - 2 busy) // 2
    monkeypatch.setenv('LOCAL_WORLD_SIZE', 'x')
    assert threads.local_world_size() == 1


@pytest.mark.parametrize('one_minute, ranks', [(20.0, 1), (0.0, 16), (7.6, 3)])
def test_never_fewer_than_one_thread(monkeypatch, one_minute, ranks):
    load(monkeypatch, one_minute)
    assert choose_threads(None, ranks)[0] == 1


def test_no_load_average_means_no_busy_cores(monkeypatch):
    def unavailable():
        raise OSError('no load average')
    monkeypatch.setattr(os, 'getloadavg', unavailable)
    assert busy_cores(1) == (0, 0.0)


@pytest.mark.parametrize('value', [0, -2, 'abc', 2.5, True])
def test_an_invalid_option_names_num_threads(value):
    with pytest.raises(OptionError, match='Option "num_threads" must be a positive integer') as caught:
        choose_threads(value, 1)
    assert caught.value.key == 'num_threads'


@pytest.mark.parametrize('value', ['0', '-1', 'abc', '', '2.5'])
def test_an_invalid_variable_names_srkit_num_threads(monkeypatch, value):
    monkeypatch.setenv('SRKIT_NUM_THREADS', value)
    with pytest.raises(OptionError, match=f"SRKIT_NUM_THREADS={value!r} must be a positive integer"):
        choose_threads(None, 1)


@pytest.fixture
def srkit_log(caplog):
    """The srkit logger's INFO records (conftest keeps them propagating to caplog)."""
    caplog.set_level(logging.INFO, logger='srkit')
    return caplog


def test_apply_sets_both_pools_and_logs_the_choice(machine, srkit_log, monkeypatch):
    load(monkeypatch, 5.0)
    line = apply_threads(None, 'cpu', ranks_here=1)
    assert machine == {'intra': 3, 'interop': 3}
    assert line.startswith('Using 3 CPU threads (automatic: 8 CPUs') and line in srkit_log.messages
    assert apply_threads(1, 'cpu').startswith('Using 1 CPU thread (option num_threads)')


def test_apply_survives_an_interop_pool_already_in_use(machine, monkeypatch):
    def refuse(count):
        raise RuntimeError('cannot set number of interop threads after parallel work has started')
    monkeypatch.setattr(torch, 'set_num_interop_threads', refuse)
    apply_threads(2, 'cpu')
    assert machine == {'intra': 2}


def test_apply_on_a_gpu_run_says_what_the_threads_do(monkeypatch):
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')
    line = apply_threads(None, 'cuda:1')
    assert line.startswith('Using 4 CPU threads') and 'runs on cuda:1' in line and 'data loading' in line


TEST_OPTIONS = textwrap.dedent('''
    name: threads
    scale: 2
    num_gpu: 0
    network_g: {type: EDSR_tiny, upscale: 2}
    datasets:
      train: {name: T, type: HRBicubicDataset, dataroot_gt: /nonexistent/gt, gt_size: 16, batch_size_per_gpu: 1}
      test_1: {name: S, type: PairedImageDataset, dataroot_gt: /nonexistent/gt, dataroot_lq: /nonexistent/lq}
    train:
      total_iter: 1
      optim_g: {type: Adam, lr: 1e-4}
      pixel_opt: {type: L1Loss}
''')


def test_the_option_file_types_num_threads():
    options = parse_options({**parse_yaml_text(TEST_OPTIONS), 'num_threads': 3}, is_train=False)
    assert options.num_threads == 3
    assert parse_options(parse_yaml_text(TEST_OPTIONS), is_train=False).num_threads is None
    with pytest.raises(OptionError, match='Option "num_threads" must be integer'):
        parse_options({**parse_yaml_text(TEST_OPTIONS), 'num_threads': 'many'}, is_train=False)


def test_train_py_applies_the_option_and_logs_it_in_the_run_log(machine, tmp_path):
    from srkit.engine.trainer import Trainer
    data = {**parse_yaml_text(TEST_OPTIONS), 'num_threads': 2, 'path': {'experiments_root': str(tmp_path / 'e')}}
    with pytest.raises(DataError):  # the training set is absent: the threads were set before
        Trainer(parse_options(data, is_train=True), DistContext())
    assert machine['intra'] == 2
    log = next((tmp_path / 'e').glob('train_threads_*.log')).read_text()
    assert 'Using 2 CPU threads (option num_threads)' in log


def test_test_py_refuses_a_bad_count_before_making_anything(tmp_path, monkeypatch):
    from srkit.engine.tester import run_test
    monkeypatch.setenv('SRKIT_NUM_THREADS', '0')
    data = {**parse_yaml_text(TEST_OPTIONS), 'path': {'results_root': str(tmp_path / 'r')}}
    with pytest.raises(OptionError, match='SRKIT_NUM_THREADS'):
        run_test(parse_options(data, is_train=False))
    assert not (tmp_path / 'r').exists()
