"""Shared fixtures: the ../shared folder (benchmark images, official checkpoints) and small helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('SRKIT_SHARED', REPO.parent / 'shared'))


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (the README's ``-n 2``) each worker owns one core, so the scripts the tests start get
    one thread too: two threads each on a core another process is using make small ops many times slower."""
    if os.environ.get('PYTEST_XDIST_WORKER'):
        os.environ.setdefault('OMP_NUM_THREADS', '1')


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (each tens of seconds) run first, the rest keep their order: with ``-n 2`` the last
    minutes are then short tests that both workers share, instead of one worker finishing a long test alone
    (longest-first is the classic cure for an uneven finish of parallel jobs)."""
    items.sort(key=lambda item: item.get_closest_marker('slow') is None)


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


@pytest.fixture(autouse=True)
def run_from_an_empty_folder(tmp_path_factory, monkeypatch):
    """Every test starts in an empty folder of its own, never the repository: a test that reads or writes a
    path relative to where pytest was started fails here, wherever CI or a user starts it from."""
    monkeypatch.chdir(tmp_path_factory.mktemp('cwd'))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread per test process: on 2-core runners shared with other work (and with the
    subprocesses some tests start), two threads contend and small ops run many times slower."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def srkit_records_reach_caplog(monkeypatch):
    """Every test starts with the srkit logger propagating to the root logger, where caplog listens: a run in
    this process before it (Trainer, train.py's main) has set propagation off (setup_logger's console handler
    prints instead), and a test's outcome must not depend on which tests ran before it in its worker."""
    import logging
    monkeypatch.setattr(logging.getLogger('srkit'), 'propagate', True)
