"""Per-chunk readers behind the lazy (dask) arrays of :mod:`geomm.stack.coregister`.

A :class:`LayerReader` produces one chunk of a layer: its bands, then the valid-data mask as a
last plane. Files are opened and closed inside the task (rasterio handles are not thread-safe,
and closing them frees GDAL's cached blocks, so memory does not grow with the scene):

- aligned bands are read as stored (bit-identical), one ``read`` per file and chunk;
- bands that must be warped are grouped by source grid; each group reads the source window
  that covers the chunk (plus a margin for the resampling kernel) and warps all its bands in
  one GDAL call, with an alpha band that becomes the valid mask.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.warp import reproject
from rasterio.windows import Window

from geomm._remote import AnyPath, gdal_path, remote_env
from geomm.errors import RasterReadError

# source pixels read beyond a chunk's footprint, enough for every GDAL resampling kernel
_WARP_MARGIN = 4
_local = threading.local()


@dataclass(frozen=True)
class AlignedRead:
    """A band on the layer's lattice: a shifted window of its file."""

    position: int
    path: AnyPath
    index: int
    nodata: float | None
    col_off: int
    row_off: int
    src_width: int
    src_height: int


@dataclass(frozen=True)
class WarpGroup:
    """Bands sharing one source grid, warped together onto the layer grid."""

    positions: tuple[int, ...]
    sources: tuple[tuple[AnyPath, int], ...]
    nodata: float | None
    src_crs: CRS
    src_transform: Affine
    src_width: int
    src_height: int
    dst_crs: CRS
    resampling: str

    @cached_property
    def src_wkt(self) -> str:
        return self.src_crs.to_wkt()

    @cached_property
    def dst_wkt(self) -> str:
        return self.dst_crs.to_wkt()


@dataclass(frozen=True)
class LayerReader:
    """Reads chunks of one layer; called by ``dask.array.map_blocks``."""

    aligned: tuple[AlignedRead, ...]
    warps: tuple[WarpGroup, ...]
    nbands: int
    dtype: str
    fill: float
    transform: Affine
    """The layer's transform (chunk offsets are added to it)."""

    def __call__(self, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None  # map_blocks always passes it
        (_, _), (r0, r1), (c0, c1) = block_info[None]["array-location"]
        return self.read(r0, r1, c0, c1)

    def read(self, row0: int, row1: int, col0: int, col1: int) -> np.ndarray:
        """Rows ``[row0, row1)`` x cols ``[col0, col1)``: the bands, then the valid mask."""
        h, w = row1 - row0, col1 - col0
        out = np.empty((self.nbands + 1, h, w), dtype=self.dtype)
        if self.warps or not all(_covers(b, row0, col0, h, w) for b in self.aligned):
            out.fill(self.fill)  # parts of the chunk no band reaches keep the fill value
        valid = np.ones((h, w), dtype=bool)
        by_file: dict[AnyPath, list[AlignedRead]] = {}
        for band in self.aligned:
            by_file.setdefault(band.path, []).append(band)
        for path, bands in by_file.items():
            _read_aligned(path, bands, out, valid, row0, col0)
        for group in self.warps:
            _read_warped(group, out, valid, self.transform @ Affine.translation(col0, row0))
        out[-1] = valid
        return out


def _covers(band: AlignedRead, row0: int, col0: int, h: int, w: int) -> bool:
    r0, c0 = row0 + band.row_off, col0 + band.col_off
    return r0 >= 0 and c0 >= 0 and r0 + h <= band.src_height and c0 + w <= band.src_width


def _read_aligned(path: AnyPath, bands: list[AlignedRead], out: np.ndarray, valid: np.ndarray,
                  row0: int, col0: int) -> None:
    h, w = valid.shape
    first = bands[0]  # bands of one file share its grid
    r0, c0 = row0 + first.row_off, col0 + first.col_off
    rr0, cc0 = max(r0, 0), max(c0, 0)
    rr1, cc1 = min(r0 + h, first.src_height), min(c0 + w, first.src_width)
    if rr1 <= rr0 or cc1 <= cc0:
        valid[:] = False
        return
    sl = (slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0))
    if (rr1 - rr0, cc1 - cc0) != (h, w):  # the file ends inside the chunk
        inside = np.zeros((h, w), dtype=bool)
        inside[sl] = True
        valid &= inside
    with _reading(path), remote_env(path), rasterio.open(gdal_path(path)) as src:
        for band in bands:  # straight into the chunk buffer: no extra copy
            src.read(band.index, window=Window(cc0, rr0, cc1 - cc0, rr1 - rr0),
                     out=out[band.position][sl])
    for band in bands:
        if band.nodata is not None:
            valid[sl] &= ~_is_nodata(out[band.position][sl], band.nodata)
        if out.dtype.kind == "f":  # NaN / inf never count as data, declared or not
            valid[sl] &= np.isfinite(out[band.position][sl])


