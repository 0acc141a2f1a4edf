"""Rasters written window by window, overviews built as rows complete, finished as COGs.

A Cloud-Optimized GeoTIFF needs its overviews before its full-resolution tiles, so it cannot
be appended to. :class:`StreamedRaster` writes the full-resolution windows into an
uncompressed tiled GeoTIFF in a work folder and, whenever a band of rows is complete, reduces
it into every overview level (``mode`` for class maps, nodata-aware ``average`` otherwise) in
numpy, so the overviews are ready when the last window lands. :meth:`StreamedRaster.finish`
then hands GDAL's COG driver a VRT of the full-resolution file with those overviews attached:
the driver only compresses and lays out tiles; nothing is held whole in memory.
"""

from __future__ import annotations

import contextlib
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from rasterio.shutil import copy as gdal_copy
from rasterio.windows import Window

__all__ = ["RasterLayout", "StreamedRaster", "overview_factors", "vrt_bands",
           "write_class_pam"]

BLOCK = 512
_CHUNK_COLS = 4096


def gdal_threads() -> str:
    """Threads for GDAL's compression: ``GDAL_NUM_THREADS`` when set (a batch worker sets its
    share of the cores), else all cores."""
    return os.environ.get("GDAL_NUM_THREADS", "ALL_CPUS")


def vrt_bands(root: ET.Element) -> list[tuple[ET.Element, str]]:
    """Every ``VRTRasterBand`` of a VRT with the ``SourceBand`` that reads it from a file of
    the same layout: its number, or ``mask,1`` for the per-dataset mask band."""
    masks = {id(b) for m in root.iter("MaskBand") for b in m.iter("VRTRasterBand")}
    return [(b, "mask,1" if id(b) in masks else b.get("band", "1"))
            for b in root.iter("VRTRasterBand")]


