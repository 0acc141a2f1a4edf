"""Read a land-cover map for assessment: a class COG, or a probabilities COG taken by argmax.

A class map is single-band integer (``geomm predict``'s ``classes.tif``: nodata 255, class
table in the ``GEOMM_CLASSES`` tag). A probabilities map has one band per class (uint8 scaled
by 1/255, or float32); its class is the band of highest probability (the first on ties, as
``geomm predict`` does; uint8 probabilities are rounded, so a pixel whose two best classes
were within 1/255 may take the other one), nodata where every band is 0 (uint8) or NaN
(float32). Class names come from the ``GEOMM_CLASSES`` tag, else a model bundle's
``bundle.json``, else the ``class_<id>`` band tags / band descriptions, else the ids
themselves ("0", "1", ...).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from geomm._outputs import settle
from geomm.classes import ClassTable
from geomm.errors import GeommError, LabelError, RasterReadError

__all__ = ["ClassMap", "argmax_classes", "geographic_note", "open_class_map"]


def argmax_classes(probs: np.ndarray, nodata: int, dtype: Any) -> np.ndarray:
    """Class ids of ``(K, h, w)`` probabilities (``nodata`` where every band is empty: NaN,
    or 0 for integer bands)."""
    if probs.dtype.kind == "f":
        empty = ~np.isfinite(probs).any(axis=0)
        probs = np.where(np.isfinite(probs), probs, -np.inf)
    else:
        empty = ~(probs > 0).any(axis=0)
    ids = np.argmax(probs, axis=0).astype(dtype)
    ids[empty] = nodata
    return ids

BLOCK = 1024
"""Side of the square windows the map is read in."""


@dataclass(frozen=True)
class ClassMap:
    """A land-cover map ready to be read window by window as class ids."""

    path: Path
    """The raster file."""
    table: ClassTable
    """Class names (id order) and colours."""
    kind: str
    """``"classes"`` (one band of ids) or ``"probabilities"`` (argmax of the bands)."""
    names_from: str
    """Where the class names came from, for the report."""
    crs: Any
    """rasterio CRS (None if the raster has none)."""
    transform: Any
    """Affine pixel-to-CRS transform."""
    height: int
    """Rows."""
    width: int
    """Columns."""
    nodata: int
    """Id written for pixels without a class (in the ids :meth:`read` returns)."""

    @property
    def pixel_area_m2(self) -> float | None:
        """Area of one pixel in m²; None for a geographic or missing CRS."""
        if self.crs is None or not self.crs.is_projected:
            return None
        unit = float(self.crs.linear_units_factor[1])
        return abs(self.transform.determinant) * unit * unit

    def windows(self) -> Iterator[Window]:
        """Row-major square windows covering the raster once."""
        for r in range(0, self.height, BLOCK):
            for c in range(0, self.width, BLOCK):
                yield Window(c, r, min(BLOCK, self.width - c), min(BLOCK, self.height - r))

    def read(self, src: Any, window: Window) -> np.ndarray:
        """Class ids of ``window`` (int16; ``nodata`` where the map has no class)."""
        if self.kind == "classes":
            data = src.read(1, window=window, masked=True)
            ids = np.asarray(data.filled(self.nodata)).astype(np.int16)
            ids[(ids < 0) | (ids >= len(self.table))] = self.nodata
            return ids
        return argmax_classes(src.read(window=window), self.nodata, np.int16)

    def class_counts(self) -> np.ndarray:
        """Map pixels of each class (int64, one per class of the table)."""
        k = len(self.table)
        counts = np.zeros(k, dtype=np.int64)
        with rasterio.open(self.path) as src:
            for win in self.windows():
                ids = self.read(src, win)
                counts += np.bincount(ids[ids != self.nodata].ravel(), minlength=k)[:k]
        return counts


def _bundle_table(bundle: Path) -> ClassTable:
    from geomm.model.bundle import META

    meta = bundle / META if bundle.is_dir() else bundle
    try:
        return ClassTable.from_dict(json.loads(meta.read_text())["classes"])
    except (OSError, ValueError, KeyError, TypeError, LabelError) as exc:
        raise LabelError(f"{meta}: no class table readable from this bundle ({exc}); give "
                         "the model bundle folder the map was predicted with") from None


def _tag_table(src: Any) -> ClassTable | None:
    doc = src.tags().get("GEOMM_CLASSES")
    if not doc:
        return None
    try:
        return ClassTable.from_dict(json.loads(doc))
    except (ValueError, LabelError):
        return None


def open_class_map(path: str | Path, *, bundle: str | Path | None = None) -> ClassMap:
    """Open a class or probabilities raster and settle its class names.

    Args:
        path: ``classes.tif`` (one integer band) or ``probabilities.tif`` (one band per class).
        bundle: Model bundle folder (or its ``bundle.json``) for class names; used when the
            raster carries no ``GEOMM_CLASSES`` tag.

    Raises:
        RasterReadError: the file is missing or not a raster.
        GeommError: the raster has no class names and several bands, or a bundle's class
            count differs from the bands.
    """
    path = Path(path)
    settle(path)  # a run killed mid-commit: finish it, never read a mix of two runs
    try:
        src = rasterio.open(path)
    except RasterioError as exc:
        why = "no such file" if not path.exists() else f"not a raster rasterio opens ({exc})"
        raise RasterReadError(f"{path}: {why}; give the classes.tif or probabilities.tif "
                              "written by `geomm predict`") from None
    with src:
        table, names_from = _tag_table(src), "GEOMM_CLASSES tag"
        if bundle is not None and table is None:
            table, names_from = _bundle_table(Path(bundle)), f"bundle {bundle}"
        single = src.count == 1 and np.issubdtype(np.dtype(src.dtypes[0]), np.integer)
        if src.count == 1 and not single:  # one class has no probabilities to compare
            raise GeommError(f"{path}: one {src.dtypes[0]} band: neither class ids (an integer "
                             "band) nor probabilities (a band per class); give classes.tif, or "
                             "convert the ids (gdal_translate -ot Byte)")
        if single:
            table, names_from = _single_band_table(src, table, names_from)
            nodata = int(src.nodata) if src.nodata is not None and 0 <= src.nodata < 32767 \
                else 255 if len(table) < 255 else len(table)
            kind = "classes"
        else:
            if table is None:
                descr = tuple(d or "" for d in src.descriptions)
                if not all(descr) or len(set(descr)) != len(descr):
                    raise GeommError(f"{path}: {src.count} bands without class names (no "
                                     "GEOMM_CLASSES tag or band descriptions); pass --bundle "
                                     "with the model bundle the map was predicted with")
                table, names_from = ClassTable.from_names(descr), "band descriptions"
            if len(table) != src.count:
                raise GeommError(f"{path}: {src.count} probability bands but {len(table)} "
                                 f"classes in the {names_from}; give the matching bundle")
            nodata, kind = 255 if len(table) < 255 else len(table), "probabilities"
        return ClassMap(path, table, kind, names_from, src.crs, src.transform, src.height,
                        src.width, nodata)


def _single_band_table(src: Any, table: ClassTable | None,
                       names_from: str) -> tuple[ClassTable, str]:
    """The table of a class raster: as given, else band tags ``class_<id>``, else the ids."""
    if table is not None:
        return table, names_from
    tagged = {int(k[6:]): v for k, v in src.tags(1).items()
              if k.startswith("class_") and k[6:].isdigit()}
    if tagged:
        k = max(tagged) + 1
        names = [tagged.get(i, str(i)) for i in range(k)]
        return ClassTable.from_names(names), "class_<id> band tags"
    top = _max_value(src)
    return ClassTable.from_names([str(i) for i in range(top + 1)]), "pixel values (no names)"


def _max_value(src: Any) -> int:
    """Largest class id in a nameless class raster (nodata excluded), read by windows."""
    top = 0
    for _, win in src.block_windows(1):
        data = src.read(1, window=win, masked=True).compressed()
        if data.size:
            top = max(top, int(data.max()))
    if top >= 255:
        raise GeommError(f"{src.name}: class ids up to {top}; a class map holds ids 0-254 "
                         "(write it with `geomm predict`, or set its nodata value)")
    return top


def geographic_note(cmap: ClassMap) -> str | None:
    """Why areas are in pixels only, or None when m² are available."""
    if cmap.crs is None:
        return "the map has no CRS: areas are given in pixels only"
    if not cmap.crs.is_projected:
        return ("the map's CRS is geographic (degrees): pixel areas vary with latitude, so "
                "areas are given in pixels only (strata weights are pixel shares); reproject "
                "the map to a projected or equal-area CRS for areas in m² and ha")
    if not math.isfinite(cmap.pixel_area_m2 or math.nan):
        return "the map's pixel size is not finite: areas are given in pixels only"
    return None
