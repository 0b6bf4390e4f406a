"""The authors' official option files (../shared/seed_options) build and run after changing only what a user may.

Each of the 149 files is rewritten by tests/seed_options_harness.py (dataset and weight paths, num_gpu, output
roots: its docstring has the rules, and test_rewrite_changes_only_what_a_user_may_change checks them on every
file), then built as train.py / test.py build it before their first step. A file is a training file when it
sits under a train/ folder and a test file under a test/ folder (harness.kind_of: the four repositories keep
them apart that way; content cannot decide, since some test files carry a train: section).

A file that needs a feature of an open issue is listed in EXPECTED_FAILURES with that issue's subject; it must
still fail (a listed file that builds fails the test: remove it), so the list stays true and is empty once
those issues are resolved. Where a file fails for several issues, it carries the issue of the first missing
feature, a missing network/model/dataset type before framework keys. Every other file must build, and then
runs its first step on the CPU: one training iteration on small patches, or test.py on Set5 (one image per
set) with seeded random weights where no checkpoint is here, unless its network is listed in BUILD_ONLY as
too big for a CPU. A training file listed in UNVALIDATED runs its iteration without the validation that would
follow it (a whole Set5 image through its 10-40M-parameter network takes minutes on a CPU; its test files,
which evaluate the same network, are BUILD_ONLY). Where ../shared is absent every test here skips, saying why.

The first steps are marked ``seed_runs`` and run as CI's second step (``python -m pytest -n 2 -m seed_runs``, in
the README), which issue 13 allows so that they do not slow the default suite; everything else runs by default.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED, shared_path
from seed_options_harness import NEVER, first_error, kind_of, rewrite, run, seed_files

from srkit.config.options import load_yaml

TRANSFORMERS = "#14 IGConv's transformer hosts (SwinIR, SRFormer, HAT, ATD, HiT-SRF)"
IGCONV = '#15 IGConv as released (CNN and Mamba hosts, checkpoint layout, MSRModel and its option keys)'
REALESRGAN = '#17 Real-world SR and GAN training (Real-ESRGAN)'
ISSUES = (TRANSFORMERS, IGCONV, REALESRGAN)

# file (relative to seed_options) -> the open issue whose feature it needs first
EXPECTED_FAILURES: dict[str, str] = {
    # #14: ATD, HAT, HiT-SRF, SRFormer and SwinIR hosts (first missing: the network type; then SwinIRMSModel or
    # MambaMSModel, and in test files the top-level scale given only by each set's ds_scale).
    # #15: EDSR, RCAN, RDN, PLKSR, SMFANet and MambaIR hosts: EDSRIG/RCANIGPlus/... network types, MSRModel or
    # MambaMSModel, the Fixed/RandomScale datasets (ds_scale, random_scales, lq_size), test files without scale.
}

# Failures no open issue owns, reported to the project lead; they stay expected failures until decided.
NO_OPEN_ISSUE: dict[str, str] = {
    'MMA/options/test/MMA/test_MMA_x3.yml': 'network_g.res_scale: 0.1, which MMA does not take; the official '
                                            'MMA constructor refuses it too (TypeError), so the file never ran '
                                            'as published',
}

_MMA = ('MMA as published (num_feat 192, 24 blocks, 19.8M parameters) is too big for a CPU: one training '
        'iteration on 16x16 LR patches took 79 s on one thread, one 63x63 image 84 s (pure-PyTorch scan)')
_BIG_IGCONV = ('over 5M parameters (the registry sweep\'s limit for full-size inputs): one 64x64 LR forward at x4 '
               'takes 2.5-8.6 s on one CPU thread (RCANIGPlus 2.5, SwinIRMS 4.1, EDSRIGPlus 5.4, HAT_IGConvPlus '
               '8.6 s), and a test file evaluates 15 sets, up to 128x128 LR: 22-175 s a file by hand '
               '(test_big_official_file_runs_its_first_step, docs/HOSTS.md)')
_MAMBAIR = ('MambaIR\'s scan runs on the pure-PyTorch selective scan here, and a test file evaluates 15 sets: '
            '76-82 s a file for MambaIR-light, 804-904 s for classic MambaIR by hand '
            '(test_big_official_file_runs_its_first_step, docs/HOSTS.md)')
_IGCONV_BUILD_ONLY = {
    'ATD/ATD_IGPlus': _BIG_IGCONV, 'EDSR/EDSR_IGConvPlus_DIV2K': _BIG_IGCONV, 'EDSR/EDSR_IGConv_DIV2K': _BIG_IGCONV,
    'HAT/HAT_IGPlus': _BIG_IGCONV, 'PLKSR/PLKSR_IGConvPlus_DF2K': _BIG_IGCONV,
    'RCAN/RCAN_IGConvPlus_DIV2K_S2348': _BIG_IGCONV, 'RDN/RDN_IGConvPlus_DIV2K': _BIG_IGCONV,
    'SRFormer/SRFormer_IGConvPlus_DF2K': _BIG_IGCONV, 'SRFormer/SRFormer_IGConv_DF2K': _BIG_IGCONV,
    'SwinIR/SwinIR_IGConvPlus_DIV2K': _BIG_IGCONV,
    'MambaIR/MambaIR_IGConvPlus_DF2K': _MAMBAIR, 'MambaIR/MambaIR_IGConvPlus_DFL_S8': _MAMBAIR,
    'MambaIR/MambaIR_IGConv_DF2K': _MAMBAIR, 'MambaIR_Light/MambaIR_Light_IGConvPlus_DIV2K': _MAMBAIR,
    'MambaIR_Light/MambaIR_Light_IGConv_DIV2K': _MAMBAIR,
}
# Training files of those networks: one iteration on small patches takes 3-12 s on the CPU (HAT 7-12, ATD 8-11,
# MambaIR_light 10), its validation on Set5 minutes; the iteration runs, the validation is left out.
UNVALIDATED = frozenset(f'IGConv/options/train/{name}.yaml' for name in (
    'ATD/ATD_DF2K_LargePatch_Finetuning', 'ATD/ATD_DF2K_SmallPatch_Pretrain', 'EDSR/EDSRIGPlus_DIV2K',
    'EDSR/EDSRIG_DIV2K', 'HAT/HAT_DF2K_Finetuning', 'HAT/HAT_ImageNet_Pretrain', 'PLKSR/PLKSRIGPlus_DF2K',
    'RCAN/RCAN_IGPlus_DIV2K_S2348', 'RDN/RDN_IGPlus_DIV2K', 'SRFormer/SRFormer_IGPlus_DF2K',
    'SRFormer/SRFormer_IG_DF2K', 'MambaIR_Light/MambaIR_light_IGPlus_DIV2K', 'MambaIR_Light/MambaIR_light_IG_DIV2K'))
_MAMBAIR_TRAIN = ('classic MambaIR (22M parameters) trains on the chunked pure-PyTorch scan here: one iteration of '
                  'batch 2 on 16x16 LR patches, without validation, took 40-99 s (2026-12-07, loaded machine); '
                  'with their validation 127-932 s a file by hand (docs/HOSTS.md), longer than the other 17 IGConv '
                  'training files together (116 s)')
# file -> why it is built but its first step is not run here
BUILD_ONLY: dict[str, str] = {
    **{f'IGConv/options/test/{name}.yaml': why for name, why in _IGCONV_BUILD_ONLY.items()},
    **{f'IGConv/options/train/MambaIR/{name}.yaml': _MAMBAIR_TRAIN
       for name in ('MambaIR_IGPlus_DF2K', 'MambaIR_IGPlus_S8_DFL', 'MambaIR_IG_DF2K')},
    'MMA/options/test/MMA/test_MMA_x2.yml': _MMA,
    'MMA/options/test/MMA/test_MMA_x4.yml': _MMA,
    'MMA/options/train/MMA/train_MMA_x2_finetune.yml': _MMA,
    'MMA/options/train/MMA/train_MMA_x3_finetune.yml': _MMA,
    'MMA/options/train/MMA/train_MMA_x4_finetune.yml': _MMA,
    'MMA/options/train/MMA/train_MMA_x2_pretrain.yml': _MMA,
    'MMA/options/train/MMA/train_MMA_x3_pretrain.yml': _MMA,
    'MMA/options/train/MMA/train_MMA_x4_pretrain.yml': _MMA,
}

SEED_COUNT = 149  # 110 .yml + 39 .yaml (seed_options/README.md)
BUILDING = 148  # files that build today; change with EXPECTED_FAILURES
RUNNING = 122  # of those, files whose first step runs here (the others are BUILD_ONLY)

SEED = SHARED / 'seed_options'
ABSENT = 'shared-seed_options-absent'  # the one parameter when ../shared is absent: its test skips, saying why


def _listing() -> list[str]:
    """The seed files at collection time (relative paths: the test ids), or ABSENT."""
    if not SEED.is_dir():
        return [ABSENT]
    return [p.relative_to(SEED).as_posix() for p in seed_files(SEED)]


FILES = _listing()
RUNNABLE = [f for f in FILES if f not in EXPECTED_FAILURES and f not in NO_OPEN_ISSUE]


def seed_file(relative: str) -> Path:
    """The file, or a skip saying that ../shared is absent."""
    return shared_path('seed_options', *([] if relative == ABSENT else relative.split('/')))


@pytest.fixture(scope='module')
def lmdb_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LMDBs the rewrite packs (Set5, T91) are made once for the whole module."""
    return tmp_path_factory.mktemp('seed_lmdb')


