"""Option files written for BasicSR and the repositories built on it: the policy of docs/OPTIONS.md in one place.

Keys BasicSR reads are srkit's own options and keep BasicSR's meaning. Keys BasicSR ignores are accepted
with one notice saying they have no effect (``IGNORED_TOP_LEVEL``). Keys of BasicSR-derived repositories
that srkit translates (ETDS's ``resume:`` section, ``IRModel``, ``train.losses`` as a mapping, ``use_vflip``
and ``use_channels_shuffle``) become srkit options, each with a notice saying what they were read as.
Anything else stays an error of the strict parser. Every function here works on the raw YAML mapping before
it is parsed and appends what it did to ``notices``, which the entry points log once the run's log exists.
"""
from __future__ import annotations

from typing import Any

from srkit.core.errors import OptionError

__all__ = ['IGNORED_TOP_LEVEL', 'IGNORED_SECTION_KEYS', 'IGNORED_DATASET_KEYS', 'MODEL_TYPE_TRANSLATIONS',
           'IGNORED_TRAIN_KEYS', 'HAT_TILE_KEYS', 'HIT_CHOP', 'TRAIN_KEY_RENAMES', 'ETDS_RESUME_KEYS',
           'translate_model_type', 'translate_top_level', 'translate_dataset_keys', 'translate_flips',
           'drop_train_section', 'datasets_scale']

# Top-level keys found in published BasicSR-style files that BasicSR itself never reads.
IGNORED_TOP_LEVEL: dict[str, str] = {
    'print_network': "BasicSR never reads it either (HAT's and SRFormer's files carry it)",
    'suffix': "BasicSR reads val.suffix, never a top-level suffix (SRFormer's and HiT-SR's test files carry one)",
    'save_img': "BasicSR reads val.save_img, never a top-level save_img (SRFormer's test files carry one)",
}
# Keys of the ``path`` and ``val`` sections that BasicSR's image models never read: section -> key -> why.
IGNORED_SECTION_KEYS: dict[str, dict[str, str]] = {
    'path': {'param_key': "BasicSR reads path.param_key_g, never param_key (SMFANet's test files carry it)"},
    'val': {'flip_seq': "a key of BasicSR's video models, which its image models never read (SMFANet's files)",
            'center_frame_only': "a key of BasicSR's video models, which its image models never read (SMFANet's "
                                 'files)'},
}
# Keys of ``datasets.<key>`` that the authors' code never read: key -> (dataset type it applies to, or None for
# every type; why). Accepted with a notice, as top-level keys BasicSR ignores are.
IGNORED_DATASET_KEYS: dict[str, tuple[str | None, str]] = {
    'task': (None, "HiT-SR's files label their sets with it; no code of theirs reads it"),
    'meta_info_file': ('RealESRGANDataset', "BasicSR's and HAT's RealESRGANDataset read meta_info, so every image "
                       "of dataroot_gt is used (HAT's Real-HAT training files carry it)"),
}

# model_type names of BasicSR-derived repositories that are srkit models under another name.
MODEL_TYPE_TRANSLATIONS: dict[str, tuple[str, str]] = {
    'IRModel': ('SRModel', "ETDS's IRModel trains as BasicSR's SRModel does"),
    'MSRModel': ('MultiScaleModel', "IGConv's multi-scale model: one scale per batch, net(lq, scale)"),
    'SwinIRMSModel': ('MultiScaleModel', "IGConv's MSRModel padding inputs to the window size, which srkit "
                      "does for every network from its pad_multiple"),
    'MambaMSModel': ('MultiScaleModel', "IGConv's MSRModel testing large images in chunks; srkit evaluates "
                     'whole images unless val.tile_size is set'),
    'SwinIRModel': ('SRModel', "BasicSR's SRModel padding test inputs to the window size, which srkit does for "
                    'every network from its pad_multiple'),
    'HATModel': ('SRModel', "HAT's SRModel padding test inputs to the window size (srkit: every network's "
                 'pad_multiple), tiling them where the file has a top-level tile section'),
    'ATDModel': ('SRModel', "ATD's SRModel, whose network pads its input itself"),
    'HITModel': ('SRModel', "HiT-SR's SRModel, testing in overlapping chops where val.use_chop is true"),
    'RealHATMSEModel': ('RealESRNetModel', "Real-ESRNet's model with HAT's test-time padding"),
    'RealHATGANModel': ('RealESRGANModel', "Real-ESRGAN's model with HAT's test-time padding"),
    'MambaIRModel': ('SRModel', "MambaIR's SRModel, which tests images over 200 LR pixels in overlapping sections; "
                     'srkit evaluates whole images unless val.tile_size is set (MambaIR is not tiling-exact, so the '
                     'two differ slightly)'),
}
# HAT's top-level ``tile: {tile_size, tile_pad}`` -> srkit's val options (the same tiles: tile_pad LR pixels of
# context on each side, cropped away after the network).
HAT_TILE_KEYS: dict[str, str] = {'tile_size': 'tile_size', 'tile_pad': 'tile_overlap'}
# HiT-SR's ``val.use_chop: true``: sections of at most 200 LR pixels, overlapping by 16 (its hit_model.py).
HIT_CHOP = {'tile_size': 200, 'tile_overlap': 16}
# ``train:`` keys such a model never reads, and which files carry them.
IGNORED_TRAIN_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    'IRModel': (('fixed_residual_model_iters', 'interpolation_loss_weight'), "ETDS's ablation files carry it"),
    'RealHATMSEModel': (('optim_d',), "HAT's Real-HAT MSE file carries it; the model has no discriminator"),
}

