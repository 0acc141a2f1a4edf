"""Array plumbing shared by the stages: grid-aware DataArrays and tile-aligned chunks."""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from geomm.stack.grid import GridSpec


def grid_dataarray(data: da.Array, grid: GridSpec, factor: int, bands: Sequence[str] | None,
                   name: str) -> xr.DataArray:
    """Wrap a (band, y, x) or (y, x) dask array of layer ``factor`` with coords and CRS."""
    t = grid.transform_at(factor)
    h, w = data.shape[-2:]
    coords: dict[str, object] = {
        "y": t.f + t.e * (np.arange(h) + 0.5), "x": t.c + t.a * (np.arange(w) + 0.5)}
    dims: tuple[str, ...] = ("y", "x")
    if bands is not None:
        coords["band"] = np.array(list(bands), dtype=object)
        dims = ("band", "y", "x")
    arr = xr.DataArray(data, dims=dims, coords=coords, name=name)
    arr = arr.rio.write_crs(grid.crs).rio.write_transform(t)
    arr.attrs["resolution"] = grid.resolution * factor
    arr.attrs["factor"] = factor
    arr.attrs["unit"] = grid.unit
    return arr


def upsample(arr: da.Array, factor: int) -> da.Array:
    """Nearest-neighbour upsampling by an integer factor, chunk by chunk (chunks scale too)."""
    if factor == 1:
        return arr
    chunks = arr.chunks[:-2] + tuple(tuple(c * factor for c in ch) for ch in arr.chunks[-2:])
    return da.map_blocks(_repeat_block, arr, factor, chunks=chunks, dtype=arr.dtype)


def _repeat_block(block: np.ndarray, factor: int) -> np.ndarray:
    return block.repeat(factor, axis=-2).repeat(factor, axis=-1)


def split_chunks(n: int, chunk: int) -> tuple[int, ...]:
    """Chunk sizes of ``n`` pixels cut every ``chunk``: all full but the last."""
    full, rest = divmod(n, chunk)
    return (chunk,) * full + ((rest,) if rest else ())