@pytest.mark.parametrize('relative', FILES)
def test_official_file_builds_unless_listed(relative: str, tmp_path: Path, lmdb_cache: Path) -> None:
    source = seed_file(relative)
    error = first_error(source, kind_of(Path(relative)), SHARED, tmp_path, lmdb_cache)
    for name, listed in (('EXPECTED_FAILURES', EXPECTED_FAILURES), ('NO_OPEN_ISSUE', NO_OPEN_ISSUE)):
        if relative in listed:
            assert error is not None, f'{relative} now passes: remove it from {name} ({listed[relative]}).'
            return
    assert error is None, f'{relative} no longer builds: {error}'


@pytest.mark.seed_runs
@pytest.mark.parametrize('relative', RUNNABLE)
def test_official_file_runs_its_first_step(relative: str, tmp_path: Path, lmdb_cache: Path) -> None:
    """One training iteration, or test.py's evaluation, through the entry points' own code."""
    source = seed_file(relative)
    if relative in BUILD_ONLY:
        pytest.skip(f'built only (test_official_file_builds_unless_listed): {BUILD_ONLY[relative]}')
    extra = [f'val.val_freq={NEVER}'] if relative in UNVALIDATED else []
    written = run(source, kind_of(Path(relative)), SHARED, tmp_path, lmdb_cache, extra=extra)
    assert written.is_file()