# ``train:`` keys of BasicSR-derived repositories that name one of srkit's (BasicSR's) keys.
TRAIN_KEY_RENAMES: dict[str, tuple[str, str]] = {
    'artifacts_opt': ('ldl_opt', "EIMN's name for LDL's artifact loss, BasicSR's ldl_opt"),
}

# ETDS's ``resume:`` section (its IRModel loads these weights before training or testing) -> srkit's ``path``.
ETDS_RESUME_KEYS: dict[str, str] = {
    'network_g_path': 'pretrain_network_g',
    'network_g_strict': 'strict_load_g',
}


def translate_top_level(data: dict[str, Any], notices: list[str]) -> dict[str, Any]:
    """A copy of ``data`` without the ignored top-level keys and with ETDS's ``resume:`` moved into ``path:``."""
    data = dict(data)
    for key, why in IGNORED_TOP_LEVEL.items():
        if key in data:
            del data[key]
            notices.append(f'Option "{key}" has no effect: {why}.')
    for section, keys in IGNORED_SECTION_KEYS.items():
        present = [key for key in keys if isinstance(data.get(section), dict) and key in data[section]]
        if present:
            data[section] = {k: v for k, v in data[section].items() if k not in present}
            notices += [f'Option "{section}.{key}" has no effect: {keys[key]}.' for key in present]
    if 'resume' in data:
        data['path'] = _translate_etds_resume(data.pop('resume'), data.get('path'), notices)
    if 'tile' in data:
        data['val'] = _translate_hat_tile(data.pop('tile'), data.get('val'), notices)
    if isinstance(data.get('val'), dict) and 'use_chop' in data['val']:
        data['val'] = _translate_hit_chop(dict(data['val']), notices)
    if isinstance(data.get('train'), dict):
        data['train'] = _rename_train_keys(data['train'], notices)
    if isinstance(data.get('train'), dict) and isinstance(data['train'].get('losses'), dict):
        data['train'] = {**data['train'], 'losses': _etds_losses(data['train']['losses'])}
        notices.append('Option "train.losses" (ETDS: a mapping of named losses) is read as the list of its losses.')
    return data


def _tiles_into(val: Any, tiles: dict[str, Any], theirs: str) -> Any:
    """``val`` with srkit's tile options set to ``tiles``; a different value already there is refused."""
    val = dict(val) if isinstance(val, dict) else {} if val is None else val
    if not isinstance(val, dict):
        return val  # the parser reports a "val" that is not a mapping
    for key, value in tiles.items():
        if key in val and val[key] != value:
            raise OptionError(f'Options "{theirs}" and "val.{key}" disagree ({value!r} vs {val[key]!r}); keep one.',
                              key=theirs)
        val[key] = value
    return val


def _translate_hat_tile(tile: Any, val: Any, notices: list[str]) -> Any:
    if tile is None:
        notices.append('Option "tile" (HAT) is empty: images are evaluated whole.')
        return val
    if not isinstance(tile, dict) or set(tile) != set(HAT_TILE_KEYS):
        raise OptionError(f'Option "tile" (HAT\'s tile mode) must be a mapping of {" and ".join(HAT_TILE_KEYS)}; '
                          f'got {tile!r}.', key='tile')
    notices.append('Option "tile" (HAT) is read as ' + ', '.join(
        f'"val.{ours}: {tile[theirs]}"' for theirs, ours in HAT_TILE_KEYS.items()) + ' (the same tiles).')
    return _tiles_into(val, {ours: tile[theirs] for theirs, ours in HAT_TILE_KEYS.items()}, 'tile')


