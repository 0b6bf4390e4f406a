"""Run the authors' official option files (../shared/seed_options) the way a user would: change only paths.

The seed files are what a researcher coming from EIMN, MMA, ETDS or IGConv already has; their README says a
user may change dataset paths, pretrained-weight paths and ``num_gpu`` before running them, and anything
else srkit needs changed is a gap. ``rewrite`` makes exactly those changes, so a file that then fails to
build shows a gap in srkit, not an artefact of the harness. Its rules, applied to the parsed YAML mapping:

1. Dataset paths, in every ``datasets.<key>`` mapping (the key's prefix is its phase, BasicSR's convention).
   A set's scale is its own ``ds_scale`` (IGConv's per-set scale) or ``scale`` if given, else the top-level
   ``scale``. Set5 and T91 are the sets ../shared holds.

   * A set with ``dataroot_gt`` and ``dataroot_lq`` (paired), training or not, reads Set5 in the layout its
     ``filename_tmpl`` expects: BasicSR's (``dataroot_gt`` -> ``Set5/GTmod12``, ``dataroot_lq`` ->
     ``Set5/LRbicx{scale}``, same file names) when the template is absent or ``'{}'``, EDSR's (``HR`` +
     ``LR_bicubic/X{scale}``, names like ``babyx2.png``) for ``'{}x{scale}'``; any other template (HiT-SR's
     ``'{}_LRBI_x2'``) reads a folder under ``tmp`` linking ``LRbicx{scale}``'s images under the names it
     gives. A path says where images are, not what
     they are, so a paired set stays paired, and Set5 has the only paired LR/HR folders at hand. At scale 1
     (same-size restoration: EIMN's Baidu variant) both keys read ``Set5/GTmod12``, the only same-size pair.
   * A training set with ``dataroot_gt`` only (its LR is made on the fly) reads ``T91/HR``.
   * A val/test set with ``dataroot_gt`` only reads ``Set5/HR``.
   * ``meta_info_file`` / ``meta_info`` (lists of the authors' training images) become null: no list names
     Set5's or T91's images, and null means every image of the folder.
   * A set whose ``io_backend`` is ``lmdb`` reads the same folder packed into an LMDB (by
     scripts/data/create_lmdb.py, once, under ``cache``): the storage the authors chose is kept.

2. Pretrained-weight paths: ``path.pretrain_network_*``, ``path.resume_state``, ETDS's
   ``resume.network_*_path`` and EIMN's ``network_g.weight_path``. A non-empty one becomes the file of the
   same name under ``shared/weights`` (the official checkpoints ../shared holds) when there is one, else
   null: most official weights are not there, and no weights means random initialisation.

3. ``num_gpu`` -> 0 (the CPU; CI has no GPU), also where the file leaves it out (BasicSR's default would
   take a GPU where there is one).

4. A perceptual loss (``train.perceptual_opt``) without ``pretrained_path`` gets one: a VGG of its ``vgg_type`` in
   torchvision's layout with seeded random weights, written once under ``cache``. The files expect torchvision's
   download of the ImageNet VGG, which is not here and which srkit never fetches; a user gives that file's path.

5. Output roots under ``tmp``: ``path.experiments_root`` (training files) -> ``tmp/experiments/<name>``,
   ``path.results_root`` (test files) -> ``tmp/results/<name>``. BasicSR derives both from ``name``; a test
   must not write into the folder it was started from.

Everything else stays as the authors wrote it (tests/test_seed_options.py checks that on every file).
``first_error`` builds what train.py / test.py build before their first step and returns the message of
the user-facing error (SrkitError) that stops them, or None; any other exception is a bug in srkit and
propagates. ``run`` then does the first step: one training iteration, or test.py's evaluation.
"""
from __future__ import annotations

import copy
import importlib.util
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from srkit.config.options import Options, apply_overrides, load_yaml, parse_options
from srkit.core.dist import DistContext
from srkit.core.errors import SrkitError

__all__ = ['Kind', 'Built', 'seed_files', 'kind_of', 'rewrite', 'load', 'build', 'first_error', 'run_overrides',
           'run']

Kind = Literal['train', 'test']

