"""Distributed training on CPU with gloo and 2 processes, launched as a user would: torchrun.

Two processes with batch B equal one process with batch 2B on the same data; validation sharded across
ranks gives exactly the single-process numbers; a state saved by 2 processes resumes in 1; a finished run
leaves no gloo thread running into interpreter exit; a rank that fails ends the whole job quickly with the
rank's own message.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from script_helpers import Finished, run_in_process
from training_helpers import TINY_TRAIN, make_images

from srkit.core.checkpoint import load_checkpoint_file
from srkit.data.samplers import EnlargedSampler

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 240


def launch(script: str, opt: Path, nproc: int, *extra: str, cwd: Path,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess | Finished:
    """torchrun with ``nproc`` processes; a one-process reference run (no environment of its own) runs the
    script in this process instead, as ``python srkit/<script>`` would."""
    if nproc == 1 and env is None:
        return run_in_process(script, ['-opt', str(opt), *extra], cwd)
    if nproc == 1:
        cmd = [sys.executable, str(REPO / 'srkit' / script), '-opt', str(opt), *extra]
    else:
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}',
               str(REPO / 'srkit' / script), '-opt', str(opt), '--launcher', 'pytorch', *extra]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                          env=dict(os.environ, **(env or {})))


@pytest.fixture
def tiny(tmp_path):
    make_images(tmp_path / 'hr', 4)
    make_images(tmp_path / 'val', 3, seed=1)
    path = tmp_path / 'tiny.yml'
    path.write_text(TINY_TRAIN.format(root=tmp_path))
    return path


def weights(root: Path) -> dict:
    return load_checkpoint_file(root / 'models' / 'net_g_latest.pth')


def assert_close(a: dict, b: dict, atol: float = 2e-6) -> None:
    for key in ('params', 'params_ema'):
        for name in a[key]:
            assert torch.allclose(a[key][name], b[key][name], atol=atol, rtol=1e-4), f'{key}.{name}'


@pytest.mark.slow
def test_two_processes_equal_one_with_double_batch_and_resume_across_world_sizes(tmp_path, tiny):
    common = ['train.grad_accumulation=1', 'val.val_freq=100', 'train.total_iter=8']
    two = launch('train.py', tiny, 2, '--force_yml', *common, f'path.experiments_root={tmp_path}/two', cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one = launch('train.py', tiny, 1, '--force_yml', *common, 'datasets.train.batch_size_per_gpu=4',
                 f'path.experiments_root={tmp_path}/one', cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    assert_close(weights(tmp_path / 'two'), weights(tmp_path / 'one'))

    # a state written by 2 processes at iteration 4, resumed by 1 process (same global batch)
    resumed = tmp_path / 'resumed'
    first = launch('train.py', tiny, 2, '--force_yml', *common, 'train.total_iter=4',
                   f'path.experiments_root={resumed}', cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    second = launch('train.py', tiny, 1, '--auto_resume', '--force_yml', *common,
                    'datasets.train.batch_size_per_gpu=4', f'path.experiments_root={resumed}', cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert 'made by 2 processes, this run has 1' in second.stdout
    assert_close(weights(resumed), weights(tmp_path / 'one'))


@pytest.mark.slow
@pytest.mark.skipif(not Path('/proc/self/task').is_dir(), reason='lists threads from /proc')
def test_a_finished_run_stops_gloo_threads_before_the_interpreter_exits(tmp_path, tiny):
    """A gloo worker thread still alive when Python finalizes aborts its process if it then frees a tensor
    (terminate called without an active exception), so train.py's main must leave none behind."""
    script = tmp_path / 'train_then_list_threads.py'
    script.write_text('import os, sys\n'
                      'from srkit.train import main\n'
                      'main(sys.argv[1:])\n'
                      "tasks = os.listdir('/proc/self/task')\n"
                      "names = [open(f'/proc/self/task/{t}/comm').read().strip() for t in tasks]\n"
                      "with open(f\"threads_{os.environ['RANK']}.txt\", 'w') as f:\n"
                      "    f.write(' '.join(sorted(names)))\n")  # one file per rank: printed lines interleave
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', str(script),
           '-opt', str(tiny), '--launcher', 'pytorch', '--force_yml', 'train.total_iter=4', 'val.val_freq=2']
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert run.returncode == 0 and 'terminate called' not in run.stderr, run.stderr[-3000:]
    listed = [(tmp_path / f'threads_{rank}.txt').read_text() for rank in range(2)]
    assert all(listed) and not any('gloo' in names for names in listed), listed


