"""Overlapping tiles blended with a smooth window, in windows, in constant memory.

Tiles of side ``T = S + 2h`` start every ``S`` base pixels (tile ``i`` reads rows
``[i*S, i*S + T)``), so neighbouring tiles overlap by ``2h``. Each tile's class probabilities
are weighted by a window that is 1 in the middle and falls off as sin² over the ``2h`` pixels
at each edge; in an overlap the falling edge of one tile and the rising edge of the next sum
to one, so every output pixel is a smooth, normalised mix and tile borders leave no trace.

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


def edge_weights(tile: int, halo: int) -> np.ndarray:
    """1-D blending weights of a tile: sin² ramps over the ``2*halo`` pixels at each end."""
    w = np.ones(tile, dtype=np.float32)
    ramp = 2 * halo
    if ramp:
        u = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
        up = np.sin(u * np.pi / 2) ** 2
        w[:ramp] = up
        w[-ramp:] = np.minimum(w[-ramp:], up[::-1])
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
    """Tiles with overlap over an ``height x width`` scene, grouped into windows."""

    height: int
    """Scene rows, base pixels."""
    width: int
    """Scene columns, base pixels."""
    tile: int
    """Tile side ``T``, base pixels."""
    halo: int
    """Half the overlap ``h``: neighbouring tiles share ``2h`` pixels."""
    window: int
    """Tiles per window side."""

    def __post_init__(self) -> None:
        if self.tile <= 2 * self.halo or self.halo < 0:
            raise ValueError(f"tile {self.tile} must be larger than twice the halo {self.halo}")
        if self.window < 1:
            raise ValueError("window must hold at least one tile")

    @property
    def stride(self) -> int:
        """Tile step ``S = T - 2h``."""
        return self.tile - 2 * self.halo

    def _count(self, n: int) -> int:
        return max(1, math.ceil(max(0, n - self.tile) / self.stride) + 1)

    @property
    def tiles_shape(self) -> tuple[int, int]:
        """Number of tile rows and columns."""
        return self._count(self.height), self._count(self.width)

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

    def _span(self, i: int, n_tiles: int, size: int, last: bool) -> tuple[range, tuple[int, int],
                                                                          tuple[int, int]]:
        s, block = self.stride, self.window * self.stride
        idx = range(i * self.window, min((i + 1) * self.window, n_tiles))
        read = (i * block, (idx[-1] * s) + self.tile)
        out = (i * block, size if last else (i + 1) * block)
        return idx, read, out

    def windows(self) -> Iterator[Window]:
        """Windows in raster order (the order :class:`Blender` needs)."""
        (tr, tc), (wr, wc), s = self.tiles_shape, self.windows_shape, self.stride
        for a in range(wr):
            rows, rread, rout = self._span(a, tr, self.height, a == wr - 1)
            for b in range(wc):
                cols, cread, cout = self._span(b, tc, self.width, b == wc - 1)
                yield Window(a, b, tuple((i * s, j * s) for i in rows for j in cols),
                             (*rread, *cread), (*rout, *cout))


class Blender:
    """Accumulates weighted tile probabilities per window and hands out finished blocks.

    Call :meth:`start` for each window in :meth:`TilePlan.windows` order, :meth:`add` for
    its tiles, then :meth:`finish`, which returns the window's final probabilities.
    """

    def __init__(self, plan: TilePlan, n_classes: int) -> None:
        self.plan, self.k = plan, n_classes
        w = edge_weights(plan.tile, plan.halo)
        self.weight = np.outer(w, w)
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
        """Add one tile's ``(K, T, T)`` probabilities at base ``origin``, weighted."""
        if self._acc is None or self._win is None:
            raise RuntimeError("call start() before add()")
        r, c = origin[0] - self._win.read[0], origin[1] - self._win.read[2]
        t = self.plan.tile
        self._acc[:self.k, r:r + t, c:c + t] += probs * self.weight
        self._acc[self.k, r:r + t, c:c + t] += self.weight

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