@pytest.mark.seed_runs_slow
@pytest.mark.parametrize('relative', sorted(BUILD_ONLY))
def test_big_official_file_runs_its_first_step(relative: str, tmp_path: Path, lmdb_cache: Path) -> None:
    """The BUILD_ONLY files' first step, exactly as the others run theirs: too slow for CI on a CPU (minutes to
    an hour a file), run by hand with ``pytest -m seed_runs_slow``; docs/HOSTS.md has the last run's times."""
    written = run(seed_file(relative), kind_of(Path(relative)), SHARED, tmp_path, lmdb_cache)
    assert written.is_file()


def test_every_official_file_is_accounted_for(record_property: Any) -> None:
    """The lists name real files, the labels are the open issues, and the counts below are today's."""
    seed_file(ABSENT)
    files = set(FILES)
    assert len(files) == SEED_COUNT, f'seed_options holds {len(files)} files, not {SEED_COUNT}: update the lists'
    for name, listed in (('EXPECTED_FAILURES', EXPECTED_FAILURES), ('NO_OPEN_ISSUE', NO_OPEN_ISSUE),
                         ('BUILD_ONLY', BUILD_ONLY)):
        assert not set(listed) - files, f'{name} names files that do not exist: {sorted(set(listed) - files)}'
    assert not set(EXPECTED_FAILURES) & set(NO_OPEN_ISSUE)
    assert set(EXPECTED_FAILURES.values()) <= set(ISSUES)
    building = sorted(files - set(EXPECTED_FAILURES) - set(NO_OPEN_ISSUE))
    assert not set(BUILD_ONLY) - set(building), 'a BUILD_ONLY file is also an expected failure'
    assert UNVALIDATED <= set(building) - set(BUILD_ONLY), 'UNVALIDATED names a file that does not run'
    assert all(kind_of(Path(f)) == 'train' for f in UNVALIDATED), 'only a training run has a validation to leave out'
    running = [f for f in building if f not in BUILD_ONLY]
    per_issue = {issue.split(' ')[0]: list(EXPECTED_FAILURES.values()).count(issue) for issue in ISSUES}
    summary = (f'{len(running)} of {len(files)} run, {len(building)} of {len(files)} build; expected failures '
               f'{per_issue}, no open issue: {len(NO_OPEN_ISSUE)}')
    print(summary)
    record_property('seed_options', summary)
    assert (len(building), len(running)) == (BUILDING, RUNNING), f'{summary}: update BUILDING and RUNNING'


