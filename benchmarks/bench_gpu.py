"""GPU benchmark: training it/s, inference ms and peak memory of one preset of every registered family.

A family is one ``srkit/archs/*_arch.py`` module; discriminators are left out. Each family is measured with one
representative preset, at the training LR patch and batch per GPU of a published option file where one is known
(RECIPES names the file), else at BasicSR's classical recipe (LR 48, batch 16). The network is built at x4.

- Training: srkit's step arithmetic (SRModel.train_step): autocast fp16 with a GradScaler where the ArchSpec says
  fp16_safe, else bf16; channels_last where channels_last_safe; L1 loss; Adam. Batches are random tensors already
  on the device and nothing waits for the host between steps, so it/s is the network's and optimizer's speed,
  not the data pipeline's. Peak: ``torch.cuda.max_memory_allocated`` over the steps (weights, gradients, Adam
  state, activations).
- Inference: one 320x180 LR image at x4 (1280x720 out) under the same autocast, padded to the architecture's
  multiple as srkit's ``predict`` does; median of the repeats after a warm-up. Peak: over the inferences.

cuDNN's autotuner stays off (torch's default, which srkit keeps) unless ``--cudnn-benchmark``.

    python benchmarks/bench_gpu.py --json gpu.json                       # on a CUDA machine (docs/GPU.md)
    python benchmarks/bench_gpu.py --families edsr swinir --max-seconds 5
    python benchmarks/bench_gpu.py --device cpu --tiny --families espcn fsrcnn   # exercises the script on a CPU
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import statistics
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ''):  # run as a script: import srkit from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from srkit.archs import ARCH_REGISTRY, arch_spec, create  # noqa: E402
from srkit.core.threads import apply_threads  # noqa: E402
from srkit.models.inference import predict  # noqa: E402
from srkit.models.sr_model import to_channels_last  # noqa: E402

SCALE = 4
INFER_LR = (180, 320)  # height, width of the inference input: 1280x720 out at x4


@dataclass(frozen=True)
class Recipe:
    """The preset measured for a family, and the training LR patch side and batch per GPU of ``source``."""

    preset: str
    lr_patch: int
    batch: int
    source: str


SEED = '../shared/seed_options/'
DEFAULT_SOURCE = "no option file known: BasicSR's classical recipe (train_EDSR_Mx4.yml, LR 48, batch 16)"
# LR patch = gt_size / scale of the file (or its lq_size); batch = batch_size_per_gpu. IGConv's files train its
# host networks with 4 GPUs; ETDS's files are x4 with lq_size 64.
RECIPES = {
    'abpn': Recipe('ABPN_M4C28', 64, 32, SEED + 'ETDS/configs/train/ABPN/train_ABPN_M4C28_x4.yml'),
    'atd': Recipe('ATD', 64, 8, SEED + 'IGConv/options/train/ATD/ATD_DF2K_SmallPatch_Pretrain.yaml'),
    'ecbsr': Recipe('ECBSR', 64, 32, SEED + 'ETDS/configs/train/ECBSR/train_ECBSR_M4C16_x4.yml'),
    'edsr': Recipe('EDSR', 48, 16, 'BasicSR options/train/EDSR/train_EDSR_Mx4.yml (gt_size 192)'),
    'edsr_ig': Recipe('EDSRIG', 48, 4, SEED + 'IGConv/options/train/EDSR/EDSRIG_DIV2K.yaml'),
    'eimn': Recipe('EIMN_L', 64, 16, SEED + 'EIMN/options/train/EIMN/train_EIMNNet_x2_bicubic_DIV2K.yml '
                                            '(gt_size 128 at x2)'),
    'espcn': Recipe('ESPCN', 64, 32, SEED + 'ETDS/configs/train/ESPCN/train_ESPCN_x4.yml'),
    'etds': Recipe('ETDS_M6C32', 64, 32, SEED + 'ETDS/configs/train/ETDS/train_ETDS_M6C32_x4.yml'),
    'fsrcnn': Recipe('FSRCNN', 64, 32, SEED + 'ETDS/configs/train/FSRCN/train_FSRCNN_x4.yml'),
    'hat': Recipe('HAT', 64, 8, SEED + 'IGConv/options/train/HAT/HAT_DF2K_Finetuning.yaml'),
    'hit_srf': Recipe('HiT_SRF', 64, 16, SEED + 'IGConv/options/train/HiT_SR/HiT_SRF_IG_DIV2K.yaml'),
    'imdn': Recipe('IMDN', 48, 16, 'options/train/IMDN/train_IMDN_x4.yml (the official recipe, gt_size 192)'),
    'mambair': Recipe('MambaIR_light', 64, 8, SEED + 'IGConv/options/train/MambaIR_Light/MambaIR_light_IG_DIV2K.yaml'),
    'mma': Recipe('MMA', 64, 4, SEED + 'MMA/options/train/MMA/train_MMA_x4_pretrain.yml (gt_size 256)'),
    'plksr': Recipe('PLKSR', 96, 16, SEED + 'IGConv/options/train/PLKSR/PLKSRIGPlus_DF2K.yaml'),
    'rcan': Recipe('RCAN', 48, 4, SEED + 'IGConv/options/train/RCAN/RCAN_IGPlus_DIV2K_S2348.yaml'),
    'rdn': Recipe('RDN', 48, 8, SEED + 'IGConv/options/train/RDN/RDN_IGPlus_DIV2K.yaml'),
    'rrdbnet': Recipe('RRDBNet', 32, 16, 'BasicSR options/train/ESRGAN/train_RRDBNet_PSNR_x4.yml (gt_size 128)'),
    'smfanet': Recipe('SMFANet', 64, 16, SEED + 'IGConv/options/train/SMFANet/SMFANet_IG_DF2K.yaml'),
    'srformer': Recipe('SRFormer', 64, 8, SEED + 'IGConv/options/train/SRFormer/SRFormer_IG_DF2K.yaml'),
    'srresnet': Recipe('MSRResNet', 32, 16,
                       'BasicSR options/train/SRResNet_SRGAN/train_MSRResNet_x4.yml (gt_size 128)'),
    'swinir': Recipe('SwinIR_M', 48, 4, 'BasicSR options/train/SwinIR/train_SwinIR_SRx4_scratch.yml (gt_size 192)'),
}
NOT_MEASURED = {
    'bicubic': 'no parameters to train',
    'etds_ablation': "the ETDS paper's ablation forms, measured as etds",
}


@dataclass
class Row:
    """One line of the table; None where nothing was measured."""

    family: str
    preset: str
    params: int | None = None
    lr_patch: int | None = None
    batch: int | None = None
    precision: str | None = None
    channels_last: bool | None = None
    train_its: float | None = None
    train_peak_mib: float | None = None
    infer_ms: float | None = None
    infer_peak_mib: float | None = None
    source: str = ''
    note: str = ''


def families() -> dict[str, list[str]]:
    """Registered SR networks by family (the module that registers them, without ``_arch``); no discriminators."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for name in ARCH_REGISTRY.names():
        if not arch_spec(name).discriminator:
            grouped[ARCH_REGISTRY.get(name).__module__.rsplit('.', 1)[-1].removesuffix('_arch')].append(name)
    return dict(sorted(grouped.items()))


