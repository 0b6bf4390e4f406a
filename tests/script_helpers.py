"""Running scripts/ in-process: import one as a module, and run its main() the way its ``__main__`` does."""
from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Callable

import pytest
from conftest import REPO

from srkit.core.errors import EXIT_USER_ERROR
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
