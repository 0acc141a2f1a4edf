"""Private helpers of :mod:`geomm.vector.vectorize`: per-window polygons and seam stitching.

Everything here works in *pixel space*: a vertex ``(x, y)`` is the pixel corner at column
``x``, row ``y`` of the whole raster, so coordinates are exact integers and pieces cut by the
processing windows fit back together exactly. A pixel class of ``-1`` means "no class"
(nodata, the class table's ignore value, or outside the raster).

Every polygon is written in one canonical form, whatever the windows: its vertices are the
corners where its boundary turns, plus the *nodes*, the corners where three or more classes
(counting "no class") meet. Neighbours therefore carry the same vertices along their shared
edges (a valid coverage for :func:`shapely.coverage_simplify`), and the output does not depend
on the window size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import shapely
from affine import Affine
from rasterio import features


def node_mask(ext: np.ndarray) -> np.ndarray:
    """Corners where three or more classes meet, from classes with a 1-pixel ring around.

    ``ext`` is ``(h + 2, w + 2)``; the result is ``(h + 1, w + 1)``, corner ``[i, j]`` being
    the corner at the top left of core pixel ``[i, j]``.
    """
    a, b, c, d = ext[:-1, :-1], ext[:-1, 1:], ext[1:, :-1], ext[1:, 1:]
    distinct = (1 + (b != a) + ((c != a) & (c != b)) + ((d != a) & (d != b) & (d != c)))
    return distinct >= 3


@dataclass(frozen=True)
class SeamGrid:
    """The processing windows of a ``height x width`` raster cut every ``size`` pixels."""

    height: int
    width: int
    size: int

    def key(self, xy: np.ndarray) -> np.ndarray:
        """One integer per pixel corner (x, y)."""
        return xy[:, 1].astype(np.int64) * (self.width + 1) + xy[:, 0].astype(np.int64)

    def on_seam(self, xy: np.ndarray) -> np.ndarray:
        """Whether each corner lies on an internal window edge."""
        return self.seam_col(xy[:, 0]) | self.seam_row(xy[:, 1])

    def seam_col(self, x: np.ndarray) -> np.ndarray:
        """Whether each x is the column of an internal vertical window edge."""
        return (x % self.size == 0) & (x > 0) & (x < self.width)

    def seam_row(self, y: np.ndarray) -> np.ndarray:
        """Whether each y is the row of an internal horizontal window edge."""
        return (y % self.size == 0) & (y > 0) & (y < self.height)


def _objects(items: list[object]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


@dataclass
class Pieces:
    """Polygons in pixel space, as shells (no holes) and hole rings, with their class.

    Holes never touch a window edge, so only shells take part in merging across seams.
    """

    shells: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    classes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int32))
    holes: list[np.ndarray] = field(default_factory=list)
    """Per piece, its hole rings (LinearRings)."""
    seam_nodes: list[np.ndarray] = field(default_factory=list)
    """Per piece, keys (:meth:`SeamGrid.key`) of the nodes among its vertices on seams."""

    def __len__(self) -> int:
        return len(self.shells)

    def take(self, sel: np.ndarray) -> Pieces:
        """The pieces at a boolean mask or index array."""
        idx = np.flatnonzero(sel) if sel.dtype == bool else sel
        return Pieces(self.shells[idx], self.classes[idx], [self.holes[i] for i in idx],
                      [self.seam_nodes[i] for i in idx])

    @staticmethod
    def concat(parts: list[Pieces]) -> Pieces:
        """All pieces of ``parts``, in order."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return Pieces()
        return Pieces(np.concatenate([p.shells for p in parts]),
                      np.concatenate([p.classes for p in parts]),
                      [h for p in parts for h in p.holes],
                      [k for p in parts for k in p.seam_nodes])

    def polygons(self) -> np.ndarray:
        """The pieces as Polygons with their holes."""
        n_holes = np.array([len(h) for h in self.holes], dtype=np.intp)
        with_holes = np.flatnonzero(n_holes)
        if not len(with_holes):
            return self.shells
        rings = np.concatenate([shapely.get_exterior_ring(self.shells[with_holes]),
                                *(self.holes[i] for i in with_holes)])
        owner = np.concatenate([np.arange(len(with_holes)),
                                np.repeat(np.arange(len(with_holes)), n_holes[with_holes])])
        order = np.argsort(owner, kind="stable")  # shell first, then its holes
        out = self.shells.copy()
        out[with_holes] = shapely.polygons(rings[order], indices=owner[order])
        return out