def overview_factors(height: int, width: int, block: int = BLOCK) -> list[int]:
    """Overview factors 2, 4, ... until the smallest level fits in one block (as GDAL's COG)."""
    out, f = [], 2
    while max(height, width) / (f // 2) > block:
        out.append(f)
        f *= 2
    return out


@dataclass(frozen=True)
class RasterLayout:
    """What one output raster holds and how its COG is encoded."""

    count: int
    """Bands."""
    dtype: str
    """``"uint8"`` or ``"float32"``."""
    nodata: float | None
    """Nodata value (excluded from overview averages and modes)."""
    resampling: Literal["mode", "average"]
    """Overview reduction."""
    compress: str = "DEFLATE"
    """COG compression."""
    level: int | None = None
    """Compression level (codec default when None)."""
    descriptions: tuple[str, ...] = ()
    """Band descriptions."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Dataset metadata items."""
    band_tags: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    """Band (1-based) -> metadata items."""
    colormap: Mapping[int, tuple[int, int, int, int]] | None = None
    """Colour table of band 1."""
    scale: float | None = None
    """Band scale (physical value = stored * scale), e.g. 1/255 for probabilities."""
    mask: bool = False
    """Write a per-dataset mask band (0 where no pixel was predicted): for data that has no
    spare value to be nodata (probabilities 0-255)."""


class StreamedRaster:
    """One output raster on a grid, written window by window, finished into a COG.

    Args:
        path: final COG path (written by :meth:`finish`).
        work: work folder for the intermediate files (same file system as ``path``).
        height, width, crs, transform: the grid.
        layout: bands, encoding and metadata.

    Windows may be written in any order; :meth:`rows_complete` must only be told about rows
    whose every pixel has been written.
    """

    def __init__(self, path: Path, work: Path, *, height: int, width: int, crs: Any,
                 transform: Any, layout: RasterLayout) -> None:
        self.path, self.layout = path, layout
        self.height, self.width = height, width
        self.factors = overview_factors(height, width)
        self._full = work / f"{path.stem}.full.tif"
        self._levels = [work / f"{path.stem}.ov{f}.tif" for f in self.factors]
        self._done_rows = 0
        profile = {"driver": "GTiff", "height": height, "width": width,
                   "count": layout.count, "dtype": layout.dtype, "crs": crs,
                   "transform": transform, "nodata": layout.nodata, "tiled": True,
                   "blockxsize": BLOCK, "blockysize": BLOCK, "interleave": "band",
                   "BIGTIFF": "IF_SAFER",
                   # 3 or 4 bytes per pixel are not a colour image here (a 4-class map's
                   # probabilities would read as RGB + alpha): grey and undefined bands
                   "photometric": "MINISBLACK"}
        with rasterio.open(self._full, "w", **profile) as dst:
            self._describe(dst)
        for f, p in zip(self.factors, self._levels, strict=True):
            with rasterio.open(p, "w", **{**profile, "height": math.ceil(height / f),
                                          "width": math.ceil(width / f),
                                          "transform": transform * transform.scale(f)}):
                pass
        self._dst = rasterio.open(self._full, "r+")

    def _env(self) -> Any:
        """GDAL settings where a mask is written: inside the TIFF, not in a .msk file."""
        return rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True) if self.layout.mask else \
            contextlib.nullcontext()

    def _describe(self, dst: Any) -> None:
        lay = self.layout
        for i, d in enumerate(lay.descriptions, start=1):
            dst.set_band_description(i, d)
        if lay.tags:
            dst.update_tags(**lay.tags)
        for b, t in lay.band_tags.items():
            dst.update_tags(b, **t)
        if lay.colormap is not None:
            dst.write_colormap(1, dict(lay.colormap))
        if lay.scale is not None:
            dst.scales = (lay.scale,) * lay.count

    def write(self, data: np.ndarray, row: int, col: int,
              valid: np.ndarray | None = None) -> None:
        """Write ``(count, h, w)`` at base (row, col); with a mask, ``valid`` (h, w) too."""
        h, w = data.shape[1:]
        with self._env():
            self._dst.write(data, window=Window(col, row, w, h))
            if self.layout.mask:
                if valid is None:
                    raise ValueError(f"{self.path}: a masked raster needs `valid` pixels")
                self._dst.write_mask(np.where(valid, 255, 0).astype(np.uint8),
                                     window=Window(col, row, w, h))

    def rows_complete(self, rows: int) -> None:
        """Every pixel above ``rows`` is written: reduce them into the overview levels."""
        if not self.factors:
            self._done_rows = rows
            return
        step = self.factors[-1]
        end = self.height if rows >= self.height else rows // step * step
        if end <= self._done_rows:
            return
        with self._env():
            levels = [rasterio.open(p, "r+") for p in self._levels]
            try:
                for c0 in range(0, self.width, _CHUNK_COLS):
                    self._reduce(levels, c0, min(self.width, c0 + _CHUNK_COLS), end)
            finally:
                for ov in levels:
                    ov.close()
        self._done_rows = end

    def _reduce(self, levels: list[Any], c0: int, c1: int, end: int) -> None:
        """Rows ``_done_rows:end`` of columns ``c0:c1`` into every overview level."""
        win = Window(c0, self._done_rows, c1 - c0, end - self._done_rows)
        red = self._dst.read(window=win)
        valid: np.ndarray | None = (np.asarray(self._dst.read_masks(1, window=win) > 0)
                                    if self.layout.mask else None)
        for f, ov in zip(self.factors, levels, strict=True):
            # each level from the one before (as gdaladdo): the rows and columns are
            # multiples of the largest factor, so the halvings line up
            cells = _cells(valid[None]) if valid is not None else None  # (4, 1, h/2, w/2)
            red = _halve(red, self.layout, None if cells is None else ~cells)
            out = Window(c0 // f, self._done_rows // f, red.shape[2], red.shape[1])
            ov.write(red, window=out)
            if cells is not None:  # a cell is valid where any of its pixels is
                valid = np.logical_or.reduce(cells, axis=0)[0]
                ov.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=out)

    def finish(self) -> Path:
        """Write the COG at ``path`` (overviews from the levels built so far) and return it."""
        self.rows_complete(self.height)
        self._dst.close()
        vrt = self._full.with_suffix(".vrt")
        gdal_copy(self._full, vrt, driver="VRT")
        tree = ET.parse(vrt)
        for band, source in vrt_bands(tree.getroot()):
            for p in self._levels:
                ov = ET.SubElement(band, "Overview")
                ET.SubElement(ov, "SourceFilename", relativeToVRT="1").text = p.name
                ET.SubElement(ov, "SourceBand").text = source
        tree.write(vrt)
        opts: dict[str, Any] = {"COMPRESS": self.layout.compress, "BLOCKSIZE": BLOCK,
                                "OVERVIEWS": "FORCE_USE_EXISTING" if self.factors else "NONE",
                                "NUM_THREADS": gdal_threads(), "BIGTIFF": "IF_SAFER"}
        if self.layout.level is not None:
            opts["LEVEL"] = self.layout.level
        if self.layout.compress in ("DEFLATE", "ZSTD", "LZW"):
            opts["PREDICTOR"] = "YES" if self.layout.dtype != "float32" else "FLOATING_POINT"
        with self._env():
            gdal_copy(vrt, self.path, driver="COG", **opts)
        for p in (self._full, vrt, *self._levels):
            p.unlink(missing_ok=True)
        return self.path

    def close(self) -> None:
        """Release the intermediate file (after an error)."""
        if not self._dst.closed:
            self._dst.close()


