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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from srkit.utils.errors import OptionError
from srkit.utils.registry import RegistryError, closest_name
from srkit.utils.typed_options import (Component, check_call_arguments, convert, option, parse_dataclass,
                                      unknown_key_error)

__all__ = ['resolve_network', 'Options', 'DatasetOptions', 'PathOptions', 'ValOptions', 'LoggerOptions', 'DistOptions',
           'load_yaml', 'parse_yaml_text', 'apply_overrides', 'parse_options', 'load_options', 'dump_options']

SCALE_ARGUMENTS = ('upscale', 'scale', 'upscale_factor', 'upscaling_factor')


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
    resume_state: str | None = option(None, 'A training state to resume from (see also --auto_resume).')
    experiments_root: str | None = option(None, 'Folder of this training run (default experiments/<name>).')
    results_root: str | None = option(None, 'Folder of this test run (default results/<name>).')


@dataclass
class ValOptions:
    val_freq: int = option(5000, 'Validate every this many iterations (training only).')
    save_img: bool = option(False, 'Save SR images (experiments/<name>/visualization or results/<name>).')
    suffix: str | None = option(None, 'Suffix of saved SR image names (test.py).')
    metrics: dict[str, Component] = option(doc='Metrics by name: {type: calculate_psnr, crop_border: 4, '
                                               'test_y_channel: true}; optional better: higher|lower.',
                                           factory=dict)
    pbar: bool = option(True, 'Show a progress bar while testing.')
    use_ema: bool = option(True, 'Validate the EMA weights when EMA is on.')
    tile_size: int = option(0, 'Run images in tiles of this many LR pixels (0: whole images).')
    tile_overlap: int = option(16, 'LR pixels each tile sees beyond its border (cover the receptive field).')
    self_ensemble: bool = option(False, 'Average the x8 flip/transpose geometric ensemble.')

    def check(self, path: str) -> None:
        if self.val_freq < 1:
            raise OptionError(f'Option "{path}.val_freq" must be >= 1, got {self.val_freq}.')
        if self.tile_size < 0 or self.tile_overlap < 0:
            raise OptionError(f'Options "{path}.tile_size" and "{path}.tile_overlap" must be >= 0.')


@dataclass
class LoggerOptions:
    print_freq: int = option(100, 'Log losses, learning rate, speed and ETA every this many iterations.')
    save_checkpoint_freq: int = option(5000, 'Save the network and a training state every this many iterations.')
    use_tb_logger: bool = option(True, 'Write TensorBoard scalars when tensorboard is installed.')
    wandb: dict[str, Any] | None = option(None, 'Accepted so BasicSR files run; srkit does not log to wandb.')


@dataclass
class DistOptions:
    backend: str | None = option(None, 'torch.distributed backend (default: nccl on CUDA, gloo on CPU).')
    port: int = option(29500, 'Master port for --launcher slurm (torchrun sets its own).')
    timeout_s: int = option(600, 'Seconds a collective may wait before the job fails (no silent hangs).')


@dataclass
class DatasetOptions:
    """One entry of ``datasets:``; ``args`` go to the dataset class, ``loader`` to the DataLoader."""

    key: str
    name: str
    type: str
    phase: Literal['train', 'val', 'test']
    args: dict[str, Any]
    loader: Any


@dataclass
class Options:
    name: str = option(doc='Name of the run: experiments/<name>/ and results/<name>/.')
    scale: int = option(doc='Upscaling factor.')
    network_g: Component = option(doc='The network: {type: <architecture>, ...its arguments}.')
    model_type: str = option('SRModel', 'What a training step means (SRModel, ETDSModel, ...).')
    num_gpu: int | Literal['auto'] = option('auto', 'auto: CUDA when available; 0: CPU.')
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
    is_train: bool = field(default=False, init=False)
    source: str = field(default='', init=False)

    def check(self, path: str) -> None:
        if self.scale < 1:
            raise OptionError(f'Option "scale" must be a positive integer, got {self.scale}.')
        if not re.fullmatch(r'[\w.+-]+', self.name):
            raise OptionError(f'Option "name" must be usable as a folder name (letters, digits, _.+-), '
                              f'got {self.name!r}.')

    def datasets_of(self, phase: str) -> list[DatasetOptions]:
        return [d for d in self.datasets.values() if d.phase == phase]


def parse_options(data: dict[str, Any], *, is_train: bool, source: str = '<options>') -> Options:
    """Validate a whole option tree; every error names the dotted key (and the file, via ``source``)."""
    try:
        options = parse_dataclass(Options, data)
        options.is_train = is_train
        options.source = source
        resolve_network(options)
        from srkit.utils.registry import MODEL_REGISTRY
        own_scale = getattr(_lookup(MODEL_REGISTRY, options.model_type, 'model_type'), 'multi_scale', False)
        options.datasets = {key: _parse_dataset(key, value, options.scale, own_scale)
                            for key, value in (options.datasets or {}).items()}
        _resolve_model_and_train(options, data.get('train'))
        if options.val is not None:
            options.val.metrics = {key: _check_metric(key, comp) for key, comp in options.val.metrics.items()}
        _check_phases(options)
    except OptionError as exc:
        raise OptionError(f'{source}: {exc}') from None
    return options


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

    return yaml.safe_dump(plain(options), sort_keys=False)