_BATCH = 8192  # polygons canonicalised at a time (bounds the temporary arrays)


class _NodeIndex:
    """The node corners of a window, indexed for counting them along edges."""

    def __init__(self, ext: np.ndarray) -> None:
        self.mask = node_mask(ext)
        self.by_row = np.flatnonzero(self.mask.ravel())
        self.by_col = np.flatnonzero(self.mask.T.ravel())
        self.pre_row = np.concatenate([[0], np.cumsum(self.mask.ravel(), dtype=np.int32)])
        self.pre_col = np.concatenate([[0], np.cumsum(self.mask.T.ravel(), dtype=np.int32)])


def window_pieces(ext: np.ndarray, row0: int, col0: int, grid: SeamGrid
                  ) -> tuple[Pieces, np.ndarray]:
    """Polygons (4-connectivity) of one window's classes, in canonical pixel-space form.

    Edges lying on a seam get a vertex at every pixel corner, so that pieces on both sides
    share identical segments there (:func:`shapely.coverage_union_all` merges them).

    Args:
        ext: classes of the window with a 1-pixel ring of context around it (-1: no class).
        row0: raster row of the window's first row.
        col0: raster column of the window's first column.
        grid: the windows.

    Returns:
        The pieces, and their edges on seams as rows ``(orient, line, lo, hi, piece)``:
        orient 0 is the row ``y = line`` from ``x = lo`` to ``hi``, orient 1 a column.
    """
    core = np.ascontiguousarray(ext[1:-1, 1:-1], dtype=np.int32)
    nodes = _NodeIndex(ext)
    parts: list[Pieces] = []
    edges: list[np.ndarray] = [np.empty((0, 5), dtype=np.int64)]
    batch: list[tuple[list[list[tuple[float, float]]], float]] = []
    shapes = features.shapes(core, mask=core >= 0, connectivity=4,
                             transform=Affine.translation(col0, row0))
    for item in chain(shapes, [None]):
        if item is not None:
            batch.append((item[0]["coordinates"], item[1]))
        if batch and (item is None or len(batch) == _BATCH):
            pieces, seam_edges = _batch_pieces(batch, nodes, row0, col0, grid)
            seam_edges[:, 4] += sum(len(p) for p in parts)
            parts.append(pieces)
            edges.append(seam_edges)
            batch = []
    return Pieces.concat(parts), np.concatenate(edges)


def _batch_pieces(batch: list[tuple[list[list[tuple[float, float]]], float]],
                  nodes: _NodeIndex, row0: int, col0: int, grid: SeamGrid
                  ) -> tuple[Pieces, np.ndarray]:
    """Canonical pieces and seam edges of some of a window's polygons (GeoJSON rings)."""
    poly_rings = [len(rings) for rings, _ in batch]
    rings = [ring for polygon, _ in batch for ring in polygon]
    ring_len = np.fromiter(map(len, rings), dtype=np.int64, count=len(rings))
    xy = np.fromiter(chain.from_iterable(chain.from_iterable(rings)), dtype=np.float64,
                     count=2 * int(ring_len.sum())).reshape(-1, 2)
    coords, lengths, is_node, edges = _canonical_rings(xy, ring_len, nodes, row0, col0, grid)
    n = len(batch)
    lrings = shapely.linearrings(coords, indices=np.repeat(np.arange(len(lengths)), lengths))
    owner = np.repeat(np.arange(n), poly_rings)
    is_shell = np.zeros(len(lrings), dtype=bool)
    is_shell[np.cumsum(poly_rings) - poly_rings] = True
    holes = _split(lrings[~is_shell], owner[~is_shell], n)
    mark = is_node & grid.on_seam(coords)
    seam_nodes = _split(grid.key(coords[mark]), np.repeat(owner, lengths)[mark], n)
    edges[:, 4] = owner[edges[:, 4]]
    classes = np.array([value for _, value in batch]).astype(np.int32)
    return Pieces(shapely.polygons(lrings[is_shell]), classes, holes, seam_nodes), edges


