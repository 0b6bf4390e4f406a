"""Strict options: every mistake names the dotted key and the closest valid name."""
import textwrap

import pytest

from srkit.config.options import apply_overrides, load_options, parse_options, parse_yaml_text
from srkit.core.errors import OptionError

BASE = textwrap.dedent('''
    name: unit
    model_type: SRModel
    scale: 2
    manual_seed: 0
    datasets:
      train:
        name: T
        type: HRBicubicDataset
        dataroot_gt: /nonexistent
        gt_size: 32
        batch_size_per_gpu: 4
      val_1:
        name: V
        type: PairedImageDataset
        dataroot_gt: /a
        dataroot_lq: /b
    network_g:
      type: EDSR_tiny
      upscale: 2
    train:
      total_iter: !!float 1e3
      optim_g: {type: Adam, lr: 1e-4, betas: [0.9, 0.99]}
      scheduler: {type: MultiStepLR, milestones: [500], gamma: 0.5}
      pixel_opt: {type: L1Loss, loss_weight: 1.0}
    val:
      val_freq: !!float 5e2
      metrics:
        psnr: {type: calculate_psnr, crop_border: 2, test_y_channel: true}
''')


def parse(overrides=(), text=BASE, is_train=True):
    return parse_options(apply_overrides(parse_yaml_text(text), list(overrides)), is_train=is_train, source='x.yml')


def test_valid_file_parses_with_types():
    opt = parse()
    assert opt.train.total_iter == 1000 and isinstance(opt.train.total_iter, int)
    assert opt.train.optim_g.args['lr'] == pytest.approx(1e-4)  # 1e-4 read as a float, not a string
    assert opt.val.val_freq == 500
    assert opt.datasets['train'].loader.batch_size_per_gpu == 4
    assert opt.datasets['train'].args['scale'] == 2  # injected
    assert opt.datasets['val_1'].phase == 'val'


@pytest.mark.parametrize('override, message', [
    ('train.total_iters=5', 'Unknown option "train.total_iters".*Did you mean "train.total_iter"'),
    ('network_g.num_feats=8', 'Unknown option "network_g.num_feats".*architecture EDSR_tiny'),
    ('datasets.train.gt_sise=8', 'Unknown option "datasets.train.gt_sise".*Did you mean "datasets.train.gt_size"'),
    ('datasets.train.batch_size_per_gpus=8', 'Did you mean "datasets.train.batch_size_per_gpu"'),
    ('train.optim_g.betass=[0.9,0.9]', 'Unknown option "train.optim_g.betass".*Did you mean "train.optim_g.betas"'),
    ('train.pixel_opt.type=L1Los', 'Did you mean "L1Loss"'),
    ('network_g.type=EDSR_tny', 'Did you mean "EDSR_tiny"'),
    ('scale=two', 'Option "scale" must be integer, got string'),
    ('train.total_iter=[1]', 'Option "train.total_iter" must be integer'),
    ('val.metrics.psnr.crop_bordr=2', 'Did you mean "val.metrics.psnr.crop_border"'),
    ('logger.print_freqq=2', 'Did you mean "logger.print_freq"'),
    ('network_g.upscale=4', '"network_g.upscale" is 4 but "scale" is 2'),
    ('datasets.tran={name: a, type: HRBicubicDataset, dataroot_gt: x}', 'did you mean "train"'),
])
def test_mistakes_name_the_key(override, message):
    with pytest.raises(OptionError, match=message):
        parse([override])


def test_every_error_names_the_file():
    with pytest.raises(OptionError, match=r'^x\.yml: '):
        parse(['train.total_iters=5'])


def test_missing_required_keys():
    with pytest.raises(OptionError, match='"train.total_iter" is required'):
        parse(['train={optim_g: {type: Adam, lr: 0.1}, pixel_opt: {type: L1Loss}}'])
    with pytest.raises(OptionError, match='"datasets.train.dataroot_gt" is required'):
        parse(['datasets.train={name: a, type: HRBicubicDataset}'])
    with pytest.raises(OptionError, match='defines no loss'):
        parse(['train.pixel_opt=null'])


