"""The option files of the transformer hosts' own repositories (HAT, ATD, SRFormer, HiT-SR) build and run in srkit
after changing only paths and num_gpu (tests/seed_options_harness.py's rules), as the IGConv files do.

Those files are not in ../shared, and tests never download: set SRKIT_HOST_OPTIONS to a folder holding each
repository's ``options`` tree under ``<owner>+<name>/`` (docs/HOSTS.md, "Option files tried", says how to make it
and lists the commits). Without it every test here skips, saying so. Building is quick; the first steps (one
training iteration, test.py on Set5) take minutes for the big networks and are marked ``seed_runs_slow``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import SHARED
from seed_options_harness import NEVER, first_error, kind_of, run

ROOT = Path(os.environ.get('SRKIT_HOST_OPTIONS', '')) if os.environ.get('SRKIT_HOST_OPTIONS') else None
ABSENT = 'SRKIT_HOST_OPTIONS-unset'

# file (relative to ROOT) -> the error it must still give, and why
NOT_FOR_SRKIT: dict[str, tuple[str, str]] = {
    'HVision-NKU+SRFormer/options/test/SRFormerV2/test_SRFormer_DF2Ksrx4.yml': ('malformed YAML', 'not valid YAML'),
    'HVision-NKU+SRFormer/options/train/SRFormer/train_SRFormer_SRx4_scratch.yml': ('malformed YAML',
                                                                                   'not valid YAML'),
    'HVision-NKU+SRFormer/options/train/SRFormer/train_SRFormer_light_SRx4_scratch.yml': ('malformed YAML',
                                                                                         'not valid YAML'),
    **{f'XiangZ-0+HiT-SR/options/{folder}/{kind}_HiT_{net}_x{s}.yml': (f'No architecture called "HiT_{net}"',
                                                                       'HiT-SIR and HiT-SNG are other networks')
       for folder, kind in (('Train', 'train'), ('Test', 'test')) for net in ('SIR', 'SNG') for s in (2, 3, 4)},
}


def _listing() -> list[str]:
    if ROOT is None:
        return [ABSENT]
    return sorted(p.relative_to(ROOT).as_posix() for p in ROOT.rglob('*.y*ml') if 'options' in p.parts)


FILES = _listing()


def host_file(relative: str) -> Path:
    if ROOT is None:
        pytest.skip('SRKIT_HOST_OPTIONS is not set: the hosts\' option files are not here (docs/HOSTS.md)')
    if not (SHARED / 'data' / 'Set5').is_dir():
        pytest.skip(f'{SHARED / "data" / "Set5"} is absent: the rewritten files read Set5 and T91')
    return ROOT / relative


@pytest.mark.parametrize('relative', FILES)
def test_host_file_builds(relative: str, tmp_path: Path) -> None:
    path = host_file(relative)
    error = first_error(path, kind_of(Path(relative)), SHARED, tmp_path)
    if relative in NOT_FOR_SRKIT:
        expected, why = NOT_FOR_SRKIT[relative]
        assert error is not None and expected in error, f'{relative} ({why}) now gives: {error}'
        return
    assert error is None, f'{relative} does not build: {error}'


@pytest.mark.seed_runs_slow
@pytest.mark.parametrize('relative', [f for f in FILES if f not in NOT_FOR_SRKIT])
def test_host_file_runs_its_first_step(relative: str, tmp_path: Path) -> None:
    """One training iteration on small patches (without the validation a 10-40M network takes minutes for), or
    test.py on Set5 (one image per set) with seeded random weights."""
    path = host_file(relative)
    kind = kind_of(Path(relative))
    written = run(path, kind, SHARED, tmp_path, extra=[f'val.val_freq={NEVER}'] if kind == 'train' else [])
    assert written.is_file()
