"""Every script under scripts/: ``--help`` works, keeps the docstring's example lines as written and documents
every argument; user errors go through run_entry_point (``srkit: error: ...``, exit 2), as in train.py."""
from __future__ import annotations

import re
import runpy
import sys

import pytest
from conftest import REPO

SCRIPTS = sorted(p.relative_to(REPO / 'scripts').as_posix() for p in (REPO / 'scripts').rglob('*.py'))
SECTIONS = ('positional arguments:', 'options:', 'optional arguments:')


def run_help(script: str, argv: list[str], monkeypatch, capsys) -> str:
    """The script's stdout for ``argv``, run as ``python scripts/<script>`` would run it; it must exit 0."""
    monkeypatch.setattr(sys, 'argv', [script, *argv])
    monkeypatch.setenv('COLUMNS', '120')
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / 'scripts' / script), run_name='__main__')
    out = capsys.readouterr().out
    assert exit_info.value.code == 0, out
    return out


def undocumented(help_text: str) -> list[str]:
    """Argument lines of an argparse help with no help text: nothing after the flags on their line, and no
    more-indented help line below."""
    lines = help_text.splitlines()
    missing, in_arguments = [], False
    for index, line in enumerate(lines):
        if line and not line.startswith(' '):
            in_arguments = line in SECTIONS
        elif in_arguments and re.match(r' {2}\S', line):
            below = lines[index + 1] if index + 1 < len(lines) else ''
            if not re.search(r'\S {2,}\S', line) and not re.match(r' {3,}\S', below):
                missing.append(line.strip())
    return missing


def subcommands(help_text: str) -> list[str]:
    match = re.search(r'^ {2}\{([\w,-]+)\}', help_text, re.MULTILINE)
    return match.group(1).split(',') if match else []


def example_lines(script: str) -> list[str]:
    """The indented lines of the docstring as they stand in the source (an escaped backslash as printed)."""
    docstring = (REPO / 'scripts' / script).read_text(encoding='utf-8').split('"""')[1]
    return [line.strip().replace('\\\\', '\\') for line in docstring.splitlines() if line.startswith('    ')]


def test_the_help_parser_finds_an_option_without_help():
    text = 'usage: x\n\noptions:\n  -h, --help  show this help\n  --scales SCALES [SCALES ...]\n  --out OUT\n' \
           '  --long-option LONG_OPTION\n                        its help, one line below\n'
    assert undocumented(text) == ['--scales SCALES [SCALES ...]', '--out OUT']


@pytest.mark.parametrize('script', SCRIPTS)
def test_help_keeps_examples_and_documents_every_argument(script, monkeypatch, capsys):
    text = run_help(script, ['--help'], monkeypatch, capsys)
    shown = {line.strip() for line in text.splitlines()}
    examples = example_lines(script)
    assert examples, f'{script}: the docstring shows no example command'
    assert [line for line in examples if line not in shown] == [], f'{script}: example lines lost their line breaks'
    assert undocumented(text) == [], f'{script}: arguments without help'
    for command in subcommands(text):
        assert undocumented(run_help(script, [command, '--help'], monkeypatch, capsys)) == [], f'{script} {command}'


@pytest.mark.parametrize('script', SCRIPTS)
def test_errors_go_through_run_entry_point(script):
    """One convention for every entry point: main() raises, run_entry_point prints and picks the exit code."""
    source = (REPO / 'scripts' / script).read_text(encoding='utf-8')
    assert source.rstrip().endswith("if __name__ == '__main__':\n    run_entry_point(main)")
    assert 'sys.exit(' not in source and "print(f'error:" not in source and 'parser.error(' not in source


def test_a_user_error_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['generate_bicubic.py', '--hr', str(tmp_path), '--out', str(tmp_path / 'out')])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / 'scripts' / 'data' / 'generate_bicubic.py'), run_name='__main__')
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err == f'srkit: error: {tmp_path}: no images found.\n'