def _translate_hit_chop(val: dict[str, Any], notices: list[str]) -> dict[str, Any]:
    chop = val.pop('use_chop')
    if chop is False:
        notices.append('Option "val.use_chop" (HiT-SR) is false: images are evaluated whole, as without it.')
        return val
    if chop is not True:
        raise OptionError(f'Option "val.use_chop" (HiT-SR) must be true or false; got {chop!r}.', key='val.use_chop')
    notices.append('Option "val.use_chop" (HiT-SR) is read as ' + ', '.join(
        f'"val.{key}: {value}"' for key, value in HIT_CHOP.items()) + ': tiles of at most 200 LR pixels '
        'overlapping by 16, as its chops (whose borders fall a few pixels elsewhere).')
    return _tiles_into(val, HIT_CHOP, 'val.use_chop')


def _rename_train_keys(train: dict[str, Any], notices: list[str]) -> dict[str, Any]:
    train = dict(train)
    for theirs, (ours, why) in TRAIN_KEY_RENAMES.items():
        if theirs in train:
            if ours in train:
                raise OptionError(f'Options "train.{theirs}" and "train.{ours}" are the same loss ({why}); keep one.',
                                  key=f'train.{theirs}')
            train[ours] = train.pop(theirs)
            notices.append(f'Option "train.{theirs}" is read as "train.{ours}" ({why}).')
    return train


def translate_model_type(data: dict[str, Any], notices: list[str]) -> dict[str, Any]:
    """A copy of ``data`` with a ``model_type`` of MODEL_TYPE_TRANSLATIONS renamed to srkit's (done before the types
    are looked up, which comes before every other check)."""
    model_type = data.get('model_type')
    if not isinstance(model_type, str) or model_type not in MODEL_TYPE_TRANSLATIONS:
        return data
    ours, why = MODEL_TYPE_TRANSLATIONS[model_type]
    notices.append(f'Option "model_type" {model_type} is read as {ours} ({why}).')
    data = {**data, 'model_type': ours}
    train = data.get('train')
    keys = IGNORED_TRAIN_KEYS.get(model_type, ((), ''))[0]
    ignored = [k for k in keys if k in train] if isinstance(train, dict) else []
    if isinstance(train, dict) and ignored:
        data['train'] = {k: v for k, v in train.items() if k not in ignored}
        notices += [f'Option "train.{k}" has no effect: {model_type} never reads it.' for k in ignored]
    return data


def _etds_losses(losses: dict[str, Any]) -> list[Any]:
    """ETDS's ``losses: {<name>: {type: ..., ...}}``: the values, in order. ``names`` (a loss returning several
    terms, each logged under its own name) has no srkit equivalent."""
    for name, loss in losses.items():
        if isinstance(loss, dict) and 'names' in loss:
            raise OptionError(f'Option "train.losses.{name}.names": srkit logs each loss under its type; a loss '
                              'returning several named terms is not supported. Remove it.',
                              key=f'train.losses.{name}.names')
    return list(losses.values())


def _translate_etds_resume(resume: Any, path: Any, notices: list[str]) -> Any:
    if resume is None:
        return path
    if not isinstance(resume, dict):
        raise OptionError('Option "resume" (ETDS\'s section: network_g_path, network_g_strict) must be a mapping.',
                          key='resume')
    unknown = sorted(set(resume) - set(ETDS_RESUME_KEYS))
    if unknown:
        raise OptionError(f'Unknown option "resume.{unknown[0]}": srkit reads ETDS\'s "resume" section as '
                          f'{", ".join(f"resume.{k} -> path.{v}" for k, v in ETDS_RESUME_KEYS.items())}. '
                          'To continue a training run, use path.resume_state or --auto_resume.',
                          key=f'resume.{unknown[0]}')
    path = dict(path) if isinstance(path, dict) else {} if path is None else path
    if not isinstance(path, dict):
        return path  # the parser reports a "path" that is not a mapping
    for etds_key, srkit_key in ETDS_RESUME_KEYS.items():
        if etds_key not in resume:
            continue
        if srkit_key in path and path[srkit_key] != resume[etds_key]:
            raise OptionError(f'Options "resume.{etds_key}" (ETDS\'s name) and "path.{srkit_key}" disagree '
                              f'({resume[etds_key]!r} vs {path[srkit_key]!r}); keep one.', key=f'resume.{etds_key}')
        path[srkit_key] = resume[etds_key]
        notices.append(f'Option "resume.{etds_key}" (ETDS) is read as "path.{srkit_key}".')
    return path


