"""Option files: BasicSR-compatible YAML, parsed strictly into typed dataclasses.

One owner for everything the user writes: YAML reading (safe loader, duplicate keys refused, ``1e-4``
read as a float), ``--force_yml`` overrides (values parsed as YAML, never evaluated), the schema of every
section, and the check of each ``type:`` section against the signature of the component it names. The
``train:`` section's schema belongs to the model class (``model_cls.TrainOptions``) so that a model with
extra training options extends it without a central list.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from srkit.config.compat import (
    datasets_scale,
    drop_train_section,
    translate_dataset_keys,
    translate_model_type,
    translate_top_level,
)
from srkit.config.typed_options import Component, check_call_arguments, convert, option, parse_dataclass
from srkit.core.errors import OptionError
from srkit.core.registry import (
    ARCH_REGISTRY,
    DATASET_REGISTRY,
    METRIC_REGISTRY,
    MODEL_REGISTRY,
    Registry,
    RegistryError,
    closest_name,
)

__all__ = ['resolve_network', 'Options', 'DatasetOptions', 'LoaderOptions', 'PathOptions', 'ValOptions',
           'LoggerOptions', 'WandbOptions', 'DistOptions', 'load_yaml', 'parse_yaml_text', 'apply_overrides',
           'parse_options', 'load_options', 'dump_options', 'apply_debug']


class _StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads ``1e-4`` as a float (YAML 1.2), not a string."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f'duplicate key "{key}" (first at line {seen[key].start_mark.line + 1})',
                    key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_StrictSafeLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float', re.compile(r'^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$'),
    list('-+0123456789'))
_StrictSafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                  _StrictSafeLoader.construct_mapping)


def parse_yaml_text(text: str, source: str = '<string>') -> Any:
    """Parse YAML with srkit's safe loader; a syntax error names the source, line and column."""
    try:
        return yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = f' at line {mark.line + 1}, column {mark.column + 1}' if mark else ''
        problem = getattr(exc, 'problem', None) or str(exc)
        raise OptionError(f'{source}: malformed YAML{where}: {problem}.') from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        raise OptionError(f'Option file {path} does not exist.') from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f'Option file {path} cannot be read: {exc}.') from None
    data = parse_yaml_text(text, str(path))
    if not isinstance(data, dict):
        raise OptionError(f'{path}: an option file must be a mapping of keys (name, model_type, ...), '
                          f'got {type(data).__name__}.')
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` (or BasicSR's ``a:b:c=value``) overrides; values are parsed as YAML."""
    data = copy.deepcopy(data)
    for item in overrides:
        if '=' not in item:
            raise OptionError(f'--force_yml "{item}" must look like key.subkey=value.')
        key, raw = item.split('=', 1)
        parts = [p for p in re.split(r'[.:]', key.strip()) if p]
        if not parts:
            raise OptionError(f'--force_yml "{item}" names no key.')
        value = parse_yaml_text(raw, f'--force_yml {key}')
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise OptionError(f'--force_yml "{item}": "{".".join(parts[:depth + 1])}" is not a mapping.')
            node = child
        node[parts[-1]] = value
    return data


@dataclass
class PathOptions:
    pretrain_network_g: str | None = option(None, 'Weights to load into network_g before training or testing '
                                                   '(srkit, BasicSR or official checkpoint layouts).')
    param_key_g: str | None = option('params', 'Which entry of the checkpoint to load: params or params_ema.')
    strict_load_g: bool = option(True, 'Refuse a checkpoint whose keys or shapes differ from the network.')
    pretrain_network_d: str | None = option(None, 'Weights to load into network_d (GAN models) before training.')
    param_key_d: str | None = option('params', 'Which entry of the network_d checkpoint to load.')
    strict_load_d: bool = option(True, 'Refuse a network_d checkpoint whose keys or shapes differ.')
    resume_state: str | None = option(None, 'A training state to resume from (see also --auto_resume).')
    experiments_root: str | None = option(None, 'Folder of this training run (default experiments/<name>).')
    results_root: str | None = option(None, 'Folder of this test run (default results/<name>).')


@dataclass
class ValOptions:
    val_freq: int = option(5000, 'Validate every this many iterations (training only).')
    save_img: bool = option(False, 'Save SR images (experiments/<name>/visualization or results/<name>).')
    suffix: str | None = option(None, 'Suffix of saved SR image names (test.py).')
    metrics: dict[str, Component] = option(doc='Metrics by name: {type: calculate_psnr, crop_border: 4, '
                                               'test_y_channel: true}; optional better: higher|lower (default: '
                                               'the metric\'s own, lower for LPIPS, DISTS and NIQE).',
                                           factory=dict)
    pbar: bool = option(True, 'Show a progress bar while testing.')
    use_ema: bool = option(True, 'Validate the EMA weights when EMA is on.')
    tile_size: int = option(0, 'Run images in tiles of this many LR pixels (0: whole images).')
    tile_overlap: int = option(16, 'LR pixels each tile sees beyond its border (cover the receptive field).')
    self_ensemble: bool = option(False, 'Average the x8 flip/transpose geometric ensemble.')
    inference_form: bool = option(True, "Evaluate through the architecture's inference form where its ArchSpec has "
                                        'one (EIMN, IMDN, plain ETDS: BatchNorm folded, fast CPU kernels; outputs '
                                        "within 1e-5 of the network's); false: the network itself.")

    def check(self, path: str) -> None:
        if self.val_freq < 1:
            raise OptionError(f'Option "{path}.val_freq" must be >= 1, got {self.val_freq}.')
        if self.tile_size < 0 or self.tile_overlap < 0:
            raise OptionError(f'Options "{path}.tile_size" and "{path}.tile_overlap" must be >= 0.')


@dataclass
class WandbOptions:
    """BasicSR's ``logger.wandb``."""

    project: str | None = option(None, 'wandb project; wandb logging is on only when this is set (BasicSR). '
                                       'Needs the wandb package.')
    entity: str | None = option(None, 'wandb user or team the project belongs to (default: your wandb default).')
    resume_id: str | None = option(None, 'Id of a wandb run to continue (e.g. with --auto_resume); default: a new '
                                         'run.')


@dataclass
class LoggerOptions:
    """``logger:``: progress lines, checkpoints and the files they go to, TensorBoard and wandb."""

    print_freq: int = option(100, 'Log losses, learning rate, speed and ETA every this many iterations.')
    save_checkpoint_freq: int = option(5000, 'Save the network and a training state every this many iterations.')
    use_tb_logger: bool = option(True, 'Write TensorBoard scalars when tensorboard is installed.')
    wandb: WandbOptions = option(doc='wandb logging (main process only; files in experiments/<name>/wandb; run '
                                     'named after `name`): the scalars TensorBoard gets (losses, lr, validation '
                                     'metrics) and, at each validation, the SR output of the first image of each '
                                     'validation set.', factory=WandbOptions)
    network_format: Literal['pth', 'safetensors'] = option(
        'pth', 'Format of the network files train.py writes (models/net_g_<iter>.<format>): pth (BasicSR) or '
               'safetensors (needs the safetensors package; params and params_ema are stored as key prefixes '
               '"params." and "params_ema."). Training states are always torch files.')

    def require_packages(self, path: str) -> None:
        """The optional packages a training run with these options needs, checked before anything is made, so a
        missing one fails at once with the command that installs it (test.py neither logs nor writes networks)."""
        if self.wandb.project is not None and importlib.util.find_spec('wandb') is None:
            raise OptionError(f'Option "{path}.wandb" turns on wandb logging (project "{self.wandb.project}"), but the '
                              'wandb package is not installed: pip install wandb (or set the project to null).',
                              key=f'{path}.wandb')
        if self.network_format == 'safetensors' and importlib.util.find_spec('safetensors') is None:
            raise OptionError(f'Option "{path}.network_format" is safetensors, but the safetensors package is not '
                              'installed: pip install safetensors (or use pth).', key=f'{path}.network_format')


@dataclass
class DistOptions:
    backend: str | None = option(None, 'torch.distributed backend (default: nccl on CUDA, gloo on CPU).')
    port: int = option(29500, 'Master port for --launcher slurm (torchrun sets its own).')
    timeout_s: int = option(600, 'Seconds a collective may wait before the job fails (no silent hangs).')


@dataclass
class LoaderOptions:
    """Loader keys of a ``datasets.<phase>`` block (BasicSR's names)."""

    batch_size_per_gpu: int = option(16, 'Batch size of each process (global batch = this x world size); '
                                         'val/test datasets go one image at a time: 1 only.')
    num_worker_per_gpu: int = option(0, 'DataLoader worker processes per process (training and evaluation).')
    use_shuffle: bool = option(True, 'Shuffle the training set every epoch (deterministic from manual_seed).')
    dataset_enlarge_ratio: int = option(1, 'Repeat the training set this many times per epoch.')
    prefetch_mode: Literal['cpu', 'cuda'] | None = option(None, 'cuda: copy batches to the GPU ahead on a '
                                                                'side stream (needs pin_memory).')
    pin_memory: bool = option(False, 'Pinned host memory for batches.')
    persistent_workers: bool = option(False, 'Keep worker processes alive between epochs.')

    def check(self, path: str = '') -> None:
        prefix = f'{path}.' if path else ''
        for key, low in (('batch_size_per_gpu', 1), ('num_worker_per_gpu', 0), ('dataset_enlarge_ratio', 1)):
            if getattr(self, key) < low:
                raise OptionError(f'Option "{prefix}{key}" must be >= {low}, got {getattr(self, key)}.',
                                  key=prefix + key)
        if self.prefetch_mode == 'cuda' and not self.pin_memory:
            raise OptionError(f'Option "{prefix}prefetch_mode" is "cuda", which needs "{prefix}pin_memory: true" '
                              '(non-blocking copies need pinned memory).', key=f'{prefix}prefetch_mode')

    def check_evaluation(self, path: str, given: set[str]) -> None:
        """Evaluation goes one image at a time, in order: training-only keys are refused, not ignored."""
        if 'batch_size_per_gpu' in given and self.batch_size_per_gpu != 1:
            raise OptionError(f'Option "{path}.batch_size_per_gpu" must be 1 for a {path.split(".")[-1]} dataset: '
                              'evaluation runs one image at a time (images differ in size).',
                              key=f'{path}.batch_size_per_gpu')
        for key in ('use_shuffle', 'dataset_enlarge_ratio'):
            if key in given:
                raise OptionError(f'Option "{path}.{key}" applies to training datasets only: evaluation takes '
                                  'every image once, in order. Remove it.', key=f'{path}.{key}')


Phase = Literal['train', 'val', 'test']
_PHASES: tuple[Phase, ...] = ('train', 'val', 'test')


@dataclass
class DatasetOptions:
    """One entry of ``datasets:``; ``args`` go to the dataset class, ``loader`` to the DataLoader."""

    key: str
    name: str
    type: str
    phase: Phase
    args: dict[str, Any]
    loader: LoaderOptions

    def scale_or(self, default: int) -> int:
        """The entry's own scale (``scale``, or IGConv's ``ds_scale``), else ``default`` (the run's)."""
        return self.args.get('scale', self.args.get('ds_scale', default))


@dataclass
class Options:
    name: str = option(doc='Name of the run: experiments/<name>/ and results/<name>/.')
    scale: int = option(doc='Upscaling factor; may be left out where every dataset gives one (docs/OPTIONS.md).')
    network_g: Component = option(doc='The network: {type: <architecture>, ...its arguments}.')
    network_d: Component | None = option(None, 'The discriminator of a GAN model (SRGANModel, RealESRGANModel): '
                                                '{type: UNetDiscriminatorSN, ...its arguments}.')
    model_type: str = option('SRModel', 'What a training step means (SRModel, ETDSModel, ...).')
    num_gpu: int | Literal['auto'] = option('auto', 'auto: CUDA when available; 0: CPU.')
    num_threads: int | None = option(None, 'CPU threads torch uses in each process; null: srkit chooses (the CPUs '
                                           'this process may use, less the cores other processes keep busy, '
                                           'shared among the ranks on this node). The environment variable '
                                           'SRKIT_NUM_THREADS, then OMP_NUM_THREADS, apply when this is null. '
                                           'The choice is logged at the start of the run.')
    manual_seed: int | None = option(None, 'Seed of every random choice (random when null).')
    datasets: dict[str, Any] = option(doc='train, val*, test* datasets: {name, type, ...dataset arguments, '
                                          '...loader keys}.', factory=dict)
    path: PathOptions = option(doc='Checkpoint paths.', factory=PathOptions)
    train: Any = option(None, 'Training options of the model_type (required by train.py).')
    val: ValOptions | None = option(None, 'Validation (train.py) and evaluation (test.py) options.')
    logger: LoggerOptions = option(doc='Logging and checkpoint frequency.', factory=LoggerOptions)
    dist_params: DistOptions = option(doc='Distributed training.', factory=DistOptions)
    find_unused_parameters: bool = option(False, 'DistributedDataParallel find_unused_parameters.')
    # filled in by srkit, never read from the file
    model_options: Any = field(default=None, init=False)  # the model_type's own top-level keys (TopLevelOptions)
    is_train: bool = field(default=False, init=False)
    source: str = field(default='', init=False)
    notices: list[str] = field(default_factory=list, init=False)  # what compat translated or ignored: logged

    def check(self, path: str) -> None:
        if self.num_threads is not None and self.num_threads < 1:
            raise OptionError(f'Option "num_threads" must be a positive integer (or null: srkit chooses), got '
                              f'{self.num_threads}.', key='num_threads')
        if self.scale < 1:
            raise OptionError(f'Option "scale" must be a positive integer, got {self.scale}.')
        if not re.fullmatch(r'[\w.+-]+', self.name):
            raise OptionError(f'Option "name" must be usable as a folder name (letters, digits, _.+-), '
                              f'got {self.name!r}.')

    def datasets_of(self, phase: str) -> list[DatasetOptions]:
        return [d for d in self.datasets.values() if d.phase == phase]


def parse_options(data: dict[str, Any], *, is_train: bool, source: str = '<options>') -> Options:
    """Validate a whole option tree; every error names the dotted key (and the file, via ``source``).

    The model and network types are looked up first: a file for a model or network srkit lacks says so
    before anything else. Then srkit.config.compat applies the policy for keys of BasicSR and its
    descendants (docs/OPTIONS.md); its notices travel in ``Options.notices``.
    """
    notices: list[str] = []
    try:
        data = translate_model_type(data, notices)
        model_cls = _check_types_first(data)
        data = translate_top_level(data, notices)
        if not is_train:
            data = drop_train_section(data, notices)
        if 'scale' not in data:
            scale = datasets_scale(data, getattr(model_cls, 'multi_scale', False))
            if scale is not None:
                data = {**data, 'scale': scale}
                notices.append(f'Option "scale" is {scale}, the scale the datasets give.')
        data, model_options = _split_model_options(data, model_cls)
        options = parse_dataclass(Options, data)
        options.model_options = model_options
        if is_train and hasattr(model_options, 'check_training'):
            model_options.check_training()  # what only training reads (e.g. Real-ESRGAN's degradation keys)
        options.is_train = is_train
        options.source = source
        own_scale = getattr(model_cls, 'multi_scale', False)
        resolve_network(options, own_scale)
        _resolve_discriminator(options, model_cls)
        options.datasets = {key: _parse_dataset(key, value, options.scale, own_scale, notices)
                            for key, value in (options.datasets or {}).items()}
        _resolve_model_and_train(options, data.get('train'))
        if options.val is not None:
            options.val.metrics = {key: _check_metric(key, comp) for key, comp in options.val.metrics.items()}
        _check_phases(options)
        _cpu_prefetch(options, notices)
        if is_train:
            options.logger.require_packages('logger')
    except OptionError as exc:
        raise exc.in_file(source) from None
    options.notices = notices
    return options


def _check_types_first(data: dict[str, Any]) -> Any:
    """The model class; an unknown ``model_type`` or ``network_g.type`` is reported before any other key."""
    model_type = data.get('model_type', 'SRModel')
    model_cls = _lookup(MODEL_REGISTRY, model_type, 'model_type') if isinstance(model_type, str) else None
    network = data.get('network_g')
    if isinstance(network, dict) and isinstance(network.get('type'), str):
        _lookup(ARCH_REGISTRY, network['type'], 'network_g.type')
    return model_cls


def _split_model_options(data: dict[str, Any], model_cls: Any) -> tuple[dict[str, Any], Any]:
    """The top-level keys the model class declares (``TopLevelOptions``, e.g. Real-ESRGAN's degradation settings,
    which BasicSR's files write at the top level), parsed into that dataclass, and the rest of ``data``."""
    schema = getattr(model_cls, 'TopLevelOptions', None)
    names = {f.name for f in dataclasses.fields(schema) if f.init} if schema is not None else set()
    own_fields = {f.name for f in dataclasses.fields(Options) if f.init}
    for key in data:
        owners = [] if key in names or key in own_fields else _models_taking(key)
        if owners:
            raise OptionError(f'Option "{key}" belongs to model_type {" / ".join(owners)}, not '
                              f'{data.get("model_type", "SRModel")}.', key=key)
    if schema is None:
        return data, None
    own = {k: v for k, v in data.items() if k in names}
    parsed = parse_dataclass(schema, own, '')
    return {k: v for k, v in data.items() if k not in names}, parsed


def _models_taking(key: str) -> list[str]:
    """The registered models with ``key`` among their own top-level options."""
    found = []
    for name in MODEL_REGISTRY.names():
        schema = getattr(MODEL_REGISTRY.get(name), 'TopLevelOptions', None)
        if schema is not None and key in {f.name for f in dataclasses.fields(schema)}:
            found.append(name)
    return found


def _resolve_discriminator(options: Options, model_cls: Any) -> None:
    """network_d belongs to GAN models (``uses_discriminator``): required there, refused elsewhere, its arguments
    checked against the architecture like network_g's."""
    comp = options.network_d
    if not getattr(model_cls, 'uses_discriminator', False):
        if comp is not None:
            raise OptionError(f'Option "network_d": model_type {options.model_type} trains no discriminator; remove '
                              'network_d or use a GAN model (SRGANModel, RealESRGANModel).', key='network_d')
        return
    if comp is None:
        if options.is_train:
            raise OptionError(f'Option "network_d" is required: {options.model_type} trains a discriminator '
                              '(e.g. {type: UNetDiscriminatorSN, num_in_ch: 3, num_feat: 64}).', key='network_d')
        return
    arch = _lookup(ARCH_REGISTRY, comp.type, 'network_d.type')
    spec = ARCH_REGISTRY.meta(comp.type)
    if not getattr(spec, 'discriminator', False):
        raise OptionError(f'Option "network_d.type": {comp.type} is an SR network, not a discriminator.',
                          key='network_d.type')
    comp.args = check_call_arguments(arch, comp.args, 'network_d', what=f'discriminator {comp.type}')


def _cpu_prefetch(options: Options, notices: list[str]) -> None:
    """``prefetch_mode: cuda`` on a run without CUDA (``num_gpu: 0``, or no GPU here) loads batches as without it.

    BasicSR would fail at the first batch; an official file run on a CPU changes only ``num_gpu``, so srkit says
    what it does instead (and drops ``pin_memory``, which needs an accelerator).
    """
    import torch  # only this check needs it

    if options.num_gpu != 0 and torch.cuda.is_available():
        return
    for entry in options.datasets.values():
        if entry.loader.prefetch_mode == 'cuda':
            entry.loader.prefetch_mode = None
            entry.loader.pin_memory = False
            why = 'num_gpu is 0' if options.num_gpu == 0 else 'CUDA is not available here'
            notices.append(f'Option "datasets.{entry.key}.prefetch_mode" is cuda but {why}: batches are loaded by the '
                           'DataLoader as without prefetch_mode, and pin_memory is off.')


def load_options(path: str | Path, *, is_train: bool, overrides: list[str] | None = None) -> Options:
    data = apply_overrides(load_yaml(path), overrides or [])
    return parse_options(data, is_train=is_train, source=str(path))


def dump_options(options: Options) -> str:
    """The validated options as YAML (copied into the experiment folder for the record)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Component):
            return value.as_dict()
        if isinstance(value, DatasetOptions):
            loader = dataclasses.asdict(value.loader)
            return {'name': value.name, 'type': value.type, **value.args, **loader}
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    tree = plain(options)
    if options.model_options is not None:  # the model's own top-level keys go back where the file had them
        tree.update(plain(options.model_options))
    return yaml.safe_dump(tree, sort_keys=False)


def _lookup(registry: Registry, name: str, path: str) -> Any:
    try:
        return registry.get(name)
    except RegistryError as exc:
        raise OptionError(f'Option "{path}": {exc}', key=path) from None


def resolve_network(options: Options, multi_scale: bool = False) -> None:
    """Check network_g's arguments against its architecture and the scale against what its ArchSpec allows.

    The scale argument (whatever the architecture calls it: ArchSpec.scale_arg) comes from ``scale``;
    ``srkit.archs.create`` fills it in when the network is built. A multi-scale model's network takes the
    scale per call: its constructor's own arguments (IGConv's files keep e.g. ``upscale: 4``) are left alone.
    """
    comp = options.network_g
    arch = _lookup(ARCH_REGISTRY, comp.type, 'network_g.type')
    spec = ARCH_REGISTRY.meta(comp.type)  # an ArchSpec, read through the registry (archs sit above config)
    scale_arg = spec.scale_arg if spec is not None and not multi_scale else None
    if scale_arg is not None and scale_arg in comp.args and comp.args[scale_arg] != options.scale:
        raise OptionError(f'Option "network_g.{scale_arg}" is {comp.args[scale_arg]} but "scale" is {options.scale}; '
                          'they must agree.', key=f'network_g.{scale_arg}')
    comp.args = check_call_arguments(arch, comp.args, 'network_g', provided=(scale_arg,) if scale_arg else (),
                                     what=f'architecture {comp.type}')
    if spec is not None and not multi_scale and not spec.supports_scale(options.scale):
        raise OptionError(f'Option "scale": architecture {comp.type} supports scales {list(spec.scales)}, '
                          f'not {options.scale}.', key='scale')


def _accepts(target: Any, name: str) -> bool:
    return name in inspect.signature(target).parameters


def _parse_dataset(key: str, value: Any, scale: int, own_scale: bool, notices: list[str]) -> DatasetOptions:
    """``own_scale``: the model is multi-scale, so the entry may set a ``scale`` other than the top-level one."""
    prefix = key.split('_')[0]
    path = f'datasets.{key}'
    phase = next((p for p in _PHASES if p == prefix), None)
    if phase is None:
        hint = closest_name(prefix, _PHASES)
        raise OptionError(f'Option "{path}": dataset keys start with train, val or test (e.g. val_1)'
                          + (f'; did you mean "{hint}"?' if hint else '.'), key=path)
    if not isinstance(value, dict):
        raise OptionError(f'Option "{path}" must be a mapping.', key=path)
    value = dict(value)
    for required in ('name', 'type'):
        if required not in value:
            raise OptionError(f'Option "{path}.{required}" is required.', key=f'{path}.{required}')
    name = convert(value.pop('name'), str, f'{path}.name')
    type_name = convert(value.pop('type'), str, f'{path}.type')
    declared_phase = value.pop('phase', phase)
    if declared_phase != phase:
        raise OptionError(f'Option "{path}.phase" is {declared_phase!r} but the key says {phase!r}.',
                          key=f'{path}.phase')
    dataset_cls = _lookup(DATASET_REGISTRY, type_name, f'{path}.type')
    translate_dataset_keys(key, type_name, value, notices)
    loader_fields = tuple(f.name for f in dataclasses.fields(LoaderOptions))
    loader_data = {k: value.pop(k) for k in list(value) if k in loader_fields}
    loader = parse_dataclass(LoaderOptions, loader_data, path)
    if phase != 'train':
        loader.check_evaluation(path, set(loader_data))
    injected = {'scale': scale, 'phase': phase, 'name': name}
    provided = tuple(k for k in injected if _accepts(dataset_cls, k))
    args = check_call_arguments(dataset_cls, value, path, provided=provided, what=f'dataset {type_name}',
                                also_valid=loader_fields)
    if 'scale' in args and args['scale'] != scale and not own_scale:
        raise OptionError(f'Option "{path}.scale" is {args["scale"]} but "scale" is {scale}.', key=f'{path}.scale')
    for k in provided:
        args.setdefault(k, injected[k])
    return DatasetOptions(key=key, name=name, type=type_name, phase=phase, args=args, loader=loader)


def _resolve_model_and_train(options: Options, raw_train: Any) -> None:
    model_cls = _lookup(MODEL_REGISTRY, options.model_type, 'model_type')
    if raw_train is None:
        if options.is_train:
            raise OptionError('Option "train" is required for training (total_iter, optim_g, losses, ...).')
        options.train = None
        return
    options.train = parse_dataclass(model_cls.TrainOptions, raw_train, 'train')
    model_cls.TrainOptions.resolve_components(options.train, 'train')


def _check_metric(key: str, comp: Component) -> Component:
    path = f'val.metrics.{key}'
    fn = _lookup(METRIC_REGISTRY, comp.type, f'{path}.type')
    args = dict(comp.args)
    declared = METRIC_REGISTRY.meta(comp.type)  # e.g. {'better': 'lower'} for LPIPS, DISTS and NIQE
    better = args.pop('better', declared.get('better', 'higher') if isinstance(declared, dict) else 'higher')
    if better not in ('higher', 'lower'):
        raise OptionError(f'Option "{path}.better" must be "higher" or "lower", got {better!r}.', key=f'{path}.better')
    if 'input_order' in args:  # BasicSR's layout of the numpy images it hands its metrics
        raise OptionError(f'Option "{path}.input_order": srkit computes metrics on the NCHW tensors it makes itself, '
                          'so there is no layout to choose; remove it.', key=f'{path}.input_order')
    skip = tuple(list(inspect.signature(fn).parameters)[:2])  # the two images
    args = check_call_arguments(fn, args, path, skip=skip, what=f'metric {comp.type}')
    return Component(comp.type, {**args, 'better': better})


def _check_phases(options: Options) -> None:
    if options.is_train:
        if not options.datasets_of('train'):
            raise OptionError('Option "datasets.train" is required for training.')
        if options.datasets_of('val') and options.val is None:
            raise OptionError('Validation datasets are given but the "val" section (val_freq, metrics) is missing.')
    elif not options.datasets_of('test') and not options.datasets_of('val'):
        raise OptionError('Option "datasets" needs at least one test_* (or val_*) dataset to evaluate.')


DEBUG_ITERATIONS = 8


def apply_debug(options: Options) -> Options:
    """``--debug``: a quick pass through the whole loop, BasicSR's convention (name prefixed ``debug_``):
    DEBUG_ITERATIONS iterations logged one by one, then one validation and one checkpoint at the end."""
    options = copy.deepcopy(options)
    if not options.name.startswith('debug_'):
        options.name = f'debug_{options.name}'
    if options.train is not None:
        options.train.total_iter = min(options.train.total_iter, DEBUG_ITERATIONS)
        last = options.train.total_iter
    else:
        last = DEBUG_ITERATIONS
    options.logger.print_freq = 1
    options.logger.save_checkpoint_freq = last
    if options.val is not None:
        options.val.val_freq = last
    return options
