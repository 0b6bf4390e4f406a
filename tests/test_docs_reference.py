"""docs/REFERENCE.md: its tables are the shared data folder's REFERENCE.md (what the reproduction tests read),
and every citation of REFERENCE.md in the docs, the scripts, the tools' output and the generated zoo table
is a link or path that resolves to it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO, shared_path

from srkit.tools.model_zoo import reference_link, zoo_markdown

REFERENCE = REPO / 'docs' / 'REFERENCE.md'
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')


def data_rows(text: str) -> set[tuple[str, ...]]:
    """The body rows of every Markdown table in ``text`` (headers and separator lines left out)."""
    def separator(line: str) -> bool:
        return line.startswith('|') and set(line) <= set('|-: ')

    lines = text.splitlines() + ['']
    return {tuple(cell.strip() for cell in line.strip('|').split('|')) for line, following in zip(lines, lines[1:])
            if line.startswith('|') and not separator(line) and not separator(following)}


def unresolved_citations(path: Path, text: str) -> list[str]:
    """Lines of ``text`` naming REFERENCE.md other than through docs/REFERENCE.md (a Markdown link that
    resolves from ``path``'s folder, or the path ``docs/REFERENCE.md`` in code)."""
    bad = []
    for number, line in enumerate(text.splitlines(), 1):
        if 'REFERENCE.md' not in line:
            continue
        if path.suffix == '.md':
            rest = LINK.sub(lambda m: '' if (path.parent / m.group(1)).resolve() == REFERENCE else m.group(0), line)
        else:
            rest = line.replace('docs/REFERENCE.md', '')
        if 'REFERENCE.md' in rest:
            bad.append(f'{path.relative_to(REPO)}:{number}: {line.strip()}')
    return bad


def test_tables_are_the_shared_reference():
    shared = shared_path('REFERENCE.md').read_text(encoding='utf-8')
    ours = REFERENCE.read_text(encoding='utf-8')
    assert len(data_rows(shared)) > 30
    assert data_rows(ours) == data_rows(shared)


def test_table_rows_are_told_from_headers():
    text = '| a | b |\n|---|---|\n| x | 1 |\n| y | 2 |\n\n| c | d |\n|---|---|\n| z | 3 |\n'
    assert data_rows(text) == {('x', '1'), ('y', '2'), ('z', '3')}


@pytest.mark.parametrize('path', sorted([*REPO.glob('docs/*.md'), *REPO.glob('scripts/**/*.py'), REPO / 'README.md',
                                         *REPO.glob('srkit/tools/*.py')]), ids=lambda p: str(p.relative_to(REPO)))
def test_every_citation_resolves_to_docs_reference(path: Path):
    if path == REFERENCE:
        return  # it names the shared folder's copy, on purpose
    assert unresolved_citations(path, path.read_text(encoding='utf-8')) == []


def test_a_bare_citation_is_found():
    doc = REPO / 'docs' / 'X.md'
    assert unresolved_citations(doc, "see REFERENCE.md's table\n[REFERENCE.md](REFERENCE.md)\n") == [
        "docs/X.md:1: see REFERENCE.md's table"]
    assert unresolved_citations(REPO / 'README.md', '[REFERENCE.md](REFERENCE.md)') != []  # wrong folder
    assert unresolved_citations(REPO / 'README.md', '[REFERENCE.md](docs/REFERENCE.md)') == []


def test_the_generated_zoo_table_links_to_it_from_where_it_is_written(tmp_path):
    shipped = (REPO / 'docs' / 'MODEL_ZOO_TABLE.md').read_text(encoding='utf-8')
    protocol = next(line for line in zoo_markdown([], ['Set5'], 'cmd', out=REPO / 'docs' / 'MODEL_ZOO_TABLE.md')
                    .splitlines() if 'REFERENCE' in line)
    assert protocol in shipped.splitlines()  # docs/MODEL_ZOO_TABLE.md carries what the generator writes
    for out in (REPO / 'docs' / 'MODEL_ZOO_TABLE.md', tmp_path / 'deep' / 'zoo.md', REPO / 'zoo.md'):
        target = LINK.search(reference_link(out)).group(1)
        assert (out.parent / target).resolve() == REFERENCE, out
