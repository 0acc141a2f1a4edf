"""Tile arithmetic: the store holds each pixel once; tiles are read with a halo around them.

A scene of ``height x width`` base pixels is cut into ``size x size`` tiles (the last row and
column may be smaller). A tile is read with ``halo`` extra pixels on every side, padded with
invalid pixels beyond the scene edge; cropping ``halo`` pixels off every side of what was read
gives back the tile's core, and the cores cover every base pixel exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from affine import Affine

__all__ = ["TileWindow", "tile_windows"]


@dataclass(frozen=True)
class TileWindow:
    """One tile: its core (held once in the store) and its read window (core plus halo)."""

    row: int
    """Tile row in the tile grid."""
    col: int
    """Tile column in the tile grid."""
    row0: int
    """First base row of the core."""
    row1: int
    """One past the last base row of the core."""
    col0: int
    """First base column of the core."""
    col1: int
    """One past the last base column of the core."""
    halo: int
    """Extra base pixels read on every side."""

    @property
    def id(self) -> str:
        """Stable identifier, e.g. ``"r003c012"``."""
        return f"r{self.row:03d}c{self.col:03d}"

    @property
    def core_shape(self) -> tuple[int, int]:
        """(rows, cols) of the core."""
        return self.row1 - self.row0, self.col1 - self.col0

    @property
    def read_slices(self) -> tuple[slice, slice]:
        """Base-pixel slices of the read window; may start below 0 or end past the scene."""
        h = self.halo
        return slice(self.row0 - h, self.row1 + h), slice(self.col0 - h, self.col1 + h)

    @property
    def crop(self) -> tuple[slice, slice]:
        """Slices that cut the core out of an array read over :attr:`read_slices`."""
        r, c = self.core_shape
        return slice(self.halo, self.halo + r), slice(self.halo, self.halo + c)

    def at(self, factor: int) -> TileWindow:
        """The same tile in a layer at ``factor`` times the base resolution."""
        vals = (self.row0, self.row1, self.col0, self.col1, self.halo)
        if any(v % factor for v in vals):
            raise ValueError(f"tile {self.id} {vals} is not whole factor-{factor} pixels")
        r0, r1, c0, c1, h = (v // factor for v in vals)
        return TileWindow(self.row, self.col, r0, r1, c0, c1, h)

    def bounds(self, transform: Affine) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the core under a north-up base ``transform``."""
        left, top = transform @ (self.col0, self.row0)
        right, bottom = transform @ (self.col1, self.row1)
        return left, bottom, right, top


def tile_windows(height: int, width: int, size: int, halo: int = 0) -> Iterator[TileWindow]:
    """Yield the tiles of a ``height x width`` scene, row by row.

    Args:
        height: scene rows (base pixels).
        width: scene columns (base pixels).
        size: tile side (base pixels), > 0.
        halo: overlap read on each side (base pixels), >= 0.
    """
    if size < 1 or halo < 0 or height < 0 or width < 0:
        raise ValueError(f"bad tiling: {height}x{width} px, size {size}, halo {halo}")
    for r in range(math.ceil(height / size)):
        for c in range(math.ceil(width / size)):
            yield TileWindow(r, c, r * size, min((r + 1) * size, height),
                             c * size, min((c + 1) * size, width), halo)
