"""What only a GPU can check: fp16 AMP with its GradScaler, bf16, channels_last, cuDNN determinism and exact resume,
torch.compile, the CUDA prefetcher, a one-process nccl run, mamba_ssm's kernel, and GAN training under fp16.

Every test is marked ``cuda`` (``python -m pytest -m cuda -q`` selects them) and skips itself where CUDA is not
available, which is every CI machine: they run when a session is lent a GPU (docs/GPU.md). Small runs of the
tiny training set-up (tests/training_helpers.py) keep the whole file to a few minutes, most of it torch.compile.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from training_helpers import tiny_options

import srkit.archs.mma_arch as mma_arch
import srkit.ops.selective_scan as scan_module
from srkit.archs import create
from srkit.config.options import Options, parse_options
from srkit.core.checkpoint import load_checkpoint_file
from srkit.core.dist import DistContext
from srkit.core.errors import OptionError
from srkit.engine.trainer import Trainer
from srkit.models.sr_model import SRModel
from tests.test_gan_models import gan_data

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason='no CUDA device here: these tests run on a GPU machine, which a session gets from the '
                              'device tool when its task is lent one (docs/GPU.md)'),
]

REPO = Path(__file__).resolve().parents[1]
SHORT = ['train.total_iter=4', 'val.val_freq=100', 'logger.save_checkpoint_freq=100']


@pytest.fixture
def exact_cuda():
    """cuDNN's deterministic algorithms, no autotuner and no TF32 convolutions, restored afterwards: runs then
    repeat bit for bit, and a comparison sees only the difference under test. srkit sets none of these flags
    itself (torch's defaults: deterministic off, benchmark off, TF32 convolutions on)."""
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32 = True, False, False
    yield
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32 = saved


def run(trainer: Trainer) -> list[dict[str, Any]]:
    """Train to the end, recording each step's losses and the devices its micro-batches arrived on."""
    steps: list[dict[str, Any]] = []
    real_step = trainer.model.train_step

    def step(micro: list[dict[str, Any]], iteration: int) -> dict[str, float] | None:
        devices = {batch['lq'].device.type for batch in micro}
        losses = real_step(micro, iteration)
        steps.append({'losses': losses, 'devices': devices})
        return losses

    trainer.model.train_step = step  # type: ignore[method-assign]
    trainer.train()
    return steps


def train(options: Options) -> tuple[Trainer, list[dict[str, Any]]]:
    trainer = Trainer(options, DistContext())
    return trainer, run(trainer)


def state_of(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def assert_trained(before: dict[str, torch.Tensor], net: torch.nn.Module) -> None:
    after = state_of(net)
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point()), 'non-finite weights'
    assert any(not torch.equal(before[k], after[k]) for k in before), 'no weight changed'


def test_fp16_amp_scales_the_loss_and_trains_finite_float32_weights(tmp_path):
    options = tiny_options(tmp_path, ['train.amp=fp16', 'train.total_iter=6', 'val.val_freq=6'])
    trainer = Trainer(options, DistContext())
    before = state_of(trainer.model.net_g)
    scaled: list[float] = []
    scale = trainer.model.scaler.scale

    def recording_scale(loss: torch.Tensor) -> torch.Tensor:
        out = scale(loss)
        scaled.append(float(out.detach()) / float(loss.detach()))
        return out

    trainer.model.scaler.scale = recording_scale  # type: ignore[method-assign]
    trainer.train()
    scaler = trainer.model.scaler
    assert trainer.device.type == 'cuda' and scaler.is_enabled()
    # GradScaler starts at 2**16 and halves on each step whose gradients overflow: 12 micro-batches of 6 steps
    # leave it far above 1; it does not grow back within growth_interval (2000) steps
    assert 2.0 ** 10 <= scaler.get_scale() <= 2.0 ** 16
    assert len(scaled) == 12 and all(ratio >= 2.0 ** 10 for ratio in scaled), scaled
    assert all(p.dtype == torch.float32 for p in trainer.model.net_g.parameters())
    assert_trained(before, trainer.model.net_g)
    state = load_checkpoint_file(tmp_path / 'exp' / 'training_states' / '6.state')
    assert state['scaler']['scale'] == scaler.get_scale()
    assert trainer.state.best['tiny_val']['psnr'][1] == 6  # validation ran under autocast on the GPU


def test_fp16_with_gradient_clipping_survives_an_overflowing_step(tmp_path):
    options = tiny_options(tmp_path, [*SHORT, 'train.amp=fp16', 'train.grad_clip_norm=1.0',
                                      'train.grad_accumulation=1'])
    trainer = Trainer(options, DistContext())
    calls = []

    def overflow_once(grad: torch.Tensor) -> torch.Tensor:  # what an fp16 overflow does to a gradient
        calls.append(1)
        return grad * float('inf') if len(calls) == 1 else grad

    trainer.model.net_g.conv_first.weight.register_hook(overflow_once)
    start = trainer.model.scaler.get_scale()
    steps = run(trainer)
    assert all(step['losses'] is not None for step in steps)  # the scaler skips an overflowed step, not srkit
    assert trainer.model.scaler.get_scale() == start / 2  # GradScaler halves the scale after an overflow


def test_fp16_is_refused_for_a_network_that_is_not_fp16_safe(tmp_path):
    options = tiny_options(tmp_path, ['train.amp=fp16', 'network_g={type: HiT_SRF}'])
    with pytest.raises(OptionError, match='not fp16-safe; use bf16'):
        SRModel(options, torch.device('cuda'))


def test_bf16_amp_trains_without_a_scaler_close_to_float32(tmp_path):
    _, full = train(tiny_options(tmp_path / 'fp32', SHORT))
    half = Trainer(tiny_options(tmp_path / 'bf16', [*SHORT, 'train.amp=bf16']), DistContext())
    before = state_of(half.model.net_g)
    steps = run(half)
    assert not half.model.scaler.is_enabled() and half.model.scaler.get_scale() == 1.0
    # the first step's loss comes from the same initial weights and batch in both runs
    assert steps[0]['losses']['l_pixel'] == pytest.approx(full[0]['losses']['l_pixel'], rel=2e-2)
    assert all(step['losses'] is not None for step in steps)
    assert_trained(before, half.model.net_g)


def test_channels_last_on_and_off_give_the_same_outputs(tmp_path, exact_cuda):
    sgd = [*SHORT, 'train.optim_g={type: SGD, lr: 0.05, momentum: 0.9}', 'train.scheduler=null',
           'train.ema_decay=0']  # SGD: weight changes proportional to the gradients (Adam's first step is ~sign)
    outputs = {}
    for layout in ('true', 'false'):
        trainer, _ = train(tiny_options(tmp_path / layout, [*sgd, f'train.channels_last={layout}']))
        weight = trainer.model.net_g.conv_first.weight
        assert weight.is_contiguous(memory_format=torch.channels_last) == (layout == 'true')
        lq = trainer.val_sets[0][1][0]['lq'].unsqueeze(0)
        outputs[layout] = trainer.model.predict(lq, use_ema=False)
    assert (outputs['true'] - outputs['false']).abs().max() <= 1e-3


def test_deterministic_cudnn_repeats_bit_identically_and_resumes_exactly(tmp_path, exact_cuda):
    eight = ['train.total_iter=8', 'val.val_freq=100']
    runs = [train(tiny_options(tmp_path / name, eight))[0] for name in ('a', 'b')]
    train(tiny_options(tmp_path / 'c', ['train.total_iter=4', 'val.val_freq=100']))  # checkpoint at 4
    resumed = Trainer(tiny_options(tmp_path / 'c', eight), DistContext(), auto_resume=True)
    assert resumed.state.iteration == 4
    resumed.train()
    reference = state_of(runs[0].model.net_g)
    for other in (runs[1].model, resumed.model):
        assert all(torch.equal(reference[k], v) for k, v in state_of(other.net_g).items())
        assert other.ema is not None and runs[0].model.ema is not None
        ema = state_of(runs[0].model.ema.module)
        assert all(torch.equal(ema[k], v) for k, v in state_of(other.ema.module).items())


COMPILED_NETWORKS = {
    'cnn': 'network_g={type: EDSR, num_feat: 8, num_block: 1}',
    'transformer': 'network_g={type: SwinIR, embed_dim: 12, depths: [2], num_heads: [2], window_size: 4, '
                   'mlp_ratio: 2, img_size: 8, upsampler: pixelshuffledirect, drop_path_rate: 0.0}',
    'eimn': 'network_g={type: EIMN, embed_dims: 16, num_stages: 2}',
}


@pytest.mark.parametrize('kind', list(COMPILED_NETWORKS))
def test_compiled_training_matches_eager(tmp_path, exact_cuda, kind):
    overrides = ['train.total_iter=2', 'val.val_freq=100', COMPILED_NETWORKS[kind]]
    _, eager = train(tiny_options(tmp_path / 'eager', overrides))
    trainer = Trainer(tiny_options(tmp_path / 'compiled', [*overrides, 'train.compile=true']), DistContext())
    assert hasattr(trainer.model.train_net, '_orig_mod')  # torch.compile's OptimizedModule
    before = state_of(trainer.model.net_g)
    compiled = run(trainer)
    # the first step's loss comes from the same initial weights and batch: the compiled forward equals eager's
    assert compiled[0]['losses']['l_pixel'] == pytest.approx(eager[0]['losses']['l_pixel'], rel=1e-4)
    assert all(step['losses'] is not None for step in compiled)
    assert_trained(before, trainer.model.net_g)


def test_cuda_prefetcher_delivers_batches_on_the_gpu_and_changes_no_number(tmp_path, exact_cuda):
    plain, plain_steps = train(tiny_options(tmp_path / 'plain', SHORT))
    prefetch = ['datasets.train.prefetch_mode=cuda', 'datasets.train.pin_memory=true']
    fetched, fetched_steps = train(tiny_options(tmp_path / 'fetched', [*SHORT, *prefetch]))
    assert fetched.loader_opt.prefetch_mode == 'cuda' and fetched.train_loader.pin_memory
    assert all(step['devices'] == {'cuda'} for step in fetched_steps)
    assert all(step['devices'] == {'cpu'} for step in plain_steps)
    assert [s['losses'] for s in fetched_steps] == [s['losses'] for s in plain_steps]
    reference = state_of(plain.model.net_g)
    assert all(torch.equal(reference[k], v) for k, v in state_of(fetched.model.net_g).items())


NCCL_RUN = '''
import json, sys
from pathlib import Path
import torch
import torch.distributed as torch_dist
from srkit.core.dist import all_gather_objects, any_rank, barrier, broadcast_object, cleanup, init_distributed
from srkit.engine.trainer import Trainer
from training_helpers import tiny_options

context = init_distributed('pytorch')
result = {'backend': torch_dist.get_backend(), 'world_size': context.world_size, 'any_true': any_rank(True),
          'any_false': any_rank(False), 'broadcast': broadcast_object({'a': 1}), 'gathered': all_gather_objects(3)}
barrier()
trainer = Trainer(tiny_options(Path(sys.argv[1]), ['train.total_iter=4', 'val.val_freq=2']), context)
trainer.train()
result.update(iteration=trainer.state.iteration, device=str(trainer.device))
del trainer
cleanup()
print('RESULT ' + json.dumps(result))
'''


def test_one_process_nccl_run_through_srkits_distributed_setup(tmp_path):
    script = tmp_path / 'nccl_run.py'
    script.write_text(NCCL_RUN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / 'tests')]))
    done = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1',
                           str(script), str(tmp_path / 'run')], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith('RESULT '))
    result = json.loads(line.removeprefix('RESULT '))
    assert result == {'backend': 'nccl', 'world_size': 1, 'any_true': True, 'any_false': False,
                      'broadcast': {'a': 1}, 'gathered': [3], 'iteration': 4, 'device': 'cuda:0'}


