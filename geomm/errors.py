"""Errors and warnings raised by geomm.

Every error derives from :class:`GeommError`; most also derive from the built-in exception
they narrow, so callers can catch either (``except OSError`` still catches a failed read).
Messages name the file or key, what was wrong and how to fix it: the CLI prints them as one
line on stderr.
"""

from __future__ import annotations


class GeommError(Exception):
    """Root of every error geomm raises on purpose."""


class SampleDataError(GeommError, OSError):
    """A sample scene could not be fetched, verified or extracted."""


class ChecksumError(SampleDataError):
    """A downloaded or supplied archive does not have the pinned sha256."""


class RasterReadError(GeommError, OSError):
    """A raster could not be opened or read."""


class NotGeodataError(GeommError, ValueError):
    """A path is neither a raster nor a vector dataset GDAL/OGR can open."""


class RecipeError(GeommError, ValueError):
    """A recipe (YAML or Python) has a missing, unknown or invalid key."""


class CRSMissingError(GeommError, ValueError):
    """A raster or vector has no coordinate reference system."""


class GridError(GeommError, ValueError):
    """Inputs cannot be put on one target grid (no overlap, bad tile size, ...)."""


class LabelError(GeommError, ValueError):
    """Labels cannot be burned (missing class column, unreadable file, ...)."""


class StoreError(GeommError, FileExistsError):
    """A tile store exists and was made from other inputs (use --overwrite)."""


class StaleStoreError(StoreError):
    """The tile store at ``path`` was made from other inputs than the recipe's now."""

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class GeommWarning(UserWarning):
    """Root of the warnings geomm issues."""


class LabelWarning(GeommWarning):
    """Some label geometries were repaired, or fell outside the grid."""


class ExtentWarning(GeommWarning):
    """One input covers much less than the others and shrinks the scene."""