@pytest.mark.slow
def test_sharded_validation_equals_single_process(tmp_path, tiny):
    torch.manual_seed(0)
    from srkit.core.registry import ARCH_REGISTRY
    net = ARCH_REGISTRY.get('EDSR')(num_feat=8, num_block=1, upscale=2)
    torch.save({'params': net.state_dict()}, tmp_path / 'w.pth')
    opt = tmp_path / 'test.yml'
    opt.write_text(f'''
name: sharded
scale: 2
datasets:
  test_1: {{name: val, type: HRBicubicDataset, dataroot_gt: {tmp_path}/val}}
  test_2: {{name: hr, type: HRBicubicDataset, dataroot_gt: {tmp_path}/hr}}
network_g: {{type: EDSR, num_feat: 8, num_block: 1, upscale: 2}}
path: {{pretrain_network_g: {tmp_path}/w.pth}}
val:
  pbar: false
  metrics:
    psnr: {{type: calculate_psnr, crop_border: 2, test_y_channel: true}}
    ssim: {{type: calculate_ssim, crop_border: 2, test_y_channel: true}}
''')
    results = {}
    for nproc in (1, 2):
        run = launch('test.py', opt, nproc, '--force_yml', f'path.results_root={tmp_path}/r{nproc}', cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        results[nproc] = json.loads((tmp_path / f'r{nproc}' / 'results.json').read_text())['datasets']
    assert results[1] == results[2]  # the same per-image values, in the same order, and the same means
    assert [len(d['per_image']) for d in results[2]] == [3, 4]


@pytest.mark.slow
def test_a_failing_rank_ends_the_job_quickly_with_its_message(tmp_path, tiny):
    # find the image that rank 1 reads first (and rank 0 does not), then corrupt it
    sampler = EnlargedSampler(4, seed=7, shuffle=True, enlarge_ratio=3, num_replicas=2, rank=1)
    sampler.set_epoch(0)
    first_of_rank1 = next(iter(sampler))[0]
    rank0 = EnlargedSampler(4, seed=7, shuffle=True, enlarge_ratio=3, num_replicas=2, rank=0)
    rank0.set_epoch(0)
    assert next(iter(rank0))[0] != first_of_rank1
    bad = sorted((tmp_path / 'hr').iterdir())[first_of_rank1]
    bad.write_bytes(bad.read_bytes()[:60])
    start = time.monotonic()
    run = launch('train.py', tiny, 2, '--force_yml', 'datasets.train.batch_size_per_gpu=1',
                 'train.grad_accumulation=1', cwd=tmp_path)
    elapsed = time.monotonic() - start
    assert run.returncode != 0
    assert bad.name in run.stderr and 'srkit: error:' in run.stderr
    assert elapsed < TIMEOUT / 2, f'the job took {elapsed:.0f} s to end'


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_and_the_run_resumes(tmp_path, tiny):
    common = ['train.total_iter=16', 'logger.save_checkpoint_freq=2', 'logger.print_freq=1', 'val.val_freq=100',
              'train.grad_accumulation=1']
    killed = tmp_path / 'killed'
    start = time.monotonic()  # rank 1 kills itself after iteration 5's step; rank 0 cannot finish iteration 6
    run = launch('train.py', tiny, 2, '--force_yml', *common, f'path.experiments_root={killed}', cwd=tmp_path,
                 env={'SRKIT_FAULT_POINTS': 'train_step:5', 'SRKIT_FAULT_RANK': '1'})
    elapsed = time.monotonic() - start
    assert run.returncode != 0
    assert 'SIGKILL' in run.stderr, run.stderr[-3000:]  # torchrun names the rank's death
    assert elapsed < TIMEOUT / 2, f'the job took {elapsed:.0f} s to end'
    assert sorted(int(p.stem) for p in (killed / 'training_states').glob('*.state')) == [2, 4]
    resumed = launch('train.py', tiny, 2, '--auto_resume', '--force_yml', *common,
                     f'path.experiments_root={killed}', cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'Resumed from {killed}/training_states/4.state at iteration 4' in resumed.stdout
    one = launch('train.py', tiny, 1, '--force_yml', *common, 'datasets.train.batch_size_per_gpu=4',
                 f'path.experiments_root={tmp_path}/one', cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    assert_close(weights(killed), weights(tmp_path / 'one'))


@pytest.mark.slow
def test_slurm_launcher_with_srun_environment(tmp_path, tiny):
    """Two processes started with the variables srun sets (no scontrol here: the node list is parsed)."""
    import os
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = dict(os.environ, SLURM_PROCID=str(rank), SLURM_NTASKS='2', SLURM_LOCALID=str(rank),
                   SLURM_NODELIST='localhost', MASTER_PORT=str(port), OMP_NUM_THREADS='1')
        env.pop('MASTER_ADDR', None)
        procs.append(subprocess.Popen(
            [sys.executable, str(REPO / 'srkit' / 'train.py'), '-opt', str(tiny), '--launcher', 'slurm',
             '--force_yml', 'train.total_iter=4', 'val.val_freq=4', f'path.experiments_root={tmp_path}/slurm'],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=TIMEOUT) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert 'batch 2 per process x 2 processes' in outputs[0][0]
    assert (tmp_path / 'slurm' / 'models' / 'net_g_latest.pth').exists()


@pytest.mark.slow
def test_a_gan_on_two_processes_equals_one_with_double_batch(tmp_path):
    """SRGANModel under DistributedDataParallel: network_d wrapped too, frozen while network_g's adversarial term
    backpropagates through it, network_g run without gradients while network_d trains alone (net_d_init_iters).
    SGD, so that a gradient of ~1e-9 cannot flip an Adam step; no LDL, whose mask is a threshold."""
    from test_gan_models import gan_data

    data = gan_data(tmp_path, ['train.total_iter=4', 'train.net_d_init_iters=1', 'train.ldl_opt=null',
                               'train.optim_g={type: SGD, lr: 0.01}', 'train.optim_d={type: SGD, lr: 0.01}'])
    opt = tmp_path / 'gan.yml'
    opt.write_text(json.dumps(data))  # JSON is YAML
    two = launch('train.py', opt, 2, '--force_yml', f'path.experiments_root={tmp_path}/two', cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    one = launch('train.py', opt, 1, '--force_yml', 'datasets.train.batch_size_per_gpu=4',
                 f'path.experiments_root={tmp_path}/one', cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    for net in ('net_g', 'net_d'):
        a, b = (load_checkpoint_file(tmp_path / run / 'models' / f'{net}_latest.pth')['params']
                for run in ('two', 'one'))
        assert all(torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5) for k in a), net
