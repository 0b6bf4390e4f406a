"""Option files written for BasicSR run after changing only paths (and types srkit does not have)."""
import textwrap

from srkit.config.options import parse_options, parse_yaml_text

# The layout of BasicSR's options/train/EDSR/train_EDSR_Mx2.yml, with local paths.
BASICSR_TRAIN = textwrap.dedent('''
    # general settings
    name: 201_EDSR_Mx2_f64b16_DIV2K_300k_B16G1_wandb
    model_type: SRModel
    scale: 2
    num_gpu: 1  # set num_gpu: 0 for cpu mode
    manual_seed: 10

    # dataset and data loader settings
    datasets:
      train:
        name: DIV2K
        type: PairedImageDataset
        dataroot_gt: {root}/DIV2K_train_HR_sub
        dataroot_lq: {root}/DIV2K_train_LR_bicubic_X2_sub
        meta_info_file: ~
        filename_tmpl: '{{}}'
        io_backend:
          type: disk

        gt_size: 96
        use_hflip: true
        use_rot: true

        # data loader
        use_shuffle: true
        num_worker_per_gpu: 6
        batch_size_per_gpu: 16
        dataset_enlarge_ratio: 100
        prefetch_mode: ~

      val:
        name: Set5
        type: PairedImageDataset
        dataroot_gt: {root}/Set5/GTmod12
        dataroot_lq: {root}/Set5/LRbicx2
        io_backend:
          type: disk

    # network structures
    network_g:
      type: EDSR
      num_in_ch: 3
      num_out_ch: 3
      num_feat: 64
      num_block: 16
      upscale: 2
      res_scale: 1
      img_range: 255.
      rgb_mean: [0.4488, 0.4371, 0.4040]

    # path
    path:
      pretrain_network_g: ~
      strict_load_g: true
      resume_state: ~

    # training settings
    train:
      ema_decay: 0.999
      optim_g:
        type: Adam
        lr: !!float 1e-4
        weight_decay: 0
        betas: [0.9, 0.99]

      scheduler:
        type: MultiStepLR
        milestones: [200000]
        gamma: 0.5

      total_iter: 300000
      warmup_iter: -1  # no warm up

      # losses
      pixel_opt:
        type: L1Loss
        loss_weight: 1.0
        reduction: mean

    # validation settings
    val:
      val_freq: !!float 5e3
      save_img: false

      metrics:
        psnr: # metric name, can be arbitrary
          type: calculate_psnr
          crop_border: 2
          test_y_channel: false

    # logging settings
    logger:
      print_freq: 100
      save_checkpoint_freq: !!float 5e3
      use_tb_logger: true
      wandb:
        project: ~
        resume_id: ~

    # dist training settings
    dist_params:
      backend: nccl
      port: 29500
''')

BASICSR_TEST = textwrap.dedent('''
    name: EDSR_Mx2_f64b16_DIV2K_official-3ba7b086
    model_type: SRModel
    scale: 2
    num_gpu: 1  # set num_gpu: 0 for cpu mode
    manual_seed: 0

    datasets:
      test_1:  # the 1st test dataset
        name: Set5
        type: PairedImageDataset
        dataroot_gt: {root}/Set5/GTmod12
        dataroot_lq: {root}/Set5/LRbicx2
        io_backend:
          type: disk
      test_2:  # the 2nd test dataset
        name: Set14
        type: PairedImageDataset
        dataroot_gt: {root}/Set14/GTmod12
        dataroot_lq: {root}/Set14/LRbicx2
        io_backend:
          type: disk

    # network structures
    network_g:
      type: EDSR
      num_in_ch: 3
      num_out_ch: 3
      num_feat: 64
      num_block: 16
      upscale: 2
      res_scale: 1
      img_range: 255.
      rgb_mean: [0.4488, 0.4371, 0.4040]

    # path
    path:
      pretrain_network_g: experiments/pretrained_models/EDSR/EDSR_Mx2_f64b16_DIV2K_official-3ba7b086.pth
      strict_load_g: true

    # validation settings
    val:
      save_img: true
      suffix: ~  # add suffix to saved images, if None, use exp name

      metrics:
        psnr: # metric name, can be arbitrary
          type: calculate_psnr
          crop_border: 2
          test_y_channel: false
        ssim:
          type: calculate_ssim
          crop_border: 2
          test_y_channel: false
''')


def test_basicsr_train_file_parses(tmp_path):
    opt = parse_options(parse_yaml_text(BASICSR_TRAIN.format(root=tmp_path)), is_train=True, source='edsr.yml')
    assert opt.train.total_iter == 300000 and opt.logger.save_checkpoint_freq == 5000
    assert opt.datasets['train'].loader.batch_size_per_gpu == 16
    assert opt.datasets['train'].args['filename_tmpl'] == '{}'
    assert opt.network_g.args['img_range'] == 255.0


def test_basicsr_test_file_parses(tmp_path):
    opt = parse_options(parse_yaml_text(BASICSR_TEST.format(root=tmp_path)), is_train=False, source='edsr.yml')
    assert [d.name for d in opt.datasets_of('test')] == ['Set5', 'Set14']
    assert set(opt.val.metrics) == {'psnr', 'ssim'}