def _split(values: np.ndarray, groups: np.ndarray, n: int) -> list[np.ndarray]:
    """``values`` split by ``groups`` (0..n-1), one array per group."""
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(n + 1))
    vals = values[order]
    return [vals[bounds[i]:bounds[i + 1]] for i in range(n)]


def _cyclic_cross(pts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Turn (cross product) at each vertex of open rings stored back to back."""
    start = np.repeat(np.cumsum(counts) - counts, counts)
    n = np.repeat(counts, counts)
    pos = np.arange(len(pts)) - start
    prev = pts[start + (pos - 1) % n]
    nxt = pts[start + (pos + 1) % n]
    din, dout = pts - prev, nxt - pts
    return din[:, 0] * dout[:, 1] - din[:, 1] * dout[:, 0]


def _close(pts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Append each ring's first vertex at its end; returns coordinates and ring lengths."""
    ring = np.repeat(np.arange(len(counts)), counts)
    out = np.empty((len(pts) + len(counts),) + pts.shape[1:], dtype=pts.dtype)
    out[np.arange(len(pts)) + ring] = pts
    out[np.cumsum(counts + 1) - 1] = pts[np.cumsum(counts) - counts]
    return out, counts + 1


def _canonical_rings(xy: np.ndarray, ring_len: np.ndarray, index: _NodeIndex, row0: int,
                     col0: int, grid: SeamGrid
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Closed axis-parallel rings reduced to turns plus nodes; seam edges made dense.

    Returns the closed rings' coordinates, their lengths, whether each vertex is a node, and
    the edges on seams as rows ``(orient, line, lo, hi, ring)``.
    """
    nodes = index.mask
    x = xy[:, 0].astype(np.int64) - col0
    y = xy[:, 1].astype(np.int64) - row0
    closing = np.cumsum(ring_len) - 1
    same = (x[1:] == x[:-1]) & (y[1:] == y[:-1])
    same[closing[:-1]] = False  # a ring's closing vertex may equal the next ring's first
    if same.any():  # repeated vertices (GDAL does not write them): drop, then carry on
        keep = np.concatenate([~same, [True]])
        ring_len = np.bincount(np.repeat(np.arange(len(ring_len)), ring_len)[keep],
                               minlength=len(ring_len))
        x, y, closing = x[keep], y[keep], np.cumsum(ring_len) - 1
    starts = closing - ring_len + 1
    n = len(x)
    prev = np.arange(-1, n - 1)
    prev[starts] = closing - 1
    nxt = np.minimum(np.arange(1, n + 1), n - 1)
    x_next, y_next = x[nxt], y[nxt]
    dx, dy = x_next - x, y_next - y
    turn = (x - x[prev]) * dy != (y - y[prev]) * dx
    vertex_node = nodes[y, x]
    keep = turn | vertex_node
    # what goes inside each edge (i -> i + 1): every corner on a seam, else only the nodes,
    # counted with prefix sums over the node mask
    h1, w1 = nodes.shape
    horizontal = dy == 0
    lo_x, lo_y = np.minimum(x, x_next), np.minimum(y, y_next)
    hi_x, hi_y = np.maximum(x, x_next), np.maximum(y, y_next)
    pre_r, pre_c = index.pre_row, index.pre_col
    first = np.where(horizontal, pre_r[lo_y * w1 + lo_x + 1], pre_c[lo_x * h1 + lo_y + 1])
    n_in = np.where(horizontal, pre_r[hi_y * w1 + hi_x], pre_c[hi_x * h1 + hi_y]) - first
    dense = np.where(horizontal, grid.seam_row(y + row0), grid.seam_col(x + col0))
    dense[closing] = False
    n_in = np.where(dense, np.abs(dx) + np.abs(dy) - 1, np.maximum(n_in, 0))
    n_in[closing] = 0
    seg = np.repeat(np.arange(n), n_in)
    j = np.arange(len(seg)) - np.repeat(np.cumsum(n_in) - n_in, n_in)
    step_x, step_y = np.sign(dx)[seg], np.sign(dy)[seg]
    rank = np.where(step_x + step_y > 0, first[seg] + j, first[seg] + n_in[seg] - 1 - j)
    along, on_seam = horizontal[seg], dense[seg]
    flat = np.zeros(len(seg), dtype=np.int64)
    pick = along & ~on_seam
    flat[pick] = index.by_row[rank[pick]]
    pick = ~along & ~on_seam
    flat[pick] = index.by_col[rank[pick]]
    ins_x = np.where(on_seam, x[seg] + step_x * (j + 1), np.where(along, flat % w1, flat // h1))
    ins_y = np.where(on_seam, y[seg] + step_y * (j + 1), np.where(along, flat // w1, flat % h1))
    # interleave: each vertex, then what was inserted on the edge leaving it
    block = 1 + n_in
    block_start = np.cumsum(block) - block
    total = n + len(seg)
    all_x, all_y = np.empty(total, dtype=np.int64), np.empty(total, dtype=np.int64)
    keep_all = np.ones(total, dtype=bool)
    node_all = np.ones(total, dtype=bool)
    all_x[block_start], all_y[block_start] = x, y
    at = np.repeat(block_start + 1, n_in) + j
    all_x[at], all_y[at] = ins_x, ins_y
    node_all[block_start] = vertex_node
    node_all[at] = nodes[ins_y, ins_x]
    ring_of = np.repeat(np.arange(len(ring_len)), ring_len)
    ring_all = np.repeat(ring_of, block)
    e = np.flatnonzero(dense)
    edges = np.column_stack([(~horizontal[e]).astype(np.int64),
                             np.where(horizontal[e], y[e] + row0, x[e] + col0),
                             np.where(horizontal[e], lo_x[e] + col0, lo_y[e] + row0),
                             np.where(horizontal[e], hi_x[e] + col0, hi_y[e] + row0),
                             ring_of[e]])
    if keep[starts].all():  # the usual case: each closing vertex stays, as its first does
        keep[closing] = True
        keep_all[block_start] = keep
        lengths = np.bincount(ring_all[keep_all], minlength=len(ring_len))
        coords = np.column_stack([all_x[keep_all] + col0, all_y[keep_all] + row0])
        return coords.astype(np.float64), lengths, node_all[keep_all], edges
    keep[closing] = False
    keep_all[block_start] = keep
    counts = np.bincount(ring_all[keep_all], minlength=len(ring_len))
    pts = np.column_stack([all_x[keep_all] + col0, all_y[keep_all] + row0])
    coords, lengths = _close(pts.astype(np.float64), counts)
    return coords, lengths, _close(node_all[keep_all], counts)[0], edges


def drop_seam_vertices(rings: np.ndarray, nodes: np.ndarray, grid: SeamGrid) -> np.ndarray:
    """Remove the straight-through vertices seams left on rings (seam nodes stay).

    Args:
        rings: LinearRings in pixel space.
        nodes: keys (:meth:`SeamGrid.key`) of the nodes that lie on seams.
        grid: the windows.
    """
    if not len(rings):
        return rings
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    keep = np.ones(len(xy), dtype=bool)
    counts = np.bincount(ring, minlength=len(rings))
    keep[np.cumsum(counts) - 1] = False
    pts, counts = xy[keep], counts - 1
    drop = ((_cyclic_cross(pts, counts) == 0) & grid.on_seam(pts)
            & ~np.isin(grid.key(pts), nodes))
    new_counts = np.bincount(np.repeat(np.arange(len(counts)), counts)[~drop],
                             minlength=len(counts))
    coords, lengths = _close(pts[~drop], new_counts)
    return shapely.linearrings(coords, indices=np.repeat(np.arange(len(lengths)), lengths))
