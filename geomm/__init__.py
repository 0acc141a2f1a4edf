"""geomm: fuse co-located rasters of several sensors into land-cover maps."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from geomm.errors import GeommError

try:
    __version__ = version("geomm")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["GeommError", "__version__"]