def _source_window(g: WarpGroup, dst_transform: Affine, h: int, w: int
                   ) -> tuple[Window | None, bool]:
    """Source pixels that can influence the chunk (None: none can), and whether the chunk
    lies wholly inside the source (every output pixel then has data)."""
    left, top = dst_transform @ (0, 0)
    right, bottom = dst_transform @ (w, h)
    try:
        sl, sb, sr, st = _transformer(g.dst_wkt, g.src_wkt).transform_bounds(
            left, bottom, right, top, densify_pts=21)
        if not all(map(math.isfinite, (sl, sb, sr, st))):
            raise ValueError("non-finite bounds")
    except Exception:  # outside the projection's domain: let GDAL sort out the whole source
        return Window(0, 0, g.src_width, g.src_height), False
    inv = ~g.src_transform
    cols, rows = zip(*(inv @ (x, y) for x, y in ((sl, sb), (sl, st), (sr, sb), (sr, st))),
                     strict=True)
    uc0, ur0 = math.floor(min(cols)) - _WARP_MARGIN, math.floor(min(rows)) - _WARP_MARGIN
    uc1, ur1 = math.ceil(max(cols)) + _WARP_MARGIN, math.ceil(max(rows)) + _WARP_MARGIN
    c0, r0 = max(0, uc0), max(0, ur0)
    c1, r1 = min(g.src_width, uc1), min(g.src_height, ur1)
    if c1 <= c0 or r1 <= r0:
        return None, False
    interior = (c0, r0, c1, r1) == (uc0, ur0, uc1, ur1)
    return Window(c0, r0, c1 - c0, r1 - r0), interior


def _transformer(src_wkt: str, dst_wkt: str) -> Any:
    """A PROJ transformer for this thread (they are not thread-safe; building one is slow)."""
    from pyproj import Transformer

    cache: dict[tuple[str, str], Any] = _local.__dict__.setdefault("transformers", {})
    key = (src_wkt, dst_wkt)
    if key not in cache:
        cache[key] = Transformer.from_crs(src_wkt, dst_wkt, always_xy=True)
    return cache[key]


@contextmanager
def _reading(path: AnyPath) -> Iterator[None]:
    """A failed read names the file: a damaged or truncated one, or a server that stopped
    answering (GDAL's own message, first line)."""
    try:
        yield
    except RasterioIOError as exc:
        cause = exc.__cause__ or exc
        why = str(cause).strip().splitlines()[0] if str(cause).strip() else "read failed"
        raise RasterReadError(f"{path}: reading it failed ({why}); the file is damaged or "
                              "truncated, or its server stopped answering: check it with "
                              "`gdalinfo -checksum`") from None


def _read_warped(g: WarpGroup, out: np.ndarray, valid: np.ndarray,
                 dst_transform: Affine) -> None:
    h, w = valid.shape
    win, interior = _source_window(g, dst_transform, h, w)
    if win is None:
        valid[:] = False
        return
    src = np.empty((len(g.sources), int(win.height), int(win.width)), dtype=out.dtype)
    for i, (path, index) in enumerate(g.sources):
        with _reading(path), remote_env(path), rasterio.open(gdal_path(path)) as ds:
            ds.read(index, window=win, out=src[i])
    # Inside the source footprint and without nodata every output pixel is valid: no alpha
    # band, which keeps GDAL on its fast kernels. Elsewhere alpha marks the pixels with data.
    alpha = not interior or g.nodata is not None
    n = len(g.sources)
    dst = np.empty((n + alpha, h, w), dtype=out.dtype)
    reproject(src, dst, src_transform=g.src_transform @ Affine.translation(win.col_off,
                                                                           win.row_off),
              src_crs=g.src_crs, src_nodata=g.nodata, dst_transform=dst_transform,
              dst_crs=g.dst_crs, dst_nodata=g.nodata if g.nodata is not None else 0,
              dst_alpha=n + 1 if alpha else 0, resampling=Resampling[g.resampling],
              num_threads=1, init_dest_nodata=True)
    for pos, plane in zip(g.positions, dst[:n], strict=True):
        out[pos] = plane
        if out.dtype.kind == "f":
            valid &= np.isfinite(plane)
    if alpha:
        valid &= dst[-1] > 0


def _is_nodata(arr: np.ndarray, nodata: float) -> np.ndarray:
    if np.isnan(nodata):
        return np.isnan(arr)
    return arr == nodata
