"""The policy for keys of BasicSR and its descendants (docs/OPTIONS.md, srkit/config/compat.py).

BasicSR's keys keep their meaning, keys BasicSR ignores are accepted with a notice, keys of ETDS, HAT, SRFormer,
ATD and HiT-SR that srkit translates are read as srkit's with a notice, anything else is an error; the model and
network types are checked first; test.py ignores ``train:``; ``scale`` may come from the datasets;
``prefetch_mode: cuda`` on a CPU run is handled when the options are read.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from training_helpers import TINY_TRAIN, make_images, tiny_options

from srkit.config.compat import translate_dataset_keys, translate_model_type
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


@pytest.mark.parametrize('theirs, ours', [('SwinIRModel', 'SRModel'), ('HATModel', 'SRModel'), ('ATDModel', 'SRModel'),
                                          ('HITModel', 'SRModel'), ('MambaIRModel', 'SRModel')])
def test_the_transformer_hosts_model_types_are_srmodel(tmp_path: Path, theirs: str, ours: str) -> None:
    """HAT's, ATD's, SRFormer's (BasicSR's SwinIRModel), HiT-SR's and MambaIR's models are SRModel plus test-time
    padding to the window, which srkit's predict does for every network from its ArchSpec, or chopping."""
    options = parse({**tiny_data(tmp_path), 'model_type': theirs})
    assert options.model_type == ours
    assert any(n.startswith(f'Option "model_type" {theirs} is read as {ours} (') for n in options.notices)


def test_keys_the_hosts_files_carry_and_their_code_never_reads(tmp_path: Path) -> None:
    """SRFormer's and HiT-SR's top-level suffix / save_img, HiT-SR's datasets' task, a Real-HAT MSE model's
    optim_d: accepted with a notice each, and nothing else changes."""
    data = tiny_data(tmp_path)
    plain = parse(data)
    data = {**data, 'suffix': None, 'save_img': False}
    data['datasets']['train']['task'] = 'SR'
    options = parse(data)
    assert options.datasets == plain.datasets and options.val == plain.val
    assert [n.split(':')[0] for n in options.notices] == ['Option "suffix" has no effect', 'Option "save_img" has no '
                                                          'effect', 'Option "datasets.train.task" has no effect']
    with pytest.raises(OptionError, match='"datasets.train.meta_info_file"'):  # a key PairedImageDataset does read
        parse({**data, 'datasets': {**data['datasets'], 'train': {**data['datasets']['train'], 'meta_info_file': 1}}})


def test_smfanet_path_and_val_keys_basicsr_image_models_never_read(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    plain = parse(data)
    options = parse({**data, 'path': {**data['path'], 'param_key': None},
                     'val': {**data['val'], 'flip_seq': True, 'center_frame_only': True}})
    assert options.path == plain.path and options.val == plain.val
    assert [n.split(':')[0] for n in options.notices] == [
        'Option "path.param_key" has no effect', 'Option "val.flip_seq" has no effect',
        'Option "val.center_frame_only" has no effect']


def test_real_hat_files_keys_their_code_never_reads_have_no_effect() -> None:
    """HAT's Real-HAT files: meta_info_file on a RealESRGANDataset (which reads meta_info, in BasicSR and in HAT)
    and optim_d for RealHATMSEModel (Real-ESRNet's model, no discriminator)."""
    notices: list[str] = []
    entry = {'dataroot_gt': 'hr', 'meta_info_file': 'their_list.txt'}
    translate_dataset_keys('train', 'RealESRGANDataset', entry, notices)
    assert entry == {'dataroot_gt': 'hr'} and notices[0].startswith(
        'Option "datasets.train.meta_info_file" has no effect: BasicSR\'s and HAT\'s RealESRGANDataset read meta_info')
    paired = {'dataroot_gt': 'hr', 'meta_info_file': 'list.txt'}
    translate_dataset_keys('train', 'PairedImageDataset', paired, notices)  # a key PairedImageDataset reads
    assert paired['meta_info_file'] == 'list.txt' and len(notices) == 1
    data = translate_model_type({'model_type': 'RealHATMSEModel', 'train': {'optim_g': {}, 'optim_d': {}}}, notices)
    assert data == {'model_type': 'RealESRNetModel', 'train': {'optim_g': {}}}
    assert notices[-1] == 'Option "train.optim_d" has no effect: RealHATMSEModel never reads it.'
    assert translate_model_type({'model_type': 'RealHATGANModel', 'train': {'optim_d': {}}}, [])['train'] == \
        {'optim_d': {}}


def test_hat_tile_section_is_read_as_srkit_tiles(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    options = parse({**data, 'model_type': 'HATModel', 'tile': {'tile_size': 64, 'tile_pad': 8}}, is_train=False)
    assert (options.val.tile_size, options.val.tile_overlap) == (64, 8)
    assert 'Option "tile" (HAT) is read as "val.tile_size: 64", "val.tile_overlap: 8" (the same tiles).' in \
        options.notices
    assert parse({**data, 'tile': None}, is_train=False).val.tile_size == 0
    with pytest.raises(OptionError, match='"tile" and "val.tile_size" disagree'):
        parse({**data, 'tile': {'tile_size': 64, 'tile_pad': 8}, 'val': {**data['val'], 'tile_size': 32}})
    with pytest.raises(OptionError, match='Option "tile" .* tile_size and tile_pad'):
        parse({**data, 'tile': {'tile_size': 64}})


def test_hit_sr_use_chop_is_read_as_tiles_of_at_most_200_pixels(tmp_path: Path) -> None:
    data = tiny_data(tmp_path)
    whole = parse({**data, 'val': {**data['val'], 'use_chop': False}})
    assert whole.val.tile_size == 0 and any('"val.use_chop" (HiT-SR) is false' in n for n in whole.notices)
    chopped = parse({**data, 'val': {**data['val'], 'use_chop': True}})
    assert (chopped.val.tile_size, chopped.val.tile_overlap) == (200, 16)
    with pytest.raises(OptionError, match='"val.use_chop" .* true or false'):
        parse({**data, 'val': {**data['val'], 'use_chop': 'yes'}})
