"""Running scripts/ and the entry points in-process: import one as a module, and run its main() the way its
``__main__`` does. A run in this process costs the work alone; a subprocess adds ~2 s of CPU (interpreter and
torch import), which over the suite's dozens of entry-point runs is minutes on two cores."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest
import torch
from conftest import REPO

from srkit.core.errors import EXIT_USER_ERROR
from srkit.core.logger import setup_logger
from srkit.engine.cli import run_entry_point


def load_script(relative: str) -> ModuleType:
    """scripts/<relative> as a module (registered in sys.modules, so worker processes can unpickle it)."""
    name = 'script_' + relative.removesuffix('.py').replace('/', '_')
    spec = importlib.util.spec_from_file_location(name, REPO / 'scripts' / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def user_error(main: Callable[[list[str]], object], argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``main(argv)`` through run_entry_point and check it ends as a user error: exit 2 and one
    ``srkit: error: ...`` message without a traceback. Returns the message."""
    with pytest.raises(SystemExit) as exit_info:
        run_entry_point(lambda: main(argv))
    err = capsys.readouterr().err
    assert exit_info.value.code == EXIT_USER_ERROR, err
    assert err.startswith('srkit: error: ') and err.count('srkit: error:') == 1 and 'Traceback' not in err, err
    return err


@dataclass
class Finished:
    """What a run of an entry point left: its exit status and what it printed (subprocess.CompletedProcess's names)."""
    returncode: int
    stdout: str
    stderr: str


def run_in_process(script: str, argv: list[str], cwd: Path) -> Finished:
    """``python srkit/<script> *argv`` run from ``cwd``, in this process: the script's main() through
    run_entry_point, as its ``__main__`` runs it. What a run changes in the process (working folder, torch's
    thread count, the srkit logger's log file) is put back afterwards."""
    import srkit.test
    import srkit.train

    main = {'train.py': srkit.train.main, 'test.py': srkit.test.main}[script]
    out, err = io.StringIO(), io.StringIO()
    threads, previous = torch.get_num_threads(), os.getcwd()
    code: int | str | None = 0
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run_entry_point(lambda: main(argv))
            except SystemExit as exc:
                code = exc.code
    finally:
        os.chdir(previous)
        torch.set_num_threads(threads)
        setup_logger(None)  # closes the run's log file
    return Finished(code if isinstance(code, int) else 1, out.getvalue(), err.getvalue())