def recipe_for(family: str, names: list[str]) -> Recipe:
    """RECIPES' entry, or for a family it does not list the plainest x4 preset (the shortest single-scale name)
    at the default recipe."""
    if family in RECIPES:
        return RECIPES[family]
    single = [n for n in names if not arch_spec(n).scale_in_forward and arch_spec(n).supports_scale(SCALE)]
    return Recipe(min(single or names, key=lambda n: (len(n), n)), 48, 16, DEFAULT_SOURCE)


def build(name: str) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """The preset at x4 and the function that runs it on an LR batch (multi-scale networks take the scale per
    call; IGConv+ networks may return (image, skip))."""
    spec = arch_spec(name)
    net = create(name, None if spec.scale_in_forward else SCALE, **spec.example_args)

    def run(x: torch.Tensor) -> torch.Tensor:
        out = net(x, SCALE) if spec.scale_in_forward else net(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    return net, run


def round_up(size: int, multiple: int, least: int) -> int:
    return max(-(-size // multiple) * multiple, least)


class Device:
    """Synchronisation and peak memory of the device measured (peaks are None on the CPU)."""

    def __init__(self, name: str) -> None:
        self.device = torch.device(name)
        self.cuda = self.device.type == 'cuda'

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mib(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 2**20 if self.cuda else None


def timed_steps(step: Callable[[], Any], device: Device, warmup: int, iters: int, max_seconds: float
                ) -> tuple[int, float]:
    """Run ``warmup`` untimed steps, then up to ``iters`` timed ones (at least 2, stopping once ``max_seconds``
    have passed); the count and the seconds they took."""
    for _ in range(warmup):
        step()
    device.sync()
    start = time.perf_counter()
    done = 0
    while done < iters and (done < 2 or time.perf_counter() - start < max_seconds):
        step()
        done += 1
    device.sync()
    return done, time.perf_counter() - start


def measure(family: str, recipe: Recipe, args: argparse.Namespace, device: Device) -> Row:
    """Build the recipe's preset at x4 on the device, then time its training and its inference."""
    row = Row(family, recipe.preset, source=recipe.source)
    spec = arch_spec(recipe.preset)
    torch.manual_seed(0)
    net, run = build(recipe.preset)
    row.params = sum(p.numel() for p in net.parameters())
    if args.max_params is not None and row.params > args.max_params:
        row.note = f'skipped: more than --max-params {args.max_params:,} parameters'
        return row
    dtype = None if args.amp == 'none' else (torch.float16 if device.cuda and spec.fp16_safe and args.amp == 'auto'
                                             else torch.bfloat16)
    row.precision = {None: 'fp32', torch.float16: 'fp16', torch.bfloat16: 'bf16'}[dtype]
    row.channels_last = spec.channels_last_safe and not args.no_channels_last
    net.to(device.device)
    if row.channels_last:
        to_channels_last(net)
    setup = Setup(run, device, dtype, torch.channels_last if row.channels_last else torch.contiguous_format,
                  1 if spec.same_size_output else SCALE, spec.pad_multiple, spec.min_size)
    patch = round_up(16 if args.tiny else recipe.lr_patch, spec.pad_multiple if args.tiny else 1, spec.min_size)
    row.lr_patch, row.batch = patch, 2 if args.tiny else recipe.batch
    row.train_its, row.train_peak_mib = train_speed(net, setup, row.lr_patch, row.batch, args)
    net.zero_grad(set_to_none=True)
    net.eval()
    row.infer_ms, row.infer_peak_mib = inference_time(setup, (18, 32) if args.tiny else INFER_LR, args.repeats)
    return row


@dataclass(frozen=True)
class Setup:
    """How a preset runs: its forward, the device, the autocast dtype (None: fp32), the memory format of its
    inputs, its output scale and the input multiple and minimum its ArchSpec asks for."""

    run: Callable[[torch.Tensor], torch.Tensor]
    device: Device
    dtype: torch.dtype | None
    memory_format: torch.memory_format
    out_scale: int
    multiple: int
    min_size: int

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.device.type, dtype=self.dtype)


def train_speed(net: nn.Module, setup: Setup, patch: int, batch: int, args: argparse.Namespace
                ) -> tuple[float, float | None]:
    """Training it/s on random batches, and the peak memory of the steps."""
    device = setup.device.device
    lq = torch.rand(batch, 3, patch, patch, device=device).contiguous(memory_format=setup.memory_format)
    gt = torch.rand(batch, 3, patch * setup.out_scale, patch * setup.out_scale, device=device)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=setup.dtype is torch.float16)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with setup.autocast():
            loss = F.l1_loss(setup.run(lq), gt)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    net.train()
    setup.device.reset_peak()
    done, seconds = timed_steps(step, setup.device, args.warmup, args.iters, args.max_seconds)
    return done / seconds, setup.device.peak_mib()


def inference_time(setup: Setup, size: tuple[int, int], repeats: int) -> tuple[float, float | None]:
    """Median ms of ``repeats`` inferences of one LR image of ``size`` after a warm-up, and their peak memory."""
    image = torch.rand(1, 3, *size, device=setup.device.device).contiguous(memory_format=setup.memory_format)

    def infer() -> None:
        with torch.no_grad(), setup.autocast():
            predict(setup.run, image, setup.out_scale, multiple=setup.multiple, min_size=setup.min_size)

    setup.device.reset_peak()
    infer()
    times = []
    for _ in range(repeats):
        setup.device.sync()
        start = time.perf_counter()
        infer()
        setup.device.sync()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times), setup.device.peak_mib()


def markdown(rows: list[Row], header: str) -> str:
    def num(value: float | None, digits: int) -> str:
        return '-' if value is None else f'{value:,.{digits}f}'

    lines = [header, '',
             '| family | preset | parameters | LR patch x batch | precision | channels_last | train it/s | '
             'train peak MiB | x4 320x180 ms | inference peak MiB | patch and batch from |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        shape = '-' if r.lr_patch is None else f'{r.lr_patch} x {r.batch}'
        cl = '-' if r.channels_last is None else ('yes' if r.channels_last else 'no')
        lines.append(f'| {r.family} | {r.preset} | {"-" if r.params is None else f"{r.params:,}"} | {shape} | '
                     f'{r.precision or "-"} | {cl} | {num(r.train_its, 2)} | {num(r.train_peak_mib, 0)} | '
                     f'{num(r.infer_ms, 1)} | {num(r.infer_peak_mib, 0)} | {r.note or r.source} |')
    return '\n'.join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda', help='cuda, cuda:N or cpu (default cuda)')
    parser.add_argument('--families', nargs='+', help='only these families (default: every registered one)')
    parser.add_argument('--max-params', type=int, default=30_000_000,
                        help='skip presets with more parameters (default 30M: today every family is measured)')
    parser.add_argument('--amp', choices=('auto', 'bf16', 'none'), default='auto',
                        help='auto: fp16 where fp16_safe on CUDA, else bf16 (default)')
    parser.add_argument('--no-channels-last', action='store_true', help='keep the contiguous layout everywhere')
    parser.add_argument('--cudnn-benchmark', action='store_true', help="turn on cuDNN's autotuner")
    parser.add_argument('--warmup', type=int, default=2, help='untimed training steps (default 2)')
    parser.add_argument('--iters', type=int, default=30, help='timed training steps at most (default 30)')
    parser.add_argument('--max-seconds', type=float, default=8.0,
                        help='stop timing training after this long (at least 2 steps; default 8)')
    parser.add_argument('--repeats', type=int, default=5, help='timed inferences (default 5)')
    parser.add_argument('--tiny', action='store_true',
                        help='LR patches of 16, batch 2, a 32x18 image, 1 warm-up, 2 steps, 1 inference: checks the '
                             'script, measures nothing')
    parser.add_argument('--json', type=Path, help='also write the rows and the set-up to this JSON file')
    args = parser.parse_args(argv)
    if args.tiny:
        args.warmup, args.iters, args.repeats = 1, 2, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = Device(args.device)
    if device.cuda and not torch.cuda.is_available():
        print('CUDA is not available here: run on a machine with a GPU (docs/GPU.md), or pass --device cpu --tiny.',
              file=sys.stderr)
        return 2
    known = families()
    chosen = args.families or list(known)
    unknown = [f for f in chosen if f not in known]
    if unknown:
        print(f'Unknown families {", ".join(unknown)}; known: {", ".join(known)}.', file=sys.stderr)
        return 2
    if not device.cuda:
        apply_threads(None, device.device)
    if args.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    rows, failed = [], 0
    for family in chosen:
        if family in NOT_MEASURED:
            rows.append(Row(family, ', '.join(known[family]), note=f'not measured: {NOT_MEASURED[family]}'))
            continue
        recipe = recipe_for(family, known[family])
        try:
            rows.append(measure(family, recipe, args, device))
        except Exception as exc:  # one family's failure (out of memory, a bug) must not lose the others' figures
            traceback.print_exc()
            failed += 1
            rows.append(Row(family, recipe.preset, source=recipe.source,
                            note=f'FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}'))
        finally:
            device.reset_peak()
        print(f'{family}: done', file=sys.stderr, flush=True)
    name = torch.cuda.get_device_name(device.device) if device.cuda else 'CPU'
    date = datetime.date.today().isoformat()
    header = (f'{date}, {name}, torch {torch.__version__}, x{SCALE}, cudnn.benchmark {args.cudnn_benchmark}'
              f'{", --tiny (not a measurement)" if args.tiny else ""}')
    print(markdown(rows, header))
    if args.json is not None:
        setup = {'date': date, 'device': name, 'torch': torch.__version__, 'scale': SCALE, 'tiny': args.tiny,
                 'cudnn_benchmark': args.cudnn_benchmark, 'amp': args.amp, 'max_seconds': args.max_seconds}
        args.json.write_text(json.dumps({'setup': setup, 'rows': [asdict(r) for r in rows]}, indent=1) + '\n',
                             encoding='utf-8')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
