"""One block of a larger scene: predicted over the block plus a context margin, kept inside.

A batch job cuts a scene into blocks (:mod:`geomm.batch.jobs`); each block is predicted on its
own, reading ``margin`` pixels of real data beyond its edges where the scene has them, so a
block edge is like a tile seam (the model sees context across it) and the blocks' maps fit
together without a visible cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from geomm.predict.blend import Window

__all__ = ["Region", "RegionSink", "RegionSource"]


@dataclass(frozen=True)
class Region:
    """Rows ``row:row + height`` and cols ``col:col + width`` of a scene's base grid."""

    row: int
    col: int
    height: int
    width: int

    def __post_init__(self) -> None:
        if min(self.row, self.col) < 0 or min(self.height, self.width) <= 0:
            raise ValueError(f"empty or negative region {self}")

    def clip(self, height: int, width: int) -> Region | None:
        """The part inside a ``height x width`` scene (None when nothing is)."""
        r1, c1 = min(self.row + self.height, height), min(self.col + self.width, width)
        if r1 <= self.row or c1 <= self.col:
            return None
        return Region(self.row, self.col, r1 - self.row, c1 - self.col)

    def extent(self, margin: int, lattice: int, height: int, width: int) -> Region:
        """This region grown by ``margin`` inside the scene, its origin on the ``lattice``
        (so every coarse layer and the model's strides line up as in a whole-scene run)."""
        r0 = max(0, (self.row - margin) // lattice * lattice)
        c0 = max(0, (self.col - margin) // lattice * lattice)
        r1 = min(height, self.row + self.height + margin)
        c1 = min(width, self.col + self.width + margin)
        return Region(r0, c0, r1 - r0, c1 - c0)

    def window(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """As rasterio's ((row0, row1), (col0, col1))."""
        return (self.row, self.row + self.height), (self.col, self.col + self.width)


class RegionSource:
    """A source restricted to ``extent``: layer windows offset into the scene."""

    def __init__(self, source: Any, extent: Region, factors: dict[str, int]) -> None:
        self.source, self.extent, self.factors = source, extent, factors
        for key, f in factors.items():
            if extent.row % f or extent.col % f:
                raise ValueError(f"region origin {extent} is not on the grid of layer {key}")

    def shape(self, key: str) -> tuple[int, int]:
        f = self.factors[key]
        h, w = self.source.shape(key)
        e = self.extent
        return (min(h - e.row // f, -(-e.height // f)), min(w - e.col // f, -(-e.width // f)))

    def read(self, requests: Sequence[tuple[str, int, int, int, int]]
             ) -> list[tuple[np.ndarray, np.ndarray]]:
        e = self.extent
        moved = []
        for key, a0, a1, b0, b1 in requests:
            dr, dc = e.row // self.factors[key], e.col // self.factors[key]
            moved.append((key, a0 + dr, a1 + dr, b0 + dc, b1 + dc))
        return self.source.read(moved)


class RegionSink:
    """Passes on only the part of each finished window that lies inside the block.

    Args:
        sink: the block's writer (:class:`~geomm.predict._mapfiles.MapWriter` on the block's grid).
        own: the block, in the coordinates of the extent being predicted.
    """

    def __init__(self, sink: Any, own: Region) -> None:
        self.sink, self.own = sink, own

    def write(self, win: Window, probs: np.ndarray, valid: np.ndarray, *,
              last_in_row: bool) -> None:
        o = self.own
        r0, r1, c0, c1 = win.out
        ir0, ir1 = max(r0, o.row), min(r1, o.row + o.height)
        ic0, ic1 = max(c0, o.col), min(c1, o.col + o.width)
        if ir0 >= ir1:
            return
        if ic0 >= ic1:
            if last_in_row:
                self.sink.rows_done(ir1 - o.row)
            return
        inner = replace(win, out=(ir0 - o.row, ir1 - o.row, ic0 - o.col, ic1 - o.col))
        self.sink.write(inner, probs[:, ir0 - r0:ir1 - r0, ic0 - c0:ic1 - c0],
                        valid[ir0 - r0:ir1 - r0, ic0 - c0:ic1 - c0], last_in_row=last_in_row)

    def totals(self) -> dict[str, Any]:
        return dict(self.sink.totals())