# What rewrite may change (harness rules 1-4): dotted paths of the leaves that may differ after it.
ALLOWED = re.compile(r'datasets\.[^.]+\.(dataroot_\w+|meta_info_file|meta_info)'
                     r'|path\.(pretrain_network_\w+|resume_state|experiments_root|results_root)'
                     r'|resume\.network_\w+_path|network_g\.weight_path|num_gpu'
                     r'|train\.perceptual_opt\.pretrained_path')


def _differences(before: Any, after: Any, where: str = '') -> list[str]:
    """Dotted paths of the leaves that differ (a mapping added where there was none counts by its leaves)."""
    if isinstance(after, dict) and before in (None, ...):
        before = {}
    if isinstance(before, dict) and isinstance(after, dict):
        keys = list(before) + [k for k in after if k not in before]
        return [d for k in keys for d in _differences(before.get(k, ...), after.get(k, ...),
                                                      f'{where}.{k}' if where else str(k))]
    return [] if before == after else [where]


def test_rewrite_changes_only_what_a_user_may_change(tmp_path: Path, lmdb_cache: Path) -> None:
    """Paths of datasets and weights (the perceptual loss's VGG too), num_gpu and output roots: nothing else, in any
    of the 149 files."""
    seed_file(ABSENT)
    for relative in FILES:
        data = load_yaml(seed_file(relative))
        original = json.dumps(data, sort_keys=True, default=str)
        changed = rewrite(data, kind_of(Path(relative)), SHARED, tmp_path, lmdb_cache)
        assert json.dumps(data, sort_keys=True, default=str) == original, f'{relative}: rewrite changed its input'
        wrong = [d for d in _differences(data, changed) if not ALLOWED.fullmatch(d)]
        assert not wrong, f'{relative}: rewrite changed {wrong}'
        assert changed['num_gpu'] == 0


# A tiny network in place of MMA's: the run step itself is checked on the MMA files too, which are BUILD_ONLY.
TINY = 'network_g={type: EDSR, num_feat: 8, num_block: 1, upscale: 2}'
MMA_TRAIN = 'MMA/options/train/MMA/train_MMA_x2_finetune.yml'


def test_the_first_step_runs_a_seed_file_with_a_tiny_network(tmp_path: Path, lmdb_cache: Path) -> None:
    """run() trains one iteration (validating on one Set5 image) and runs test.py on one image of each set.

    The MMA files prefetch to CUDA (``prefetch_mode: cuda``); with ``num_gpu: 0`` srkit loads batches without it
    and says so in the log.
    """
    network = run(seed_file(MMA_TRAIN), 'train', SHARED, tmp_path / 'train', lmdb_cache, [TINY])
    assert network.is_file() and network.name == 'net_g_latest.pth'
    log = next(network.parent.parent.glob('train_*.log')).read_text(encoding='utf-8')
    assert 'Validation Set5 @ iter 1' in log
    assert 'Option "datasets.train.prefetch_mode" is cuda but num_gpu is 0' in log
    results = run(seed_file('MMA/options/test/MMA/test_MMA_x2.yml'), 'test', SHARED, tmp_path / 'test', lmdb_cache,
                  [TINY])
    tables = json.loads(results.read_text(encoding='utf-8'))['datasets']
    assert len(tables) == 5 and all(len(t['per_image']) == 1 for t in tables)
