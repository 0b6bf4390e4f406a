"""Rules of the project that no other test checks: the suite runs where optional test packages are missing."""
import ast

from conftest import REPO

OPTIONAL_TEST_PACKAGES = ('hypothesis',)


def test_optional_test_packages_are_never_imported_at_module_level():
    """A module-level ``import hypothesis`` aborts the whole collection where it is not installed; such
    modules use ``pytest.importorskip`` instead, which skips them alone."""
    offenders = []
    for path in sorted((REPO / 'tests').glob('*.py')):
        for node in ast.parse(path.read_text(encoding='utf-8')).body:
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f'{path.name}:{node.lineno} imports {name}' for name in names
                          if name.split('.')[0] in OPTIONAL_TEST_PACKAGES]
    assert offenders == []
