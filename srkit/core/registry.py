"""Name -> component registries, filled by a decorator.

Each registry knows the package its components live in and imports that package's modules lazily, on
the first look-up, so ``import srkit`` stays cheap. A module whose import fails (an optional dependency
such as the CUDA Mamba kernels is missing) breaks only the names it defines: those names are read from
its source with ``ast`` and asking for one of them says which package is missing.
"""
from __future__ import annotations

import ast
import difflib
import importlib
import pkgutil
from pathlib import Path
from typing import Any, Callable, Iterator

from srkit.core.errors import SrkitError

__all__ = [
    'Registry', 'RegistryError', 'ARCH_REGISTRY', 'MODEL_REGISTRY', 'DATASET_REGISTRY', 'LOSS_REGISTRY',
    'METRIC_REGISTRY', 'OPTIMIZER_REGISTRY', 'SCHEDULER_REGISTRY', 'closest_name'
]


class RegistryError(SrkitError, KeyError):
    """An unknown name, or a name whose module could not be imported (SrkitError's ``__str__`` comes first
    in the method order, so the message is not quoted as a KeyError's would be)."""


def closest_name(name: str, candidates: list[str] | tuple[str, ...]) -> str | None:
    """The candidate most like ``name`` (case-insensitive), or None when nothing is close."""
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


class Registry:
    """A mapping from names to classes or functions, with optional per-entry metadata.

    ``package`` and ``module_suffix`` say which modules to import before the first look-up
    (e.g. every ``srkit.archs.*_arch`` module).
    """

    def __init__(self, name: str, package: str | None = None, module_suffix: str = '') -> None:
        self.name = name
        self._package = package
        self._module_suffix = module_suffix
        self._entries: dict[str, Any] = {}
        self._meta: dict[str, Any] = {}
        self._broken: dict[str, str] = {}
        self._scanned = package is None
        self._fallback: Callable[[], dict[str, Any]] | None = None

    def set_fallback(self, provider: Callable[[], dict[str, Any]]) -> None:
        """Names looked up after the registered ones (e.g. every torch.optim class), built on demand."""
        self._fallback = provider

    def register(self, obj: Any = None, *, name: str | None = None, aliases: tuple[str, ...] = (),
                 meta: Any = None) -> Any:
        """Register ``obj`` under its ``__name__`` (or ``name``); usable bare or with arguments."""

        def add(target: Any) -> Any:
            for key in (name or target.__name__, *aliases):
                if key in self._entries and self._entries[key] is not target:
                    raise RegistryError(f'{self.name} registry: "{key}" is registered twice '
                                        f'({self._entries[key].__module__} and {target.__module__}).')
                self._entries[key] = target
                if meta is not None:
                    self._meta[key] = meta
            return target

        return add(obj) if obj is not None else add

    def get(self, name: str) -> Any:
        """The component called ``name``; the error names the closest valid one or the missing package."""
        self._scan()
        if name in self._entries:
            return self._entries[name]
        if name in self._broken:
            raise RegistryError(self._broken[name])
        extra = self._fallback() if self._fallback is not None else {}
        if name in extra:
            return extra[name]
        known = sorted(set(self.names()) | set(extra))
        hint = closest_name(name, known)
        suggestion = f' Did you mean "{hint}"?' if hint else ''
        raise RegistryError(f'No {self.name} called "{name}".{suggestion} Known: {", ".join(known)}.')

    def meta(self, name: str) -> Any:
        """The metadata registered with ``name`` (e.g. an architecture's ArchSpec), or None."""
        self.get(name)
        return self._meta.get(name)

    def names(self) -> list[str]:
        self._scan()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._scan()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _scan(self) -> None:
        if self._scanned or self._package is None:
            return
        self._scanned = True
        package = importlib.import_module(self._package)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith('_') or not info.name.endswith(self._module_suffix):
                continue
            module_name = f'{self._package}.{info.name}'
            try:
                importlib.import_module(module_name)
            except ImportError as exc:
                self._record_broken(module_name, Path(package.__path__[0]) / f'{info.name}.py', exc)

    def _record_broken(self, module_name: str, source: Path, exc: ImportError) -> None:
        missing = exc.name or str(exc)
        for name in _registered_names(source):
            self._broken.setdefault(
                name, f'{self.name} "{name}" is unavailable: its module {module_name} needs the package '
                f'"{missing}", which failed to import ({exc}). Install it to use "{name}".')


def _registered_names(source: Path) -> list[str]:
    """Names a module registers, read from its decorators without importing it."""
    try:
        tree = ast.parse(source.read_text(encoding='utf-8'))
    except (OSError, SyntaxError):
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            continue
        for deco in node.decorator_list:
            call = deco if isinstance(deco, ast.Call) else None
            target = call.func if call else deco
            if isinstance(target, ast.Attribute) and target.attr == 'register':
                explicit = [k.value.value for k in (call.keywords if call else [])
                            if k.arg == 'name' and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)]
                names.append(explicit[0] if explicit else node.name)
                for k in (call.keywords if call else []):
                    if k.arg == 'aliases' and isinstance(k.value, (ast.Tuple, ast.List)):
                        names.extend(e.value for e in k.value.elts
                                     if isinstance(e, ast.Constant) and isinstance(e.value, str))
    return names


ARCH_REGISTRY = Registry('architecture', 'srkit.archs', '_arch')
MODEL_REGISTRY = Registry('model', 'srkit.models', '_model')
DATASET_REGISTRY = Registry('dataset', 'srkit.data', '_dataset')
LOSS_REGISTRY = Registry('loss', 'srkit.losses')
METRIC_REGISTRY = Registry('metric', 'srkit.metrics')
OPTIMIZER_REGISTRY = Registry('optimizer', 'srkit.optim')
SCHEDULER_REGISTRY = Registry('scheduler', 'srkit.optim')

