"""How many CPU threads torch uses in each process: srkit picks the count, so a busy machine is not oversubscribed.

torch's default is one intra-op thread per core of the machine, whatever else runs there. On a machine whose cores
are busy every parallel op then waits for threads that get no core, and runs 9-25x slower (issue 18: the README
demo at 1.1 it/s instead of 27.8). The choice, first match wins:

1. the option ``num_threads`` (in the option file, or ``--force_yml num_threads=4``);
2. the environment variable ``SRKIT_NUM_THREADS``;
3. an ``OMP_NUM_THREADS`` in the environment (torch reads it too; srkit keeps it). torchrun sets it to 1 for
   every rank when it starts more than one and the user set none; 1 or 2 overrides it;
4. automatic: the CPUs this process may use, less the cores other processes keep busy, shared among the ranks
   on this node (see ``choose_threads``).
"""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import torch

from srkit.core.errors import OptionError

__all__ = ['ENV_VAR', 'choose_threads', 'apply_threads', 'available_cpus', 'cgroup_cpu_limit', 'busy_cores',
           'local_world_size', 'runnable_now']

ENV_VAR = 'SRKIT_NUM_THREADS'
CGROUP_CPU_MAX = Path('/sys/fs/cgroup/cpu.max')  # cgroup v2: "<quota> <period>" in microseconds, or "max <period>"
LOAD_TIME_CONSTANT_S = 60.0  # the 1-minute load average decays with this time constant
PROC_STAT = Path('/proc/stat')  # Linux: "procs_running N", the threads runnable at this instant
RUNNABLE_SAMPLES, RUNNABLE_INTERVAL_S = 5, 0.002  # the largest of 5 looks over 10 ms: a busy thread is rarely missed

logger = logging.getLogger('srkit')


def cgroup_cpu_limit(path: Path | None = None) -> int | None:
    """The CPUs a cgroup v2 quota allows (quota / period, rounded down, at least 1), or None when unlimited or
    unknown. Rounded down: a thread over the quota is throttled mid-op, and every other thread waits for it."""
    try:
        quota, period = (path or CGROUP_CPU_MAX).read_text(encoding='ascii').split()[:2]
        return None if quota == 'max' else max(1, int(quota) // int(period))
    except (OSError, ValueError):
        return None


def available_cpus() -> tuple[int, str]:
    """The CPUs this process may run on (its affinity mask, else the machine's count), capped by a cgroup quota;
    with a description of where the count came from."""
    try:
        cpus, source = len(os.sched_getaffinity(0)), 'CPUs this process may run on'
    except AttributeError:  # macOS and Windows have no affinity mask
        cpus, source = os.cpu_count() or 1, 'CPUs'
    limit = cgroup_cpu_limit()
    if limit is not None and limit < cpus:
        return limit, f'CPUs its cgroup quota allows ({cpus} {source})'
    return cpus, source


def runnable_now() -> int | None:
    """Threads runnable on the machine right now (``procs_running`` of /proc/stat, the largest of a few looks
    10 ms apart in all), or None where there is no /proc/stat."""
    counts = []
    for sample in range(RUNNABLE_SAMPLES):
        if sample:
            time.sleep(RUNNABLE_INTERVAL_S)
        try:
            text = PROC_STAT.read_text(encoding='ascii')
        except OSError:
            return None
        counts += [int(line.split()[1]) for line in text.splitlines() if line.startswith('procs_running ')]
    return max(counts) if counts else None


def busy_cores(ranks_here: int) -> tuple[int, float]:
    """About how many cores other processes keep busy, and the 1-minute load average it comes from.

    A heuristic. The load average counts runnable threads, averaged over about a minute, so it also holds what
    this process (and the other ranks started with it) did since they started. That share is estimated from this
    process's CPU time: a thread running for ``t`` seconds adds ``1 - exp(-t / 60)`` to the average. What is left,
    rounded, is the cores others are using. It lags both ways: a process that started a few seconds ago is not
    counted yet, and one that ended a few seconds ago still is (a test.py right after a training run would take
    one thread on an idle machine). So where Linux says how many threads are runnable right now, less this node's
    ranks, the smaller of the two counts.
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        return 0, 0.0
    own = ranks_here * (1.0 - math.exp(-time.process_time() / LOAD_TIME_CONSTANT_S))
    busy = max(0, math.floor(load - own + 0.5))
    now = runnable_now()
    return (busy if now is None else min(busy, max(0, now - ranks_here))), load


def local_world_size() -> int:
    """The processes torchrun started on this node (LOCAL_WORLD_SIZE), 1 otherwise."""
    value = os.environ.get('LOCAL_WORLD_SIZE', '')
    return int(value) if value.isdigit() and int(value) > 0 else 1


def _positive_count(text: str) -> int | None:
    return int(text) if text.strip().isdigit() and int(text) > 0 else None


def choose_threads(requested: int | None, ranks_here: int) -> tuple[int, str]:
    """The thread count for this process and a one-line reason (the order is in the module docstring).

    Automatic: ``(available CPUs - cores busy elsewhere) // ranks on this node``, at least 1. The busy cores are
    taken away before sharing, since every rank sees the same other processes. On an idle machine this is
    torch's own default (one thread per core) divided among the ranks.
    """
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise OptionError(f'Option "num_threads" must be a positive integer (or null: srkit chooses), got '
                              f'{requested!r}.', key='num_threads')
        return requested, 'option num_threads'
    env_value = os.environ.get(ENV_VAR)
    if env_value is not None:
        count = _positive_count(env_value)
        if count is None:
            raise OptionError(f'Environment variable {ENV_VAR}={env_value!r} must be a positive integer (the CPU '
                              f'threads of each process); unset it to let srkit choose.')
        return count, f'{ENV_VAR}={count}'
    omp_value = os.environ.get('OMP_NUM_THREADS')
    ignored = ''
    if omp_value is not None:
        count = _positive_count(omp_value.split(',')[0])  # OpenMP allows a list, one count per nesting level
        if count is not None:
            return count, f'OMP_NUM_THREADS={count} in the environment'
        ignored = f'; OMP_NUM_THREADS={omp_value!r} is not a thread count, ignored'
    cpus, source = available_cpus()
    busy, load = busy_cores(ranks_here)
    count = max(1, (cpus - busy) // ranks_here)
    shared = f', shared by {ranks_here} processes on this node' if ranks_here > 1 else ''
    return count, (f'automatic: {cpus} {source}, about {busy} kept busy by other processes (1-minute load '
                   f'{load:.2f}){shared}{ignored}; set num_threads or {ENV_VAR} to choose')


def apply_threads(requested: int | None, device: torch.device | str = 'cpu', ranks_here: int | None = None) -> str:
    """Choose the count, hand it to torch and log "Using N CPU threads (reason)"; returns that line.

    Call it once per process, early: torch accepts the inter-op count only before its first inter-op work (and
    only once), so a later call leaves that pool as it is. On a GPU run the threads still serve data loading
    and the CPU-side work, and the line says so.
    """
    count, reason = choose_threads(requested, local_world_size() if ranks_here is None else ranks_here)
    torch.set_num_threads(count)
    try:
        torch.set_num_interop_threads(count)
    except RuntimeError:  # already set, or inter-op work has started: the pool keeps its size
        pass
    line = f'Using {count} CPU thread{"s" if count > 1 else ""} ({reason})'
    if torch.device(device).type != 'cpu':
        line += f'; the network runs on {device}, so they serve data loading and CPU-side work'
    logger.info(line)
    return line
