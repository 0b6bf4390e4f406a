"""The policy for keys of BasicSR and its descendants (docs/OPTIONS.md, srkit/config/compat.py).

BasicSR's keys keep their meaning, keys BasicSR ignores are accepted with a notice, ETDS's keys that srkit
translates are read as srkit's with a notice, anything else is an error; the model and network types are
checked first; test.py ignores ``train:``; ``scale`` may come from the datasets; ``prefetch_mode: cuda`` on
a CPU run is handled when the options are read.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from training_helpers import TINY_TRAIN, make_images, tiny_options

from srkit.config.options import parse_options, parse_yaml_text
from srkit.core.dist import DistContext
from srkit.core.errors import OptionError


def tiny_data(root: Path) -> dict[str, Any]:
    make_images(root / 'hr', 4)
    make_images(root / 'val', 2, seed=1)
    return parse_yaml_text(TINY_TRAIN.format(root=root))


def parse(data: dict[str, Any], is_train: bool = True):
    return parse_options(copy.deepcopy(data), is_train=is_train, source='policy.yml')


def test_a_key_basicsr_ignores_is_accepted_with_a_notice(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    plain = parse(data)
    options = parse({**data, 'print_network': True})
    assert options.notices == ['Option "print_network" has no effect: BasicSR never reads it either (HAT\'s and '
                               'SRFormer\'s files carry it).']
    assert plain.notices == [] and options.network_g == plain.network_g


def test_a_key_nobody_defines_is_still_an_error(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match='Unknown option "print_netwrok"') as caught:
        parse({**tiny_data(tmp_path), 'print_netwrok': True})
    assert caught.value.file == 'policy.yml'


def test_etds_resume_section_is_read_as_path_keys(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    options = parse({**data, 'resume': {'network_g_path': 'w.pth', 'network_g_strict': False}})
    assert options.path.pretrain_network_g == 'w.pth' and options.path.strict_load_g is False
    assert 'Option "resume.network_g_path" (ETDS) is read as "path.pretrain_network_g".' in options.notices
    assert parse({**data, 'resume': {'network_g_path': None, 'network_g_strict': True}}).path.pretrain_network_g is None


def test_etds_resume_section_refuses_what_it_cannot_mean(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    with pytest.raises(OptionError, match='"resume.network_g_path" .* and "path.pretrain_network_g" disagree'):
        parse({**data, 'resume': {'network_g_path': 'a.pth'}, 'path': {**data['path'], 'pretrain_network_g': 'b.pth'}})
    with pytest.raises(OptionError, match='"resume.state".*path.resume_state or --auto_resume') as caught:
        parse({**data, 'resume': {'state': 'x.state'}})
    assert caught.value.key == 'resume.state'


def test_use_vflip_with_hflip_and_rot_is_what_srkit_does_anyway(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    data['datasets']['train']['use_vflip'] = True
    options = parse(data)
    assert 'use_vflip' not in options.datasets['train'].args
    assert any('vertical flips are part of use_rot' in n for n in options.notices)


@pytest.mark.parametrize('flips', [{'use_vflip': False}, {'use_vflip': True, 'use_rot': False},
                                   {'use_vflip': True, 'use_hflip': False}])
def test_use_vflip_without_an_srkit_equivalent_points_at_use_rot(tmp_path: Path, flips: dict[str, bool]) -> None:
    data = tiny_data(tmp_path)
    data['datasets']['train'].update(flips)
    with pytest.raises(OptionError, match='vertical flips are part of use_rot') as caught:
        parse(data)
    assert caught.value.key == 'datasets.train.use_vflip'


def test_the_model_and_network_types_are_the_first_errors(tmp_path: Path) -> None:
    data = {**tiny_data(tmp_path), 'gt_usm': True, 'l1_gt_usm': True}  # Real-ESRGAN keys, on another model
    with pytest.raises(OptionError, match='No model called "RealESRGANModle".*RealESRGANModel') as caught:
        parse({**data, 'model_type': 'RealESRGANModle'})
    assert caught.value.key == 'model_type'
    with pytest.raises(OptionError, match='"gt_usm" belongs to model_type RealESRNetModel, '
                                          'not SRModel') as caught:
        parse(data)
    assert caught.value.key == 'gt_usm'
    for igconv_model in ('MSRModel', 'SwinIRMSModel', 'MambaMSModel'):  # IGConv's: srkit's MultiScaleModel
        options = parse({**tiny_data(tmp_path), 'model_type': igconv_model})
        assert options.model_type == 'MultiScaleModel'
        assert any(f'"model_type" {igconv_model} is read as MultiScaleModel' in n for n in options.notices)
    network = {'type': 'SwinIRIGPlus', 'embed_dim': 60}
    with pytest.raises(OptionError, match='No architecture called "SwinIRIGPlus"') as caught:
        parse({**data, 'network_g': network})
    assert caught.value.key == 'network_g.type'


def test_test_py_ignores_the_train_section_and_train_py_checks_it(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    data['train'] = {'total_iter': 'many', 'no_such_key': 1}
    options = parse(data, is_train=False)
    assert options.train is None
    assert options.notices == ['Option "train" is ignored by test.py (as by BasicSR\'s test.py).']
    with pytest.raises(OptionError, match='train.no_such_key|train.total_iter'):
        parse(data)


def test_scale_may_come_from_the_datasets(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    del data['scale'], data['network_g']['upscale']
    for entry in data['datasets'].values():
        entry['scale'] = 2
    options = parse(data)
    assert options.scale == 2 and options.datasets['val'].args['scale'] == 2
    assert 'Option "scale" is 2, the scale the datasets give.' in options.notices
    data['datasets']['val']['scale'] = 3
    with pytest.raises(OptionError, match=r'the datasets give scales \[2, 3\] and model_type SRModel'):
        parse(data)
    del data['datasets']['val']['scale']
    with pytest.raises(OptionError, match='Option "scale" is required'):
        parse(data)


def test_cuda_prefetch_on_a_cpu_run_is_handled_when_the_options_are_read(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    data['num_gpu'] = 0
    data['datasets']['train'].update(prefetch_mode='cuda', pin_memory=True)
    loader = parse(data).datasets['train'].loader
    assert loader.prefetch_mode is None and loader.pin_memory is False
    assert any('prefetch_mode" is cuda but num_gpu is 0' in n for n in parse(data).notices)


def test_notices_reach_the_training_log(tmp_path: Path) -> None:
    from srkit.engine.trainer import Trainer

    options = tiny_options(tmp_path, ['print_network=true', 'train.total_iter=1', 'val.val_freq=1'])
    Trainer(options, DistContext()).train()
    log = next((tmp_path / 'exp').glob('train_*.log')).read_text(encoding='utf-8')
    assert 'Option "print_network" has no effect' in log


def test_etds_model_type_losses_mapping_and_channel_shuffle_are_translated(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    data['model_type'] = 'IRModel'
    data['train'] = {**data['train'], 'losses': {'L1Loss': {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}}}
    del data['train']['pixel_opt']
    data['datasets']['train']['use_channels_shuffle'] = True
    options = parse(data)
    assert options.model_type == 'SRModel'
    assert [(c.type, c.args['loss_weight']) for c in options.train.losses] == [('L1Loss', 1.0)]
    assert options.datasets['train'].args['use_channel_shuffle'] is True
    assert 'Option "model_type" IRModel is read as SRModel (ETDS\'s IRModel trains as BasicSR\'s SRModel does).' in \
        options.notices
    data['train']['losses']['L1Loss']['names'] = ['a', 'b']
    with pytest.raises(OptionError, match='"train.losses.L1Loss.names"'):
        parse(data)
    data['train']['losses']['L1Loss'].pop('names')
    data['datasets']['train']['use_channel_shuffle'] = False
    with pytest.raises(OptionError, match='name the same thing; keep one'):
        parse(data)


def test_etds_model_keys_under_irmodel_have_no_effect(tmp_path: Path) -> None:
    """ETDS's only_ET ablation file gives IRModel the two keys of ETDSModel, which IRModel never reads."""
    data = tiny_data(tmp_path)
    data['model_type'] = 'IRModel'
    data['train'] = {**data['train'], 'fixed_residual_model_iters': 100, 'interpolation_loss_weight': 0.5}
    options = parse(data)
    assert 'Option "train.fixed_residual_model_iters" has no effect: IRModel never reads it.' in options.notices
    with pytest.raises(OptionError, match='train.fixed_residual_model_iters'):  # SRModel by its own name: an error
        parse({**data, 'model_type': 'SRModel'})
