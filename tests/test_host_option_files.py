"""The option files of the IGConv hosts' own repositories (HAT, ATD, SRFormer, HiT-SR, SMFANet, MambaIR, PLKSR) build
and run in srkit after changing only paths and num_gpu (tests/seed_options_harness.py's rules), as IGConv's do.

Those files are not in ../shared, and tests never download: set SRKIT_HOST_OPTIONS to a folder holding each
repository's ``options`` tree under ``<owner>+<name>/`` (docs/HOSTS.md, "Option files tried", says how to make it
and lists the commits). Without it every test here skips, saying so. Building is quick; the first steps (one
training iteration, test.py on Set5) take minutes for the big networks and are marked ``seed_runs_slow``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import SHARED
from seed_options_harness import NEVER, first_error, kind_of, run

ROOT = Path(os.environ['SRKIT_HOST_OPTIONS']) if os.environ.get('SRKIT_HOST_OPTIONS') else None
ABSENT = 'SRKIT_HOST_OPTIONS-unset'

# (file pattern relative to ROOT, the error it must still give, why): files srkit does not run, each for a reason
# outside these issues. Every other file must build.
NOT_FOR_SRKIT: list[tuple[str, str, str]] = [
    (r'HVision-NKU\+SRFormer/options/(test/SRFormerV2/test_SRFormer_DF2Ksrx4|train/SRFormer/train_SRFormer_(light_)?'
     r'SRx4_scratch)\.yml', 'malformed YAML', 'not valid YAML: the authors\' files do not parse'),
    (r'Zheng-MJ\+SMFANet/options/train/SMFANet_plus_DIV2K_100w_x2SR\.yml', 'malformed YAML', 'not valid YAML'),
    (r'XiangZ-0\+HiT-SR/options/\w+/\w+_HiT_(SIR|SNG)_x\d\.yml', 'No architecture called "HiT_S',
     'HiT-SIR and HiT-SNG are other networks'),
    (r'csguoh\+MambaIR/options/\w+/mambairv2/.*', 'No model called "MambaIRv2',
     'MambaIRv2 and MambaIRv2-light are other networks'),
    (r'csguoh\+MambaIR/options/\w+/mambair/\w+_MambaIR_(CAR_q|ColorDN_level)\d+\.yml',
     'supports scales|selfensemble_testing', 'JPEG artefact removal and denoising at scale 1: restoration, not SR'),
    (r'dslisleedh\+PLKSR/options/.*', 'No model called "ESRModel"',
     "PLKSR's own ESRModel (use_amp, MESA and wavelet losses) is not translated; PLKSR runs through IGConv's files"),
]


def not_for_srkit(relative: str) -> tuple[str, str] | None:
    """(expected error, why) where ``relative`` is one of NOT_FOR_SRKIT's files."""
    for pattern, expected, why in NOT_FOR_SRKIT:
        if re.fullmatch(pattern, relative):
            return expected, why
    return None


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
    listed = not_for_srkit(relative)
    if listed:
        expected, why = listed
        assert error is not None and re.search(expected, error), f'{relative} ({why}) now gives: {error}'
        return
    assert error is None, f'{relative} does not build: {error}'


@pytest.mark.seed_runs_slow
@pytest.mark.parametrize('relative', [f for f in FILES if not not_for_srkit(f)])
def test_host_file_runs_its_first_step(relative: str, tmp_path: Path) -> None:
    """One training iteration on small patches (without the validation a 10-40M network takes minutes for), or
    test.py on Set5 (one image per set) with seeded random weights."""
    path = host_file(relative)
    kind = kind_of(Path(relative))
    written = run(path, kind, SHARED, tmp_path, extra=[f'val.val_freq={NEVER}'] if kind == 'train' else [])
    assert written.is_file()
