"""Reading a tile store's base arrays tile by tile, with a small cache (private helpers)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from geomm.errors import RecipeError
from geomm.stack.store import TileStore


class _TileReader:
    """Windows of a store's Zarr arrays, cut from decoded chunks (tiles) kept in an LRU cache.

    Random patches revisit the same tiles; decoding each once per worker, instead of once
    per patch, keeps the loader well ahead of a CPU model.
    """

    def __init__(self, store_path: Path, max_bytes: int = 0) -> None:
        import zarr

        self.group: Any = zarr.open_group(str(store_path / "store.zarr"), mode="r")
        self.max_bytes, self.nbytes = max_bytes, 0
        self.arrays: dict[str, Any] = {}
        self.tiles: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()

    def read(self, name: str, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Rows ``[r0, r1)`` x cols ``[c0, c1)`` of array ``name`` (e.g. ``"base/labels"``)."""
        if name not in self.arrays:
            self.arrays[name] = self.group[name]
        arr = self.arrays[name]
        (th, tw), lead = arr.chunks[-2:], (slice(None),) * (arr.ndim - 2)
        if not self.max_bytes:  # a streamed pass: read straight through, chunks in parallel
            return np.asarray(arr[(*lead, slice(r0, r1), slice(c0, c1))])
        out = np.empty((*arr.shape[:-2], r1 - r0, c1 - c0), dtype=arr.dtype)
        for tr in range(r0 // th, (r1 - 1) // th + 1):
            for tc in range(c0 // tw, (c1 - 1) // tw + 1):
                key = (name, tr, tc)
                tile = self.tiles.get(key)
                if tile is None:
                    tile = self.tiles[key] = np.asarray(
                        arr[(*lead, slice(tr * th, (tr + 1) * th), slice(tc * tw, (tc + 1) * tw))])
                    self.nbytes += tile.nbytes
                    while self.nbytes > self.max_bytes and len(self.tiles) > 1:
                        self.nbytes -= self.tiles.popitem(last=False)[1].nbytes
                self.tiles.move_to_end(key)
                y0, y1 = max(r0, tr * th), min(r1, (tr + 1) * th)
                x0, x1 = max(c0, tc * tw), min(c1, (tc + 1) * tw)
                out[..., y0 - r0:y1 - r0, x0 - c0:x1 - c0] = \
                    tile[..., y0 - tr * th:y1 - tr * th, x0 - tc * tw:x1 - tc * tw]
        return out


def _classes(store: TileStore, reader: _TileReader) -> tuple[int, int]:
    """(number of classes, ignore value); 0 classes when the store has no label raster."""
    table = store.manifest.get("classes") or {}
    n = len(table.get("classes", [])) if "labels" in reader.group["base"] else 0
    return n, int(table.get("ignore_value", 255))


def _row_bands(store: TileStore, step: int) -> Iterator[tuple[int, int]]:
    """Base-row ranges of one row of tiles each (a multiple of ``step`` rows)."""
    rows = max(step, store.tile_size // step * step)
    height = store.grid.height
    for r0 in range(0, height, rows):
        yield r0, min(r0 + rows, height)


def _check_mask(store: TileStore, mask: np.ndarray, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != store.grid.shape:
        raise RecipeError(f"{what} must be a bool mask of the base grid {store.grid.shape} "
                          f"of {store.path}, got {mask.dtype} {mask.shape}")
    return mask


def _usable(reader: _TileReader, n_classes: int, r0: int, r1: int, c0: int, c1: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, valid mask and where labels count (valid and a class id) of a window."""
    valid = reader.read("base/valid", r0, r1, c0, c1).astype(bool, copy=False)
    if not n_classes:
        return np.zeros(valid.shape, np.uint8), valid, np.zeros(valid.shape, bool)
    labels = reader.read("base/labels", r0, r1, c0, c1)
    return labels, valid, valid & (labels < n_classes)


def layer_bands(store: TileStore, key: str) -> tuple[str, ...]:
    return tuple(next(lyr["bands"] for lyr in store.manifest["layers"] if lyr["key"] == key))