def test_malformed_yaml_names_line(tmp_path):
    bad = tmp_path / 'bad.yml'
    bad.write_text('name: x\nscale: [2\n')
    with pytest.raises(OptionError, match=r'bad\.yml: malformed YAML at line \d+'):
        load_options(bad, is_train=True)


def test_duplicate_keys_refused():
    with pytest.raises(OptionError, match='duplicate key "scale"'):
        parse_yaml_text('scale: 2\nscale: 3\n')


def test_missing_file():
    with pytest.raises(OptionError, match='does not exist'):
        load_options('/nonexistent/x.yml', is_train=True)


def test_overrides_are_yaml_never_code():
    data = apply_overrides({'a': {'b': 1}}, ['a.b=__import__("os").getcwd()', 'a:c=[1, 2]', 'd.e=1.5e-3'])
    assert data['a']['b'] == '__import__("os").getcwd()'  # a string, not evaluated
    assert data['a']['c'] == [1, 2] and data['d']['e'] == pytest.approx(1.5e-3)
    with pytest.raises(OptionError, match='must look like'):
        apply_overrides({}, ['novalue'])


def test_any_torch_optimizer_and_scheduler_by_name():
    opt = parse(['train.optim_g={type: RAdam, lr: 0.001}', 'train.scheduler={type: StepLR, step_size: 10}'])
    assert opt.train.optim_g.type == 'RAdam'
    with pytest.raises(OptionError, match='"train.scheduler.step_sise".*Did you mean "train.scheduler.step_size"'):
        parse(['train.scheduler={type: StepLR, step_sise: 10}'])


def test_losses_as_list_and_basicsr_keys():
    opt = parse(['train.losses=[{type: CharbonnierLoss, loss_weight: 1.0}, {type: FFTLoss, loss_weight: 0.1}]'])
    assert [c.type for _, c in opt.train.all_losses()] == ['L1Loss', 'CharbonnierLoss', 'FFTLoss']


def test_test_options_need_no_train_section():
    text = BASE.split('train:\n  total_iter')[0]
    text = text.replace('  train:\n    name: T', '  test_1:\n    name: T').replace('    batch_size_per_gpu: 4\n', '')
    opt = parse(text=text, is_train=False)
    assert opt.train is None and opt.datasets_of('test')[0].name == 'T'


@pytest.mark.parametrize('key, value, message', [
    ('batch_size_per_gpu', 4, 'must be 1 for a val_1 dataset'),
    ('use_shuffle', True, 'applies to training datasets only'),
    ('dataset_enlarge_ratio', 2, 'applies to training datasets only'),
])
def test_evaluation_refuses_training_only_loader_keys(key, value, message):
    with pytest.raises(OptionError, match=message) as caught:
        parse([f'datasets.val_1.{key}={value}'])
    assert caught.value.key == f'datasets.val_1.{key}' and caught.value.file == 'x.yml'


def test_metric_input_order_is_refused_not_ignored():
    with pytest.raises(OptionError, match='input_order.*NCHW.*remove it') as caught:
        parse(['val.metrics.psnr.input_order=HWC'])
    assert caught.value.key == 'val.metrics.psnr.input_order'


def test_a_metric_keeps_its_own_direction_unless_the_file_says_otherwise():
    metrics = parse(['val.metrics.niqe={type: niqe}', 'val.metrics.psnr_low={type: psnr, better: lower}']).val.metrics
    assert metrics['niqe'].args['better'] == 'lower'  # NIQE registers as lower-is-better
    assert metrics['psnr'].args['better'] == 'higher' and metrics['psnr_low'].args['better'] == 'lower'


def test_evaluation_accepts_its_loader_keys():
    opt = parse(['datasets.val_1.num_worker_per_gpu=2', 'datasets.val_1.batch_size_per_gpu=1'])
    assert opt.datasets_of('val')[0].loader.num_worker_per_gpu == 2


def test_scale_unsupported_by_arch():
    with pytest.raises(OptionError, match='supports scales'):
        parse(['scale=5', 'network_g.upscale=5'])
