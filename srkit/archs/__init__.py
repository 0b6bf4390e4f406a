"""Network architectures, one module per family (``*_arch.py``), registered in ARCH_REGISTRY.

Modules are imported lazily by the registry on the first look-up; see srkit.utils.registry.
"""
from srkit.archs.spec import ArchSpec
from srkit.utils.registry import ARCH_REGISTRY

__all__ = ['ArchSpec', 'ARCH_REGISTRY', 'arch_spec']


def arch_spec(name: str) -> ArchSpec:
    """The ArchSpec an architecture registered with (a default spec when it declared none)."""
    spec = ARCH_REGISTRY.meta(name)
    return spec if spec is not None else ArchSpec()
