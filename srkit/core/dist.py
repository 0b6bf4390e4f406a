"""torch.distributed set-up and the few collectives srkit needs; every helper is a no-op in one process.

Launchers: ``none`` (one process), ``pytorch`` (torchrun: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT
from the environment) and ``slurm`` (srun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, the first host of
SLURM_NODELIST as master). nccl on CUDA, gloo on CPU.
"""
from __future__ import annotations

import datetime
import importlib
import os
import subprocess
import traceback
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist

from srkit.core.errors import SrkitError

__all__ = ['DistContext', 'init_distributed', 'barrier', 'all_gather_objects', 'broadcast_object', 'any_rank',
           'cleanup', 'select_device']


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def select_device(request: str = 'auto', local_rank: int = 0, *, source: str = 'device') -> torch.device:
    """The device a process runs on: ``auto`` is this process's GPU (``local_rank``) when CUDA is available,
    else the CPU; ``cpu``, ``cuda`` and ``cuda:N`` are taken as asked, and asking for CUDA on a machine
    without it is a user error naming ``source`` (the flag or option that asked)."""
    if request == 'auto':
        if torch.cuda.is_available():
            return torch.device('cuda', local_rank % torch.cuda.device_count())
        return torch.device('cpu')
    try:
        device = torch.device(request)
    except RuntimeError:
        raise SrkitError(f'{source} {request}: not a device (auto, cpu, cuda or cuda:N).') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SrkitError(f'{source} {request}: CUDA is not available on this machine; use cpu.')
    return device


def init_distributed(launcher: str, backend: str | None = None, port: int = 29500,
                     timeout_s: int = 600) -> DistContext:
    if launcher == 'none':
        return DistContext()
    if launcher == 'pytorch':
        env = _require_env(('RANK', 'WORLD_SIZE', 'LOCAL_RANK'), 'torchrun')
        rank, world, local = int(env['RANK']), int(env['WORLD_SIZE']), int(env['LOCAL_RANK'])
    elif launcher == 'slurm':
        env = _require_env(('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID', 'SLURM_NODELIST'), 'srun')
        rank, world, local = int(env['SLURM_PROCID']), int(env['SLURM_NTASKS']), int(env['SLURM_LOCALID'])
        os.environ.setdefault('MASTER_ADDR', _first_slurm_host(env['SLURM_NODELIST']))
        os.environ.setdefault('MASTER_PORT', str(port))
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local))
    else:
        raise SrkitError(f'--launcher must be none, pytorch or slurm, got {launcher!r}.')
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local % torch.cuda.device_count())
    # Its functions take ``group=group.WORLD`` as a default, bound when the module is first imported (DDP
    # imports it, through torch._dynamo). Imported once the group exists, they would keep the group, and its
    # gloo threads, alive past destroy_process_group until interpreter teardown (see cleanup).
    importlib.import_module('torch.distributed.nn.functional')
    torch_dist.init_process_group(backend or ('nccl' if use_cuda else 'gloo'), rank=rank, world_size=world,
                                  timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(rank, world, local)


def _require_env(names: tuple[str, ...], tool: str) -> dict[str, str]:
    missing = [n for n in names if n not in os.environ]
    if missing:
        raise SrkitError(f'This launcher expects {", ".join(missing)} in the environment: start the job with '
                         f'{tool}.')
    return {n: os.environ[n] for n in names}


def _first_slurm_host(nodelist: str) -> str:
    try:
        out = subprocess.run(['scontrol', 'show', 'hostnames', nodelist], capture_output=True, text=True,
                             check=True, timeout=30).stdout.split()
        return out[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return nodelist.split(',')[0].split('[')[0]


def barrier() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order ([obj] in one process)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return [obj]
    gathered: list[Any] = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(gathered, obj)
    return gathered


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (one all-reduce; ``flag`` itself in one process)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return flag
    device = torch.device('cuda', torch.cuda.current_device()) if torch_dist.get_backend() == 'nccl' else None
    value = torch.tensor([int(flag)], device=device)
    torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return obj
    holder = [obj]
    torch_dist.broadcast_object_list(holder, src=src)
    return holder[0]


def cleanup(error: BaseException | None = None) -> None:
    """Leave the process group, after a finished run or one that failed with ``error``.

    After a finished run the ranks leave together (none closes its connections while a peer still waits on
    them); after a failure this rank leaves at once, so that the launcher stops the others instead of this rank
    waiting for them. Either way the group is freed here, which joins gloo's worker threads while Python is
    intact: one still running when the interpreter finalizes aborts the process if it then frees a tensor
    (docs/DISTRIBUTED.md, "Clean exits"). So the caller must hold no DDP model by now: DDP's reducer keeps the
    group, and would free it later while holding the GIL, which a worker may be waiting for. The frames of
    ``error``'s traceback, which still hold the trainer, are cleared for that reason.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    if error is not None:
        _clear_frames(error)
    try:
        if error is None:
            torch_dist.barrier()
    finally:
        torch_dist.destroy_process_group()


def _clear_frames(error: BaseException) -> None:
    """Drop the local variables of the frames that ``error``, and the exceptions it chains, went through."""
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        exc = pending.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        pending += [exc.__cause__, exc.__context__]
