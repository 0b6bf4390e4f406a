"""Shared fixtures: the ../shared folder (benchmark images, official checkpoints) and small helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('SRKIT_SHARED', REPO.parent / 'shared'))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test (with the reason) when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f'{path} is absent: this test needs the shared benchmark data / official weights '
                    '(set SRKIT_SHARED to their folder)')
    return path


@pytest.fixture
def shared() -> Path:
    return shared_path()
