"""geomm: fuse co-located rasters of several sensors into land-cover maps.

The handful of calls most users need are importable from here; they load lazily, so
``import geomm`` stays light (``geomm info`` and ``geomm --help`` never import dask or torch).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from geomm._version import __version__
from geomm.errors import GeommError

# Each stage is a sub-package named after it (``geomm.stack``, ``geomm.learn``, ``geomm.predict``,
# ``geomm.vector``, ``geomm.assess``, ``geomm.batch``; ``geomm.model`` is the bundle contract
# between learn and predict) with one module per operation, the way rasterio keeps
# ``rasterio.warp.reproject``: ``geomm.stack.coregister.coregister``.
__all__ = ["GeommError", "__version__", "fetch_sample", "load_recipe", "open_store"]

_LAZY = {"fetch_sample": ("geomm.sampledata", "fetch"),
         "load_recipe": ("geomm.recipe", "load_recipe"),
         "open_store": ("geomm.stack.store", "open_store")}

if TYPE_CHECKING:  # pragma: no cover
    from geomm.recipe import load_recipe
    from geomm.sampledata import fetch as fetch_sample
    from geomm.stack.store import open_store


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'geomm' has no attribute {name!r}")