def _lookup(registry: Any, name: str, path: str) -> Any:
    try:
        return registry.get(name)
    except RegistryError as exc:
        raise OptionError(f'Option "{path}": {exc}') from None


def resolve_network(options: Options) -> None:
    """Check network_g against its architecture, fill in its scale argument, check the scale is supported."""
    from srkit.utils.registry import ARCH_REGISTRY
    comp = options.network_g
    arch = _lookup(ARCH_REGISTRY, comp.type, 'network_g.type')
    scale_params = [p for p in SCALE_ARGUMENTS if _accepts(arch, p)]
    for param in scale_params:
        if param in comp.args and comp.args[param] != options.scale:
            raise OptionError(f'Option "network_g.{param}" is {comp.args[param]} but "scale" is {options.scale}; '
                              'they must agree.')
    comp.args = check_call_arguments(arch, comp.args, 'network_g', provided=tuple(scale_params),
                                     what=f'architecture {comp.type}')
    for param in scale_params[:1]:
        comp.args.setdefault(param, options.scale)
    from srkit.archs import arch_spec
    spec = arch_spec(comp.type)
    if not spec.supports_scale(options.scale):
        raise OptionError(f'Option "scale": architecture {comp.type} supports scales {list(spec.scales)}, '
                          f'not {options.scale}.')


def _accepts(target: Any, name: str) -> bool:
    import inspect
    return name in inspect.signature(target).parameters


def _parse_dataset(key: str, value: Any, scale: int, own_scale: bool = False) -> DatasetOptions:
    """``own_scale``: the model is multi-scale, so the entry may set a ``scale`` other than the top-level one."""
    from srkit.data.loader import LoaderOptions
    from srkit.utils.registry import DATASET_REGISTRY
    phase = key.split('_')[0]
    if phase not in ('train', 'val', 'test'):
        hint = closest_name(phase, ['train', 'val', 'test'])
        raise OptionError(f'Option "datasets.{key}": dataset keys start with train, val or test (e.g. val_1)'
                          + (f'; did you mean "{hint}"?' if hint else '.'))
    if not isinstance(value, dict):
        raise OptionError(f'Option "datasets.{key}" must be a mapping.')
    path = f'datasets.{key}'
    value = dict(value)
    for required in ('name', 'type'):
        if required not in value:
            raise OptionError(f'Option "{path}.{required}" is required.')
    name = convert(value.pop('name'), str, f'{path}.name')
    type_name = convert(value.pop('type'), str, f'{path}.type')
    declared_phase = value.pop('phase', phase)
    if declared_phase != phase:
        raise OptionError(f'Option "{path}.phase" is {declared_phase!r} but the key says {phase!r}.')
    dataset_cls = _lookup(DATASET_REGISTRY, type_name, f'{path}.type')
    loader_fields = {f.name for f in dataclasses.fields(LoaderOptions)}
    loader_data = {k: value.pop(k) for k in list(value) if k in loader_fields}
    loader = parse_dataclass(LoaderOptions, loader_data, path)
    injected = {'scale': scale, 'phase': phase, 'name': name}
    provided = tuple(k for k in injected if _accepts(dataset_cls, k))
    try:
        args = check_call_arguments(dataset_cls, value, path, provided=provided, what=f'dataset {type_name}')
    except OptionError as exc:
        unknown = re.match(r'Unknown option "[^"]+\.([^".]+)"', str(exc))
        if unknown:  # suggest among loader keys too
            import inspect
            valid = list(loader_fields) + [p for p in inspect.signature(dataset_cls).parameters
                                           if p not in injected]
            raise unknown_key_error(path, unknown.group(1), valid, f' (dataset {type_name} does not take it)') \
                from None
        raise
    if 'scale' in args and args['scale'] != scale and not own_scale:
        raise OptionError(f'Option "{path}.scale" is {args["scale"]} but "scale" is {scale}.')
    for k in provided:
        args.setdefault(k, injected[k])
    return DatasetOptions(key=key, name=name, type=type_name, phase=phase, args=args, loader=loader)


def _resolve_model_and_train(options: Options, raw_train: Any) -> None:
    from srkit.utils.registry import MODEL_REGISTRY
    model_cls = _lookup(MODEL_REGISTRY, options.model_type, 'model_type')
    if raw_train is None:
        if options.is_train:
            raise OptionError('Option "train" is required for training (total_iter, optim_g, losses, ...).')
        options.train = None
        return
    options.train = parse_dataclass(model_cls.TrainOptions, raw_train, 'train')
    model_cls.TrainOptions.resolve_components(options.train, 'train')


def _check_metric(key: str, comp: Component) -> Component:
    from srkit.utils.registry import METRIC_REGISTRY
    path = f'val.metrics.{key}'
    fn = _lookup(METRIC_REGISTRY, comp.type, f'{path}.type')
    args = dict(comp.args)
    better = args.pop('better', 'higher')
    if better not in ('higher', 'lower'):
        raise OptionError(f'Option "{path}.better" must be "higher" or "lower", got {better!r}.')
    import inspect
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


def apply_debug(options: Options) -> Options:
    """``--debug``: a quick pass through the whole loop (BasicSR's convention: name prefixed ``debug_``)."""
    options = copy.deepcopy(options)
    if not options.name.startswith('debug_'):
        options.name = f'debug_{options.name}'
    options.logger.print_freq = 1
    options.logger.save_checkpoint_freq = 8
    if options.val is not None:
        options.val.val_freq = 8
    return options
