"""geomm: fuse co-located rasters of several sensors into land-cover maps.

The handful of calls most users need are importable from here; they load lazily, so
``import geomm`` stays light (``geomm info`` and ``geomm --help`` never import dask or torch).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from geomm.errors import GeommError

try:
    __version__ = version("geomm")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

# The stage functions live in modules of the same name (``geomm.coregister.coregister``,
# ``geomm.stack.stack``), the way rasterio keeps ``rasterio.warp.reproject``.
__all__ = ["GeommError", "__version__", "fetch_sample", "load_recipe", "open_store"]

_LAZY = {"fetch_sample": ("geomm.sampledata", "fetch"),
         "load_recipe": ("geomm.recipe", "load_recipe"),
         "open_store": ("geomm.store", "open_store")}

if TYPE_CHECKING:  # pragma: no cover
    from geomm.recipe import load_recipe
    from geomm.sampledata import fetch as fetch_sample
    from geomm.store import open_store


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'geomm' has no attribute {name!r}")
