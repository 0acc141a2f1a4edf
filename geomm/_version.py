"""The installed geomm version, recorded in every store, bundle, map and batch manifest."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("geomm")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"