WEIGHT_KEYS = {  # section -> pattern of its keys that hold weights (rule 2)
    'path': re.compile(r'pretrain_network_\w+|resume_state'),
    'resume': re.compile(r'network_\w+_path'),
    'network_g': re.compile(r'weight_path'),
}
ONE_IMAGE = 'butterfly.png'  # Set5's smallest image: a run's evaluation reads only it (see run_overrides)
NEVER = 10**9  # an iteration a one-iteration run never reaches
T91_SHORTEST_SIDE = 78  # t20.bmp: an HR patch must fit in every training image


def seed_files(root: Path) -> list[Path]:
    """Every option file under ``root``, sorted (the seed folder holds .yml and .yaml files)."""
    return sorted(p for p in root.rglob('*') if p.suffix in ('.yml', '.yaml') and p.is_file())


def kind_of(relative: Path) -> Kind:
    """train or test from the folder the authors put the file in: the repositories keep their files under
    ``.../train/...`` or ``.../test/...`` (any case). The content cannot decide it: some test files carry a ``train:``
    section, which BasicSR's test.py ignores. A file in neither folder is a layout this rule must learn."""
    parts = [part.lower() for part in relative.parts]  # HiT-SR's folders are Train/ and Test/
    if 'test' in parts:
        return 'test'
    if 'train' in parts:
        return 'train'
    raise ValueError(f'{relative}: neither under a train/ nor a test/ folder; teach kind_of its layout.')


