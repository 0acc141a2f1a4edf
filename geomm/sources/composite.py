"""Composite one band over its items, per chunk with Dask, onto the band's own grid.

Per chunk, each item that reaches it is read (a window of the file when the item lies on the
band's lattice, bit for bit; else warped by GDAL onto the chunk), its mask asset is read with
nearest resampling and the dropped classes or bits are left out, and the valid observations
are reduced per pixel: ``median`` and ``mean`` (float32, NaN where nothing was seen) or
``first`` (the first valid observation in the modality's item order, in the items' own data
type when they share one). Items that declare ``raster:bands`` scale and offset are converted
to physical values first, so items of different processing baselines composite correctly.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geomm._remote import gdal_path, remote_env
from geomm.errors import RasterReadError
from geomm.sources.plan import AssetRead, BandPlan
from geomm.stacpresets import MaskSpec

__all__ = ["BandComposite", "single_source", "write_composite", "write_window_vrt"]

CHUNK = 1024
"""Composite chunk side, pixels of the band."""


@contextmanager
def _reading(href: str) -> Iterator[None]:
    """A failed read names the asset (a damaged or truncated file, a server gone)."""
    try:
        yield
    except RasterioIOError as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else "read failed"
        raise RasterReadError(f"{href}: reading it failed ({why}); the file is damaged or "
                              "truncated, or its server stopped answering") from None


@dataclass(frozen=True)
class BandComposite:
    """Computes chunks of one band's composite (called by ``dask.array.map_blocks``)."""

    band: BandPlan
    mask: MaskSpec | None
    method: str
    physical: bool
    resampling: str
    dtype: str
    """Output type: the items' own for ``first`` of raw values, else float32."""
    nodata: float
    """Output value where no valid observation exists."""
    src_nodata: float | None = None
    """The modality's ``nodata:`` (instead of each asset's own), e.g. for JPEG2000 files that
    do not declare theirs."""

    def __call__(self, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        return self.read(r0, r1, c0, c1)

    def read(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        """The composite on rows ``[row0, row1)`` x cols ``[col0, col1)`` of the band grid."""
        h, w = row1 - row0, col1 - col0
        t = self.band.grid.transform * Affine.translation(col0, row0)
        out = np.full((h, w), np.nan, dtype=np.float64)
        obs = []
        for read, mread in zip(self.band.reads, self.band.masks, strict=True):
            if not _touches(read, self.band.grid.crs, t, h, w):
                continue
            values, ok = _read_onto(read, self.band.grid.crs, t, h, w, self.resampling,
                                    read.nodata if self.src_nodata is None else self.src_nodata)
            if not ok.any():
                continue
            if self.mask is not None and mread is not None:
                codes, seen = _read_onto(mread, self.band.grid.crs, t, h, w, "nearest",
                                         mread.nodata)
                ok &= seen & ~_dropped(codes, self.mask)
            values = values.astype(np.float64)
            if self.physical:
                values = values * (read.scale if read.scale is not None else 1.0) + \
                    (read.offset or 0.0)
            values[~ok] = np.nan
            if self.method == "first":
                np.copyto(out, values, where=np.isnan(out))
                if not np.isnan(out).any():
                    break  # every pixel has its first valid value: the other items are moot
            else:
                obs.append(values)
        if obs:
            stack = np.stack(obs)
            seen = ~np.isnan(stack).all(axis=0)  # reduce only where something was seen:
            reduce = np.nanmedian if self.method == "median" else np.nanmean  # no warnings
            out[seen] = reduce(stack[:, seen], axis=0)
        if np.dtype(self.dtype).kind == "f":
            return out.astype(self.dtype)
        res = np.where(np.isnan(out), self.nodata, out)
        return res.astype(self.dtype)


def _touches(read: AssetRead, crs: Any, t: Affine, h: int, w: int) -> bool:
    if read.crs != crs:
        return True  # the warp finds out (cheaply: the VRT reads nothing outside)
    left, top = t.c, t.f
    right, bottom = left + t.a * w, top + t.e * h
    b = read.bounds
    return b[0] < right and b[2] > left and b[1] < top and b[3] > bottom


def _aligned(read: AssetRead, crs: Any, t: Affine) -> tuple[int, int] | None:
    """(row, col) of the chunk's corner in the asset's pixels when it lies on its lattice."""
    rt = read.transform
    if read.crs != crs or rt.b or rt.d or not math.isclose(rt.a, t.a) or \
            not math.isclose(rt.e, t.e):
        return None
    col, row = (t.c - rt.c) / rt.a, (t.f - rt.f) / rt.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return round(row), round(col)


def _read_onto(read: AssetRead, crs: Any, t: Affine, h: int, w: int, resampling: str,
               nodata: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The asset's values on the chunk grid and where it has data (not ``nodata``)."""
    at = _aligned(read, crs, t)
    path = gdal_path(read.href)
    with _reading(read.href), remote_env(read.href), rasterio.open(path) as src:
        if at is not None:
            r0, c0 = at
            rr0, cc0 = max(r0, 0), max(c0, 0)
            rr1, cc1 = min(r0 + h, read.height), min(c0 + w, read.width)
            values = np.zeros((h, w), dtype=read.dtype)
            ok = np.zeros((h, w), dtype=bool)
            if rr1 > rr0 and cc1 > cc0:
                sl = (slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0))
                win = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
                values[sl] = src.read(1, window=win)
                ok[sl] = True
        else:
            with WarpedVRT(src, crs=crs, transform=t, width=w, height=h,
                           resampling=Resampling[resampling], src_nodata=nodata,
                           nodata=nodata, add_alpha=nodata is None) as vrt:
                values = vrt.read(1)
                ok = vrt.read_masks(1) > 0
    if nodata is not None:
        ok &= ~(np.isnan(values) if np.isnan(nodata) else values == nodata)
    if values.dtype.kind == "f":
        ok &= np.isfinite(values)
    return values, ok


def _dropped(codes: np.ndarray, mask: MaskSpec) -> np.ndarray:
    out = np.isin(codes, mask.drop) if mask.drop else np.zeros(codes.shape, bool)
    if mask.bits:
        bits = np.uint64(sum(1 << b for b in mask.bits))
        out |= (codes.astype(np.uint64) & bits) != 0
    return out


class _Writer:
    """``dask.array.store`` target: writes each block into its window of a GeoTIFF."""

    def __init__(self, dst: Any) -> None:
        self.dst = dst
        self.lock = threading.Lock()

    def __setitem__(self, key: tuple[slice, slice], value: np.ndarray) -> None:
        rows, cols = key
        win = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        with self.lock:
            self.dst.write(value, 1, window=win)


def write_composite(comp: BandComposite, out: Path, *, workers: int | None = None) -> Path:
    """Compute ``comp`` chunk by chunk (Dask threads) into a tiled GeoTIFF at ``out``,
    written under a temporary name and renamed when complete."""
    import dask
    import dask.array as da

    g = comp.band.grid
    chunks = (tuple(min(CHUNK, g.height - r) for r in range(0, g.height, CHUNK)),
              tuple(min(CHUNK, g.width - c) for c in range(0, g.width, CHUNK)))
    arr = da.map_blocks(comp, chunks=chunks, dtype=comp.dtype,
                        meta=np.empty((0, 0), comp.dtype))
    profile = {"driver": "GTiff", "dtype": comp.dtype, "count": 1, "width": g.width,
               "height": g.height, "crs": g.crs, "transform": g.transform,
               "nodata": comp.nodata, "tiled": True, "blockxsize": 512, "blockysize": 512,
               "compress": "zstd", "zstd_level": 1, "BIGTIFF": "IF_SAFER"}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            with dask.config.set(scheduler="threads", num_workers=workers):
                da.store(arr, _Writer(dst), lock=False)  # type: ignore[arg-type]
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def single_source(comp: BandComposite) -> AssetRead | None:
    """The one asset that *is* the composite, where nothing is computed: ``first`` of a single
    unsigned item on the band's lattice, no mask, no unit conversion, its own nodata kept."""
    band = comp.band
    if comp.method != "first" or len(band.reads) != 1 or comp.mask is not None or \
            comp.physical:
        return None
    read = band.reads[0]
    nodata = read.nodata if comp.src_nodata is None else comp.src_nodata
    if read.href != read.origin or read.dtype != comp.dtype or nodata is None or \
            float(nodata) != comp.nodata:
        return None
    if _aligned(read, band.grid.crs, band.grid.transform) is None:
        return None
    return read


def _vrt_source(href: str) -> str:
    """The GDAL name of ``href`` inside a VRT: no directory listing for HTTP sources."""
    from urllib.parse import quote

    if href.startswith(("http://", "https://")):
        return f"/vsicurl?list_dir=no&url={quote(href, safe='')}"
    return gdal_path(href)


def write_window_vrt(comp: BandComposite, read: AssetRead, out: Path) -> Path:
    """The band grid's window of ``read`` as a VRT (no pixel copied): what the composite of a
    single aligned item is, read straight from its file when geomm stacks it."""
    from xml.sax.saxutils import escape

    g = comp.band.grid
    at = _aligned(read, g.crs, g.transform)
    assert at is not None
    r0, c0 = at
    rr0, cc0 = max(r0, 0), max(c0, 0)
    rr1, cc1 = min(r0 + g.height, read.height), min(c0 + g.width, read.width)
    gdal_type = {"uint8": "Byte"}.get(read.dtype, read.dtype.capitalize().replace("Uint",
                                                                                    "UInt"))
    t = g.transform
    xml = (f'<VRTDataset rasterXSize="{g.width}" rasterYSize="{g.height}">\n'
           f"  <SRS>{escape(g.crs.to_wkt())}</SRS>\n"
           f"  <GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>\n"
           f'  <VRTRasterBand dataType="{gdal_type}" band="1">\n'
           f"    <NoDataValue>{comp.nodata:g}</NoDataValue>\n"
           f"    <SimpleSource>\n"
           f'      <SourceFilename relativeToVRT="0">{escape(_vrt_source(read.href))}'
           f"</SourceFilename>\n      <SourceBand>1</SourceBand>\n"
           f'      <SrcRect xOff="{cc0}" yOff="{rr0}" xSize="{cc1 - cc0}" ySize="{rr1 - rr0}"/>\n'
           f'      <DstRect xOff="{cc0 - c0}" yOff="{rr0 - r0}" xSize="{cc1 - cc0}" '
           f'ySize="{rr1 - rr0}"/>\n'
           f"    </SimpleSource>\n  </VRTRasterBand>\n</VRTDataset>\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    tmp.write_text(xml)
    os.replace(tmp, out)
    return out
