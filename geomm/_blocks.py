"""Per-chunk readers behind the lazy (dask) arrays of :mod:`geomm.coregister`.

Each task opens its files through a small per-thread cache of rasterio handles (datasets are
not thread-safe, handles are cheap to keep) and returns one chunk of a layer: its bands plus,
as a last plane, the valid-data mask. Aligned bands are read as stored (bit-identical); other
bands go through a GDAL WarpedVRT restricted to the chunk, with an alpha band for validity.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

_MAX_HANDLES = 64
_local = threading.local()


@dataclass(frozen=True)
class BandRead:
    """How to produce one band of a layer on its grid."""

    path: Path
    index: int
    nodata: float | None
    warp: bool
    col_off: int = 0
    row_off: int = 0
    src_width: int = 0
    src_height: int = 0
    crs: CRS | None = None
    transform: Affine | None = None
    width: int = 0
    height: int = 0
    resampling: str = "bilinear"


def _handle(path: Path) -> Any:
    cache: OrderedDict[tuple[str, int, int], Any] = getattr(_local, "cache", None) or OrderedDict()
    _local.cache = cache
    st = os.stat(path)
    key = (str(path), st.st_mtime_ns, st.st_size)
    ds = cache.get(key)
    if ds is None:
        ds = rasterio.open(path)
        cache[key] = ds
        while len(cache) > _MAX_HANDLES:
            cache.popitem(last=False)[1].close()
    else:
        cache.move_to_end(key)
    return ds


def _warped(band: BandRead) -> Any:
    vrts: dict[BandRead, Any] = getattr(_local, "vrts", None) or {}
    _local.vrts = vrts
    src = _handle(band.path)
    vrt = vrts.get(band)
    if vrt is None or vrt.src_dataset is not src or vrt.closed:
        vrt = WarpedVRT(src, crs=band.crs, transform=band.transform, width=band.width,
                        height=band.height, resampling=Resampling[band.resampling],
                        src_nodata=band.nodata, nodata=band.nodata, add_alpha=band.nodata is None,
                        warp_extras={"NUM_THREADS": 1})
        vrts[band] = vrt
    return vrt


def read_block(bands: tuple[BandRead, ...], dtype: str, fill: float, row0: int, row1: int,
               col0: int, col1: int) -> np.ndarray:
    """Read rows/cols ``[row0, row1) x [col0, col1)`` of a layer: bands, then the valid mask."""
    h, w = row1 - row0, col1 - col0
    out = np.full((len(bands) + 1, h, w), fill, dtype=dtype)
    valid = np.ones((h, w), dtype=bool)
    for i, band in enumerate(bands):
        if band.warp:
            vrt = _warped(band)
            win = Window(col0, row0, w, h)
            if band.nodata is None:
                arr = vrt.read([band.index, vrt.count], window=win)
                out[i] = arr[0]
                valid &= arr[1] > 0
            else:
                arr = vrt.read(band.index, window=win)
                out[i] = arr
                valid &= ~_is_nodata(arr, band.nodata)
            continue
        r0, c0 = row0 + band.row_off, col0 + band.col_off
        rr0, cc0 = max(r0, 0), max(c0, 0)
        rr1, cc1 = min(r0 + h, band.src_height), min(c0 + w, band.src_width)
        inside = np.zeros((h, w), dtype=bool)
        if rr1 > rr0 and cc1 > cc0:
            arr = _handle(band.path).read(band.index, window=Window(cc0, rr0, cc1 - cc0, rr1 - rr0))
            sl = (slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0))
            out[i][sl] = arr
            inside[sl] = True if band.nodata is None else ~_is_nodata(arr, band.nodata)
        valid &= inside
    out[-1] = valid
    return out


def _is_nodata(arr: np.ndarray, nodata: float) -> np.ndarray:
    if np.isnan(nodata):
        return np.isnan(arr)
    return arr == nodata
