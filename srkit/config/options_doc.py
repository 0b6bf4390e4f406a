"""docs/OPTIONS.md, generated from the option dataclasses and the registered components' signatures.

Generated rather than written so that it cannot drift: a test compares the file with this output.
"""
from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

from srkit.config.typed_options import Component, _type_name

__all__ = ['options_markdown']


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return '`null`' if field.default is None else f'`{field.default!r}`'
    if field.default_factory is not dataclasses.MISSING:
        if dataclasses.is_dataclass(field.default_factory):
            return f'see `{field.name}` below'
        return f'`{field.default_factory()!r}`'
    return 'required'


def _type_text(tp: Any) -> str:
    if tp is Component:
        return 'component (`type:` + arguments)'
    if dataclasses.is_dataclass(tp):
        return 'mapping'
    return _type_name(tp)


def _dataclass_table(cls: type, prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    hints = typing.get_type_hints(cls)
    rows = ['| key | type | default | meaning |', '|---|---|---|---|']
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        doc = f.metadata.get('doc', '').replace('|', '\\|')
        rows.append(f'| `{prefix}{f.name}` | {_type_text(hints[f.name])} | {_default(f)} | {doc} |')
    return rows


def _signature_text(target: Any, skip: int = 0) -> str:
    try:
        params = list(inspect.signature(target).parameters.values())[skip:]
    except (TypeError, ValueError):
        return ''
    parts = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name == 'self':
            continue
        parts.append(p.name if p.default is p.empty else f'{p.name}={p.default!r}')
    return ', '.join(parts)


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ''
    return doc.split('\n\n')[0].replace('\n', ' ').replace('|', '\\|')


def _registry_table(registry: Any, skip: int = 0, only: Any = None) -> list[str]:
    """A table of the registry's entries (``only``: those whose metadata it accepts)."""
    rows = ['| name | arguments | what |', '|---|---|---|']
    for name in registry.names():
        if only is not None and not only(registry.meta(name)):
            continue
        target = registry.get(name)
        rows.append(f'| `{name}` | `{_signature_text(target, skip)}` | {_first_line(target)} |'.replace('``', ''))
    return rows


def _policy_section() -> list[str]:
    """The written policy for option files of BasicSR and its descendants, from the tables compat applies."""
    from srkit.config.compat import (
        ETDS_RESUME_KEYS,
        IGNORED_DATASET_KEYS,
        IGNORED_SECTION_KEYS,
        IGNORED_TOP_LEVEL,
        IGNORED_TRAIN_KEYS,
        MODEL_TYPE_TRANSLATIONS,
        TRAIN_KEY_RENAMES,
    )

    ignored = [f'| `{key}` | {why} |' for key, why in IGNORED_TOP_LEVEL.items()]
    ignored += [f'| `{section}.{key}` | {why} |' for section, keys in IGNORED_SECTION_KEYS.items()
                for key, why in keys.items()]
    ignored += [f'| `datasets.<key>.{key}`{f" of a {kind}" if kind else ""} | {why} |'
                for key, (kind, why) in IGNORED_DATASET_KEYS.items()]
    ignored += [f'| `train.{key}` with `model_type: {model}` | {model} never reads it ({source}) |'
                for model, (keys, source) in IGNORED_TRAIN_KEYS.items() for key in keys]
    resume = [f'| `resume.{etds}` (ETDS) | `path.{ours}` (a value in both places must agree) |'
              for etds, ours in ETDS_RESUME_KEYS.items()]
    resume += [f'| `train.{theirs}` | `train.{ours}` ({why}) |' for theirs, (ours, why) in TRAIN_KEY_RENAMES.items()]
    models = [f'| `model_type: {theirs}` | `model_type: {ours}` ({why}) |'
              for theirs, (ours, why) in MODEL_TYPE_TRANSLATIONS.items()]
    return [
        '## Option files from BasicSR and its descendants', '',
        'A file written for BasicSR, or for a repository built on it (EIMN, MMA, ETDS, IGConv, HAT, ATD, SRFormer, '
        'HiT-SR, SMFANet, MambaIR), runs after changing paths and `num_gpu`, wherever srkit has its network, '
        'model and dataset types. The rules (srkit/config/compat.py applies them; every notice is one line at the '
        'start of the run\'s log):', '',
        '1. **Keys BasicSR reads keep BasicSR\'s meaning.** They are srkit\'s own options, in the tables below.',
        '2. **Keys BasicSR ignores are accepted** with a notice saying they have no effect:', '',
        '   | key | why |', '   |---|---|', *[f'   {row}' for row in ignored], '',
        '3. **Keys of BasicSR-derived repositories that srkit translates** are read as srkit\'s, with a notice:', '',
        '   | their key | read as |', '   |---|---|', *[f'   {row}' for row in models + resume],
        '   | `train.losses` as a mapping `{<name>: {type: ..., ...}}` (ETDS) | the list of its values |',
        '   | `datasets.<key>.use_channels_shuffle` (ETDS) | `use_channel_shuffle` |',
        '   | `datasets.<key>.io_backend.type: scandir` (EIMN\'s Real-ESRGAN files) | `disk` (every image of the '
        'folder) |',
        '   | `tile: {tile_size, tile_pad}` (HAT\'s test files) | `val.tile_size`, `val.tile_overlap` (the same '
        'tiles) |',
        '   | `val.use_chop` (HiT-SR) | false: nothing; true: `val.tile_size: 200`, `val.tile_overlap: 16` (its '
        'chops: at most 200 LR pixels, overlapping by 16) |',
        '   | `datasets.<key>.use_vflip: true` (ETDS), next to `use_hflip: true` and `use_rot: true` | nothing: '
        'ETDS flips rows, flips columns and transposes, each with probability 1/2; BasicSR\'s `use_hflip` + '
        '`use_rot` draw the same 8 flips and rotations with the same probabilities. Any other `use_vflip` is an '
        'error: vertical flips are part of `use_rot` |', '',
        '4. **Anything else is an error** naming the dotted key, the closest valid key and the file. An unknown '
        '`model_type` or `network_g.type` is reported before any other key.', '',
        'Also from BasicSR: the top-level `scale` may be left out where every dataset gives one (`scale`, or '
        'IGConv\'s `ds_scale`); they must agree unless the model is multi-scale. `test.py` ignores a `train:` '
        'section (as BasicSR\'s test.py does), with a notice. `prefetch_mode: cuda` on a run without CUDA '
        '(`num_gpu: 0`, or no GPU) loads batches as without `prefetch_mode` and turns `pin_memory` off, with a '
        'notice (BasicSR would fail at the first batch). Where srkit refuses what BasicSR accepts, it says why: '
        '`batch_size_per_gpu` other than 1, `use_shuffle` and `dataset_enlarge_ratio` on val/test sets '
        '(evaluation takes every image once, one at a time) and the metrics\' `input_order` (srkit hands metrics '
        'NCHW tensors).', '']


def options_markdown() -> str:
    from srkit.config.options import (
        DistOptions,
        LoaderOptions,
        LoggerOptions,
        Options,
        PathOptions,
        ValOptions,
        WandbOptions,
    )
    from srkit.core.registry import (
        ARCH_REGISTRY,
        DATASET_REGISTRY,
        LOSS_REGISTRY,
        METRIC_REGISTRY,
        MODEL_REGISTRY,
        OPTIMIZER_REGISTRY,
        SCHEDULER_REGISTRY,
    )

    out = ['# Options', '',
           '<!-- Generated by `python scripts/gen_options_doc.py`; do not edit by hand. -->', '',
           'srkit reads BasicSR-style YAML and checks it strictly: an unknown or misspelt key, a wrong type or a '
           'missing required key is an error naming the dotted key and the closest valid name. Numbers like '
           '`1e-4` are floats; iteration counts may be written `!!float 5e3`. Command-line overrides: '
           '`--force_yml train.total_iter=1000` (values parsed as YAML, never evaluated).', '',
           *_policy_section(),
           '## Top level', '', *_dataclass_table(Options, ''), '',
           '## `datasets.<key>`', '',
           'Keys start with `train`, `val` or `test` (e.g. `val_1`, `test_2`); the prefix is the phase. Each entry '
           'takes `name`, `type` (a dataset below), the dataset\'s own arguments, and these loader keys '
           '(`scale`, `phase` and `name` are filled in by srkit):', '',
           *_dataclass_table(LoaderOptions, 'datasets.<key>.'), '',
           '## `path`', '', *_dataclass_table(PathOptions, 'path.'), '',
           '## `val`', '', *_dataclass_table(ValOptions, 'val.'), '',
           '## `logger`', '', *_dataclass_table(LoggerOptions, 'logger.'), '',
           '### `logger.wandb`', '', *_dataclass_table(WandbOptions, 'logger.wandb.'), '',
           '## `dist_params`', '', *_dataclass_table(DistOptions, 'dist_params.'), '']
    base = MODEL_REGISTRY.get('SRModel').TrainOptions
    base_names = {f.name for f in dataclasses.fields(base)}
    out += ['## `train` (model_type: SRModel)', '', *_dataclass_table(base, 'train.'), '']
    documented: dict[type, str] = {}
    for name in MODEL_REGISTRY.names():
        model = MODEL_REGISTRY.get(name)
        cls = model.TrainOptions
        extra = tuple(f.name for f in dataclasses.fields(cls) if f.name in base_names)
        if cls in documented:
            out += [f'### `train` extras of model_type: {name}', '', f'Those of {documented[cls]}.', '']
        elif cls is not base:
            documented[cls] = name
            out += [f'### `train` extras of model_type: {name}', '', *_dataclass_table(cls, 'train.', extra), '']
        top = getattr(model, 'TopLevelOptions', None)
        if top is not None:
            out += [f'### Top-level keys of model_type: {name}', '', *_dataclass_table(top, ''), '']
    out += ['## Components', '',
            'Every `type:` names a registered component; its other keys are the arguments below.', '',
            '### Models (`model_type`)', '', *_registry_table(MODEL_REGISTRY), '',
            '### Architectures (`network_g.type`)', '',
            *_registry_table(ARCH_REGISTRY, only=lambda spec: not getattr(spec, 'discriminator', False)), '',
            '### Discriminators (`network_d.type`, GAN models)', '',
            *_registry_table(ARCH_REGISTRY, only=lambda spec: getattr(spec, 'discriminator', False)), '',
            '### Datasets (`datasets.<key>.type`)', '', *_registry_table(DATASET_REGISTRY), '',
            '### Losses (`train.losses[*].type`, `train.pixel_opt.type`, ...)', '', *_registry_table(LOSS_REGISTRY), '',
            '### Metrics (`val.metrics.<name>.type`)', '', *_registry_table(METRIC_REGISTRY, skip=2), '',
            '### Optimizers (`train.optim_g.type`)', '',
            'Any `torch.optim` class by name, e.g. `RAdam`; registered:', '',
            *_registry_table(OPTIMIZER_REGISTRY, 1), '',
            '### Schedulers (`train.scheduler.type`)', '',
            'Any `torch.optim.lr_scheduler` class by name, e.g. `MultiStepLR`; registered:', '',
            *_registry_table(SCHEDULER_REGISTRY, 1), '']
    return '\n'.join(out)