def _lmdb_of(folder: Path, cache: Path) -> Path:
    """``folder`` packed into an LMDB under ``cache`` by scripts/data/create_lmdb.py (made once, then reused)."""
    out = cache / (str(folder).strip('/').replace('/', '_') + '.lmdb')
    if not out.exists():
        script = Path(__file__).resolve().parents[1] / 'scripts' / 'data' / 'create_lmdb.py'
        spec = importlib.util.spec_from_file_location('seed_options_create_lmdb', script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.create_lmdb(folder, out)
    return out


def _renamed_lr(lr: Path, template: str, tmp: Path) -> Path:
    """A folder under ``tmp`` holding links to ``lr``'s images under the names ``template`` gives them."""
    out = tmp / 'lr_named' / f'{lr.name}_{re.sub(r"[^A-Za-z0-9]+", "_", template)}'
    out.mkdir(parents=True, exist_ok=True)
    for image in lr.iterdir():
        link = out / (template.format(image.stem) + image.suffix)
        if not link.exists():
            link.symlink_to(image)
    return out


def _dataset_folders(key: str, entry: dict[str, Any], scale: Any, data: Path, tmp: Path) -> dict[str, Path]:
    """Rule 1: the folder each ``dataroot_*`` key of one dataset points at."""
    paired = 'dataroot_gt' in entry and 'dataroot_lq' in entry
    set5 = data / 'Set5'
    basicsr = {'dataroot_gt': set5 / 'GTmod12', 'dataroot_lq': set5 / ('GTmod12' if scale == 1 else f'LRbicx{scale}')}
    template = entry.get('filename_tmpl')
    if not paired:
        folders = {'dataroot_gt': data / 'T91' / 'HR' if key.split('_')[0] == 'train' else set5 / 'HR'}
    elif template in (None, '{}'):
        folders = basicsr
    elif template == f'{{}}x{scale}':
        folders = {'dataroot_gt': set5 / 'HR', 'dataroot_lq': set5 / 'LR_bicubic' / f'X{scale}'}
    else:
        folders = {**basicsr, 'dataroot_lq': _renamed_lr(basicsr['dataroot_lq'], str(template), tmp)}
    for folder in folders.values():
        if not folder.is_dir():  # a harness gap (e.g. a paired x8 set), not srkit's: fail loudly, never list it
            raise ValueError(f'datasets.{key}: {folder} does not exist; the rewrite rules need a folder for it.')
    return folders


def _seeded_vgg(vgg_type: str, cache: Path) -> Path:
    """Rule 4: ``vgg_type``'s convolutions under torchvision's ``features.<index>`` names, seeded random values."""
    import torch

    from srkit.losses.perceptual_loss import vgg_layer_names

    out = cache / f'{vgg_type}_seeded_random.pth'
    if not out.exists():
        generator = torch.Generator().manual_seed(0)
        state, channels = {}, 3
        for index, name in enumerate(vgg_layer_names(vgg_type)):
            if name.startswith('conv'):
                width = (64, 128, 256, 512, 512)[int(name[4]) - 1]
                state[f'features.{index}.weight'] = torch.randn(width, channels, 3, 3, generator=generator) * 0.05
                state[f'features.{index}.bias'] = torch.zeros(width)
                channels = width
            elif name.startswith('bn'):
                state.update({f'features.{index}.{k}': torch.ones(channels) if k in ('weight', 'running_var')
                              else torch.zeros(channels) for k in ('weight', 'bias', 'running_mean', 'running_var')})
        cache.mkdir(parents=True, exist_ok=True)
        torch.save(state, out)
    return out


def _weights(value: Any, shared: Path) -> Any:
    """Rule 2: the file of the same name under shared/weights, or None; empty values stay as written."""
    if not isinstance(value, str) or not value.strip():
        return value
    found = sorted((shared / 'weights').rglob(Path(value).name)) if (shared / 'weights').is_dir() else []
    return str(found[0]) if found else None


def rewrite(data: dict[str, Any], kind: Kind, shared: Path, tmp: Path, cache: Path | None = None) -> dict[str, Any]:
    """A copy of ``data`` with only the module docstring's changes. ``cache`` holds LMDBs (default ``tmp``)."""
    data = copy.deepcopy(data)
    datasets = data.get('datasets')
    for key, entry in (datasets.items() if isinstance(datasets, dict) else ()):
        if not isinstance(entry, dict):
            continue
        scale = entry.get('ds_scale') or entry.get('scale') or data.get('scale')
        folders = _dataset_folders(str(key), entry, scale, shared / 'data', tmp)
        backend = entry.get('io_backend')
        lmdb = isinstance(backend, dict) and backend.get('type') == 'lmdb'
        for name in [k for k in entry if str(k).startswith('dataroot_')]:
            folder = folders.get(name, folders['dataroot_gt'])
            entry[name] = str(_lmdb_of(folder, cache or tmp) if lmdb else folder)
        for name in ('meta_info_file', 'meta_info'):
            if name in entry:
                entry[name] = None
    if data.get('path') is None:
        data['path'] = {}
    for section, pattern in WEIGHT_KEYS.items():
        mapping = data.get(section)
        for key in [k for k in mapping if pattern.fullmatch(str(k))] if isinstance(mapping, dict) else ():
            mapping[key] = _weights(mapping[key], shared)
    perceptual = data['train'].get('perceptual_opt') if isinstance(data.get('train'), dict) else None
    if kind == 'train' and isinstance(perceptual, dict) and not perceptual.get('pretrained_path'):
        perceptual['pretrained_path'] = str(_seeded_vgg(perceptual.get('vgg_type', 'vgg19'), cache or tmp))
    if isinstance(data['path'], dict):
        root = 'experiments' if kind == 'train' else 'results'
        data['path'][f'{root}_root'] = str(tmp / root / str(data.get('name', 'unnamed')))
    data['num_gpu'] = 0
    return data


@dataclass
class Built:
    """What train.py or test.py has built before its first step."""

    options: Options
    trainer: Any = None  # srkit.engine.trainer.Trainer (training files)
    model: Any = None  # the model with its weights (test files)
    datasets: list[Any] | None = None  # every test/val dataset (test files)


def load(path: Path, kind: Kind, shared: Path, tmp: Path, overrides: list[str] | None = None,
         cache: Path | None = None) -> Options:
    """The file read with srkit's loader, rewritten, then overridden as ``--force_yml`` would, and checked."""
    data = apply_overrides(rewrite(load_yaml(path), kind, shared, tmp, cache), overrides or [])
    return parse_options(data, is_train=kind == 'train', source=str(path))


def build(path: Path, kind: Kind, shared: Path, tmp: Path, overrides: list[str] | None = None,
          cache: Path | None = None) -> Built:
    """Everything train.py / test.py builds before the first step; a user error raises SrkitError.

    Training: srkit.engine.trainer.Trainer, as train.py makes it (folders, the model with optimizer,
    scheduler, EMA and losses, training and validation data, the metrics tried on each set). Testing: what
    run_test checks before writing anything (the model with its weights, every test/val set, the metrics).
    """
    from srkit.core.registry import MODEL_REGISTRY
    from srkit.data.loader import build_dataset
    from srkit.engine.trainer import Trainer, run_device
    from srkit.models.evaluator import check_metrics

    options = load(path, kind, shared, tmp, overrides, cache)
    if kind == 'train':
        return Built(options, trainer=Trainer(options, DistContext()))
    dist = DistContext()
    model = MODEL_REGISTRY.get(options.model_type)(options, run_device(options, dist), dist)
    entries = options.datasets_of('test') + options.datasets_of('val')
    datasets = [build_dataset(entry) for entry in entries]
    for entry, dataset in zip(entries, datasets):
        check_metrics(options.val.metrics if options.val else {}, dataset, entry.name,
                      crop_border=entry.args.get('scale', options.scale) if model.multi_scale else None)
    return Built(options, model=model, datasets=datasets)


def first_error(path: Path, kind: Kind, shared: Path, tmp: Path, cache: Path | None = None) -> str | None:
    """The message of the SrkitError that stops train.py / test.py before its first step, or None."""
    try:
        build(path, kind, shared, tmp, cache=cache)
    except SrkitError as exc:
        return exc.message
    return None


def _takes_meta_info_file(type_name: Any) -> bool:
    from srkit.core.registry import DATASET_REGISTRY

    if not isinstance(type_name, str) or type_name not in DATASET_REGISTRY:
        return False
    return 'meta_info_file' in inspect.signature(DATASET_REGISTRY.get(type_name)).parameters


def run_overrides(data: dict[str, Any], kind: Kind, tmp: Path) -> list[str]:
    """``--force_yml`` overrides that make the first step small enough for a CPU, touching nothing it tests.

    Training: one iteration of batch 2 on small patches (``lq_size`` 16, less where a random scale up to 8
    would need HR patches larger than T91's smallest image, or ``gt_size`` 48, whichever the file sets, in the
    training set or at the top level as Real-ESRGAN's files do), no DataLoader workers, no TensorBoard, progress
    logged every iteration, validation at that iteration, and the one checkpoint train.py writes at the end.
    Evaluation (validation and test.py) reads one image of each set where its dataset takes ``meta_info_file``;
    the sets are Set5 after ``rewrite``.
    """
    overrides = []
    tmp.mkdir(parents=True, exist_ok=True)
    one = tmp / 'one_image.txt'
    one.write_text(ONE_IMAGE + '\n', encoding='utf-8')
    datasets = data.get('datasets') if isinstance(data.get('datasets'), dict) else {}
    for key, entry in datasets.items():
        if not isinstance(entry, dict):
            continue
        prefix = f'datasets.{key}'
        if str(key).startswith('train'):
            overrides += [f'{prefix}.batch_size_per_gpu=2', f'{prefix}.num_worker_per_gpu=0']
            if 'lq_size' in entry:  # 16, or less where the largest random scale would need a bigger HR patch
                largest = max(entry.get('random_scales') or [1])
                overrides.append(f'{prefix}.lq_size={min(16, T91_SHORTEST_SIDE // largest)}')
            overrides += [f'{prefix}.gt_size=48'] if 'gt_size' in entry else []
        elif _takes_meta_info_file(entry.get('type')):
            overrides.append(f'{prefix}.meta_info_file={one}')
    overrides += ['gt_size=48'] if 'gt_size' in data else []  # Real-ESRGAN's models crop at the top-level gt_size
    if kind == 'train':
        overrides += ['train.total_iter=1', 'logger.print_freq=1', f'logger.save_checkpoint_freq={NEVER}',
                      'logger.use_tb_logger=false']
        overrides += ['val.val_freq=1'] if isinstance(data.get('val'), dict) else []
    return overrides


def run(path: Path, kind: Kind, shared: Path, tmp: Path, cache: Path | None = None,
        extra: list[str] | None = None) -> Path:
    """The first step through the entry points' own code: one training iteration (Trainer.train) or test.py's
    evaluation (run_test, with weights seeded when the file names none here). Returns the file it wrote last:
    the final network or results.json. ``extra`` overrides come after run_overrides'."""
    from srkit.core.checkpoint import network_path
    from srkit.engine.experiment import seed_everything
    from srkit.engine.tester import run_test

    overrides = run_overrides(load_yaml(path), kind, tmp) + (extra or [])
    if kind == 'train':
        trainer = build(path, kind, shared, tmp, overrides, cache).trainer
        trainer.train()
        return network_path(trainer.root, 'net_g', 'latest', trainer.options.logger.network_format)
    seed_everything(0)  # random weights (no checkpoint here) are then the same on every run
    options = load(path, kind, shared, tmp, overrides, cache)
    run_test(options)
    return Path(options.path.results_root or '') / 'results.json'
