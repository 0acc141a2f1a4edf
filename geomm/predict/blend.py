"""Overlapping tiles blended with a smooth window, in windows, in constant memory.

Tiles of side ``T = S + 2h`` start every ``S`` base pixels (tile ``i`` reads rows
``[i*S, i*S + T)``), so neighbouring tiles overlap by ``2h``. Each tile's class probabilities
are weighted by a window that is 1 in the middle, 0 on the outer ``h/2`` pixels (they see too
little of the scene around them) and a sin² ramp between; in an overlap the falling edge of one
tile and the rising edge of the next sum to one, so every output pixel is a smooth, normalised
mix and tile borders leave no trace. Sides on the scene's edge keep weight 1.

Tiles are processed in *windows* of ``n x n`` tiles, row by row. Window ``(a, b)`` owns the
output rows ``[a*B, (a+1)*B)`` (``B = n*S``), and its tiles spill ``2h`` pixels into the
next window to the right and below. Those strips are carried forward (only a ``2h``-pixel
band per window column is pending at any time), so every tile is computed exactly once and the
output of a window is final as soon as that window is done, at block-aligned positions.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["Blender", "TilePlan", "Window", "edge_weights"]


def edge_weights(tile: int, halo: int, *, open_start: bool = False,
                 open_end: bool = False) -> np.ndarray:
    """1-D blending weights of a tile side.

    Over the ``2*halo`` pixels at each end: 0 for the outer ``halo/2`` (pure context: the
    pixels that see least of the scene), then a sin² ramp over ``halo`` pixels, then 1. In an
    overlap of ``2*halo`` pixels the two tiles' weights sum to one. A side on the scene's edge
    (``open_*``) has no neighbour to hand over to and keeps weight 1.
    """
    w = np.ones(tile, dtype=np.float32)
    if halo:
        dead = halo // 2
        u = (np.arange(2 * halo, dtype=np.float32) + 0.5 - dead) / halo
        up = np.sin(np.clip(u, 0.0, 1.0) * np.pi / 2) ** 2
        if not open_start:
            w[:2 * halo] = up
        if not open_end:
            w[-2 * halo:] = np.minimum(w[-2 * halo:], up[::-1])
    return w


@dataclass(frozen=True)
class Window:
    """One processing window: its tiles, the region they read, the region it finalises."""

    row: int
    """Window row index."""
    col: int
    """Window column index."""
    tiles: tuple[tuple[int, int], ...]
    """Tile origins (base rows, cols) in raster order."""
    read: tuple[int, int, int, int]
    """Rows r0, r1 and cols c0, c1 its tiles cover (may run past the scene's edge)."""
    out: tuple[int, int, int, int]
    """Rows r0, r1 and cols c0, c1 it finalises (inside the scene)."""


@dataclass(frozen=True)
class TilePlan:
    """Tiles with overlap over an ``height x width`` scene, grouped into windows.

    Tiles may be rectangular (``tile`` as (rows, cols)): each axis gets the stride that covers
    the scene with the least overshoot past its far edge.
    """

    height: int
    """Scene rows, base pixels."""
    width: int
    """Scene columns, base pixels."""
    tile: tuple[int, int]
    """Tile rows and columns ``T`` (an int means a square tile), base pixels."""
    halo: int
    """Half the overlap ``h``: neighbouring tiles share ``2h`` pixels."""
    window: int
    """Tiles per window side."""

    def __post_init__(self) -> None:
        if isinstance(self.tile, int):
            object.__setattr__(self, "tile", (self.tile, self.tile))
        if min(self.tile) <= 2 * self.halo or self.halo < 0:
            raise ValueError(f"tile {self.tile} must be larger than twice the halo {self.halo}")
        if self.window < 1:
            raise ValueError("window must hold at least one tile")

    @property
    def stride(self) -> tuple[int, int]:
        """Tile steps ``S = T - 2h`` along rows and columns."""
        return self.tile[0] - 2 * self.halo, self.tile[1] - 2 * self.halo

    @property
    def tile_px(self) -> int:
        """Pixels of one tile."""
        return self.tile[0] * self.tile[1]

    def _count(self, n: int, axis: int) -> int:
        return max(1, math.ceil(max(0, n - self.tile[axis]) / self.stride[axis]) + 1)

    @property
    def tiles_shape(self) -> tuple[int, int]:
        """Number of tile rows and columns."""
        return self._count(self.height, 0), self._count(self.width, 1)

    @property
    def n_tiles(self) -> int:
        """Tiles in the plan."""
        r, c = self.tiles_shape
        return r * c

    @property
    def windows_shape(self) -> tuple[int, int]:
        """Number of window rows and columns."""
        r, c = self.tiles_shape
        return math.ceil(r / self.window), math.ceil(c / self.window)

    def _span(self, i: int, axis: int, last: bool) -> tuple[range, tuple[int, int],
                                                              tuple[int, int]]:
        s, size = self.stride[axis], (self.height, self.width)[axis]
        block = self.window * s
        idx = range(i * self.window, min((i + 1) * self.window, self.tiles_shape[axis]))
        read = (i * block, (idx[-1] * s) + self.tile[axis])
        out = (i * block, size if last else (i + 1) * block)
        return idx, read, out

    def weights(self, origin: tuple[int, int]) -> np.ndarray:
        """``(Ty, Tx)`` blending weights of the tile at base ``origin``."""
        return np.outer(self._side(origin[0], 0), self._side(origin[1], 1))

    def _side(self, start: int, axis: int) -> np.ndarray:
        size, t = (self.height, self.width)[axis], self.tile[axis]
        key = (axis, start == 0, start + t >= size)
        cache = self.__dict__.setdefault("_sides", {})
        if key not in cache:
            cache[key] = edge_weights(t, self.halo, open_start=key[1], open_end=key[2])
        return cache[key]

    def windows(self) -> Iterator[Window]:
        """Windows in raster order (the order :class:`Blender` needs)."""
        (wr, wc), (sy, sx) = self.windows_shape, self.stride
        for a in range(wr):
            rows, rread, rout = self._span(a, 0, a == wr - 1)
            for b in range(wc):
                cols, cread, cout = self._span(b, 1, b == wc - 1)
                yield Window(a, b, tuple((i * sy, j * sx) for i in rows for j in cols),
                             (*rread, *cread), (*rout, *cout))


class Blender:
    """Accumulates weighted tile probabilities per window and hands out finished blocks.

    Call :meth:`start` for each window in :meth:`TilePlan.windows` order, :meth:`add` for
    its tiles, then :meth:`finish`, which returns the window's final probabilities.
    """

    def __init__(self, plan: TilePlan, n_classes: int) -> None:
        self.plan, self.k = plan, n_classes
        self._top: dict[int, np.ndarray] = {}   # window col -> strip from the window above
        self._left: np.ndarray | None = None    # strip from the window to the left
        self._acc: np.ndarray | None = None
        self._win: Window | None = None

    def start(self, win: Window) -> None:
        """Open ``win``'s accumulator, adding what the windows above and left spilled."""
        r0, r1, c0, c1 = win.read
        acc = np.zeros((self.k + 1, r1 - r0, c1 - c0), dtype=np.float32)
        top = self._top.pop(win.col, None)
        if top is not None:
            acc[:, :top.shape[1], :] += top
        if self._left is not None and win.col > 0:
            acc[:, :self._left.shape[1], :self._left.shape[2]] += self._left
        self._left, self._acc, self._win = None, acc, win

    def add(self, origin: tuple[int, int], probs: np.ndarray) -> None:
        """Add one tile's ``(K, Ty, Tx)`` probabilities at base ``origin``, weighted."""
        if self._acc is None or self._win is None:
            raise RuntimeError("call start() before add()")
        r, c = origin[0] - self._win.read[0], origin[1] - self._win.read[2]
        ty, tx = self.plan.tile
        weight = self.plan.weights(origin)
        acc = self._acc[:, r:r + ty, c:c + tx]
        for k in range(self.k):  # per class: no (K, Ty, Tx) temporary
            acc[k] += probs[k] * weight
        acc[self.k] += weight

    def finish(self) -> np.ndarray:
        """Close the window: carry its spills on and return its ``(K, h, w)`` probabilities."""
        if self._acc is None or self._win is None:
            raise RuntimeError("call start() before finish()")
        acc, win = self._acc, self._win
        oh, ow = win.out[1] - win.out[0], win.out[3] - win.out[2]
        last_row = win.row == self.plan.windows_shape[0] - 1
        last_col = win.col == self.plan.windows_shape[1] - 1
        if not last_row:
            self._top[win.col] = acc[:, oh:, :].copy()
        if not last_col:
            self._left = acc[:, :acc.shape[1] if last_row else oh, ow:].copy()
        out = acc[:self.k, :oh, :ow] / np.maximum(acc[self.k, :oh, :ow], 1e-12)
        self._acc = self._win = None
        return out