@pytest.mark.parametrize('name, args', [('MambaIR', {'embed_dim': 30, 'depths': [1]}),
                                        ('MMA_light', {'num_block': 2})])
def test_mamba_ssm_kernel_equals_the_pytorch_scan(monkeypatch, name, args):
    if not scan_module.HAS_MAMBA_KERNEL:
        pytest.skip('mamba_ssm is not installed (its selective-scan CUDA kernel is a source build: '
                    'pip install mamba-ssm); srkit then always runs its PyTorch scan')
    kernel_calls = []
    kernel = scan_module._kernel_scan

    def counting_kernel(*scan_args: Any) -> torch.Tensor:
        kernel_calls.append(1)
        return kernel(*scan_args)

    torch.manual_seed(0)
    net = create(name, 2, **args).cuda().eval()
    x = torch.rand(2, 3, 20, 28, device='cuda')
    with torch.no_grad():
        monkeypatch.setattr(scan_module, '_kernel_scan', counting_kernel)
        with_kernel = net(x)
        monkeypatch.setattr(scan_module, '_kernel_scan', None)
        monkeypatch.setattr(mma_arch, 'causal_conv1d_fn', None)
        with_torch = net(x)
    assert kernel_calls, 'the CUDA kernel was not used'
    assert (with_kernel - with_torch).abs().max() <= 1e-4


def test_gan_training_with_fp16_amp(tmp_path):
    options = parse_options(gan_data(tmp_path, ['train.amp=fp16']), is_train=True, source='gan.yml')
    trainer = Trainer(options, DistContext())
    before_g, before_d = state_of(trainer.model.net_g), state_of(trainer.model.net_d)
    steps = [step['losses'] for step in run(trainer)]
    assert len(steps) == 6 and all(losses is not None for losses in steps)
    assert {'l_g_pixel', 'l_g_ldl', 'l_g_gan', 'l_d_real', 'l_d_fake'} <= steps[-1].keys()
    scaler = trainer.model.scaler
    assert scaler.is_enabled() and 2.0 ** 10 <= scaler.get_scale() <= 2.0 ** 16
    assert_trained(before_g, trainer.model.net_g)
    assert_trained(before_d, trainer.model.net_d)