def translate_dataset_keys(key: str, dataset_type: str, entry: dict[str, Any], notices: list[str]) -> None:
    """Other repositories' names for keys of ``datasets.<key>``, in place: ETDS's ``use_vflip`` (translate_flips)
    and ``use_channels_shuffle``, srkit's ``use_channel_shuffle`` (both draw a random order of the colour
    channels); EIMN's ``io_backend: {type: scandir}``, srkit's disk backend; and IGNORED_DATASET_KEYS, removed."""
    for name, (applies_to, why) in IGNORED_DATASET_KEYS.items():
        if name in entry and applies_to in (None, dataset_type):
            del entry[name]
            notices.append(f'Option "datasets.{key}.{name}" has no effect: {why}.')
    translate_flips(key, entry, notices)
    if 'use_channels_shuffle' in entry:
        if 'use_channel_shuffle' in entry:
            raise OptionError(f'Options "datasets.{key}.use_channels_shuffle" (ETDS\'s name) and '
                              f'"datasets.{key}.use_channel_shuffle" name the same thing; keep one.',
                              key=f'datasets.{key}.use_channels_shuffle')
        entry['use_channel_shuffle'] = entry.pop('use_channels_shuffle')
        notices.append(f'Option "datasets.{key}.use_channels_shuffle" (ETDS) is read as "use_channel_shuffle".')
    backend = entry.get('io_backend')
    if isinstance(backend, dict) and backend.get('type') == 'scandir':
        entry['io_backend'] = {**backend, 'type': 'disk'}
        notices.append(f'Option "datasets.{key}.io_backend.type" scandir (EIMN\'s Real-ESRGAN files: every image of '
                       'the folder, read from disk) is read as disk, which lists the folder the same way.')


def translate_flips(key: str, entry: dict[str, Any], notices: list[str]) -> None:
    """ETDS's ``use_vflip`` in ``datasets.<key>``, removed from ``entry`` where it changes nothing.

    ETDS flips rows (``use_hflip``) and columns (``use_vflip``) and transposes (``use_rot``), each with
    probability 1/2; BasicSR (and srkit) flip columns (``use_hflip``), and ``use_rot`` draws a row flip and a
    transpose. With all three on, both draw each of the 8 flips/rotations of a square with probability 1/8,
    so ``use_vflip: true`` next to ``use_hflip: true`` and ``use_rot: true`` is what srkit does anyway.
    Anything else has no srkit equivalent and is refused.
    """
    if 'use_vflip' not in entry:
        return
    path = f'datasets.{key}'
    if entry['use_vflip'] is True and entry.get('use_hflip') is True and entry.get('use_rot') is True:
        del entry['use_vflip']
        notices.append(f'Option "{path}.use_vflip" (ETDS) has no effect of its own: with use_hflip and use_rot on, '
                       'vertical flips are part of use_rot, which already draws all 8 flips and rotations.')
        return
    raise OptionError(f'Option "{path}.use_vflip": vertical flips are part of use_rot (BasicSR\'s meaning: a row '
                      'flip and a transpose, each with probability 1/2); remove it and set use_rot.',
                      key=f'{path}.use_vflip')


def drop_train_section(data: dict[str, Any], notices: list[str]) -> dict[str, Any]:
    """test.py reads no training options, as BasicSR's test.py; a ``train:`` section is dropped, not checked."""
    if data.get('train') is None:
        return data
    notices.append('Option "train" is ignored by test.py (as by BasicSR\'s test.py).')
    return {k: v for k, v in data.items() if k != 'train'}


def datasets_scale(data: dict[str, Any], multi_scale: bool) -> int | None:
    """The top-level ``scale`` a file leaves out, from its datasets: each must give one (``scale``, or IGConv's
    ``ds_scale``); they must agree unless the model is multi-scale, where the first one is the default of
    anything that needs a single scale, and a training set drawing ``random_scales`` gives none. None where a
    dataset gives none (the parser then asks for ``scale``).
    """
    datasets = data.get('datasets')
    if not isinstance(datasets, dict) or not datasets:
        return None
    scales = []
    for entry in datasets.values():
        if multi_scale and isinstance(entry, dict) and 'random_scales' in entry:
            continue
        given = entry.get('scale', entry.get('ds_scale')) if isinstance(entry, dict) else None
        if not isinstance(given, int) or isinstance(given, bool):
            return None
        scales.append(given)
    if not scales:
        return None
    if len(set(scales)) > 1 and not multi_scale:
        raise OptionError(f'Option "scale" is required: the datasets give scales {sorted(set(scales))} and model_type '
                          f'{data.get("model_type", "SRModel")} trains and tests one scale.', key='scale')
    return scales[0]