# GDAL's GFT_* field types and GFU_* usages of raster attribute table columns
_RAT_COLUMNS = (("Value", 0, 5), ("Class", 2, 2), ("Red", 0, 6), ("Green", 0, 7),
                ("Blue", 0, 8), ("Alpha", 0, 9), ("Count", 0, 1))


def write_class_pam(raster: Path, names: Sequence[str], colours: Sequence[Sequence[int]],
                    counts: Sequence[int]) -> Path:
    """Write ``<raster>.aux.xml``: GDAL's PAM sidecar of a class raster with one category
    name per class, a colour table as long as the class list, and a thematic raster attribute
    table (value, class, red, green, blue, alpha, pixel count).

    GDAL up to 3.11 reads categories and attribute tables of a GeoTIFF only from this file
    (the TIFF colour map always has 256 entries for 8-bit pixels; the sidecar's shorter table
    replaces it), so ``gdalinfo`` and QGIS list the classes when the file is beside the COG.
    Class ids are 0..K-1; the nodata value is outside the table (transparent in QGIS).
    """
    from geomm.predict.sidecars import _atomic_write

    big = max((int(c) for c in counts), default=0) >= 2**31  # GFT_Integer is 32-bit
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", band="1")
    cats = ET.SubElement(band, "CategoryNames")
    for n in names:
        ET.SubElement(cats, "Category").text = n
    table = ET.SubElement(band, "ColorTable")
    for r, g, b in colours:
        ET.SubElement(table, "Entry", c1=str(r), c2=str(g), c3=str(b), c4="255")
    rat = ET.SubElement(band, "GDALRasterAttributeTable", tableType="thematic")
    for i, (name, kind, usage) in enumerate(_RAT_COLUMNS):
        field = ET.SubElement(rat, "FieldDefn", index=str(i))
        ET.SubElement(field, "Name").text = name
        ET.SubElement(field, "Type").text = str(1 if name == "Count" and big else kind)
        ET.SubElement(field, "Usage").text = str(usage)
    for i, (n, (r, g, b), c) in enumerate(zip(names, colours, counts, strict=True)):
        row = ET.SubElement(rat, "Row", index=str(i))
        for v in (i, n, r, g, b, 255, int(c)):
            ET.SubElement(row, "F").text = str(v)
    ET.indent(root)
    text = ET.tostring(root, encoding="unicode") + "\n"
    return _atomic_write(raster.with_name(raster.name + ".aux.xml"), text.encode("utf-8"))


def _cells(block: np.ndarray) -> np.ndarray:
    """The four pixels of each 2x2 cell of ``(C, h, w)``: ``(4, C, ceil(h/2), ceil(w/2))``.

    An odd last row or column is repeated, which weighs the pixels of a partial cell equally,
    as GDAL does for edge cells.
    """
    _, h, w = block.shape
    if h % 2 or w % 2:
        block = np.pad(block, ((0, 0), (0, h % 2), (0, w % 2)), mode="edge")
    return np.stack([block[:, 0::2, 0::2], block[:, 0::2, 1::2], block[:, 1::2, 0::2],
                     block[:, 1::2, 1::2]])


def _halve(block: np.ndarray, layout: RasterLayout,
           outside: np.ndarray | None = None) -> np.ndarray:
    """Downsample ``(C, h, w)`` by 2: nodata-aware mode or mean of each 2x2 cell; pixels that
    are nodata, or ``outside`` a masked raster's mask (its :func:`_cells`, negated), are left
    out."""
    cells = _cells(block)  # (4, C, h/2, w/2)
    nodata = layout.nodata
    isnan = nodata is not None and isinstance(nodata, float) and math.isnan(nodata)
    bad = (np.isnan(cells) if isnan else cells == nodata) if nodata is not None else None
    if outside is not None:
        bad = outside if bad is None else bad | outside
    if layout.resampling == "mode":
        votes = np.zeros(cells.shape, dtype=np.int8)
        for j in range(4):
            votes += cells == cells[j]
        if bad is not None:
            votes = np.where(bad, -1, votes)
        return np.take_along_axis(cells, votes.argmax(axis=0)[None], axis=0)[0]
    if bad is None:
        total = cells.sum(axis=0, dtype=np.float32)
        mean = total / 4
        return (mean + 0.5).astype(block.dtype) if block.dtype.kind in "iu" else \
            mean.astype(block.dtype)
    n = 4 - bad.sum(axis=0, dtype=np.int8)
    total = np.where(bad, 0, cells).sum(axis=0, dtype=np.float32)
    mean = total / np.maximum(n, 1)
    if block.dtype.kind in "iu":
        mean = mean + 0.5
    fill = float("nan") if isnan else float(nodata or 0)
    return np.where(n > 0, mean, fill).astype(block.dtype)
