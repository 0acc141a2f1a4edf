"""Lazy re-exports for package ``__init__`` modules: a name's module is imported on first use.

A stage sub-package advertises its few entry points without importing them, so that
``import geomm.stack`` (or ``geomm.open_store``) does not pay for dask, torch or GDAL until the
function is called. A name is never re-exported from a submodule of the same name (``geomm.stack
.coregister`` is the module; the function is ``geomm.stack.coregister.coregister``), since the
import system would later shadow one with the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, table: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import ``table[name]`` on demand.

    Args:
        package: the package's ``__name__``.
        table: exported name -> module (relative to ``package``) that defines it.

    Returns:
        The two module-level functions to assign in the package's ``__init__``.
    """
    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(import_module(f"{package}.{table[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(table) | {"__doc__", "__name__", "__path__"})

    return __getattr__, __dir__
