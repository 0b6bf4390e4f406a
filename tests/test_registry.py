"""The registry: decorator registration, close-name hints, and modules whose imports fail."""
import sys
import textwrap

import pytest
from conftest import shared_path  # noqa: F401  (import check: tests can reach the shared-data helper)

from srkit.core.registry import Registry, RegistryError


def test_register_and_get_with_alias():
    reg = Registry('thing')

    @reg.register(aliases=('thing_alias',), meta={'k': 1})
    class Thing:
        pass

    assert reg.get('Thing') is Thing and reg.get('thing_alias') is Thing
    assert reg.meta('Thing') == {'k': 1}


def test_unknown_name_suggests_closest():
    reg = Registry('loss')

    @reg.register()
    class CharbonnierLoss:
        pass

    with pytest.raises(RegistryError, match='Did you mean "CharbonnierLoss"'):
        reg.get('CharbonierLoss')


def test_broken_module_breaks_only_its_names(tmp_path, monkeypatch):
    pkg = tmp_path / 'fakepkg'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'good_arch.py').write_text(textwrap.dedent('''
        from srkit.core.registry import Registry
        import fakepkg
        REG = fakepkg.REG
        @REG.register()
        class Good: pass
    '''))
    (pkg / 'bad_arch.py').write_text(textwrap.dedent('''
        import fakepkg
        import package_that_is_not_installed_xyz
        @fakepkg.REG.register(aliases=('BadAlias',))
        class Bad: pass
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    import fakepkg
    fakepkg.REG = Registry('architecture', 'fakepkg', '_arch')
    try:
        assert fakepkg.REG.get('Good').__name__ == 'Good'
        for name in ('Bad', 'BadAlias'):
            with pytest.raises(RegistryError, match='package_that_is_not_installed_xyz'):
                fakepkg.REG.get(name)
    finally:
        for mod in [m for m in sys.modules if m.startswith('fakepkg')]:
            del sys.modules[mod]


def test_import_srkit_is_light():
    import subprocess
    code = ('import sys, srkit, srkit.archs, srkit.core.registry; '
            'bad = [m for m in sys.modules if m.split(".")[0] in ("torchvision", "tensorboard", "lmdb")]; '
            'print(bad); sys.exit(1 if bad else 0)')
    assert subprocess.run([sys.executable, '-c', code]).returncode == 0
