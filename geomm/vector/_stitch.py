"""Private helper of :mod:`geomm.vector.vectorize`: stitching window pieces across seams.

Pieces of one class that touch across a window seam are grouped (connected components over
shared seam edges) and unioned once a group can grow no further, so the output polygons do not
depend on the windows (see :mod:`geomm.vector._polygons` for the pixel-space conventions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from geomm.vector._polygons import Pieces, SeamGrid, _objects, _split, drop_seam_vertices

__all__ = ["Stitcher"]


def _overlapping(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of intervals ``[lo, hi)`` (columns 2, 3) of a and b that overlap.

    The intervals of each side are disjoint (pixel edges of one side of a line).
    """
    order = np.argsort(b[:, 2])
    b_lo, b_hi = b[order, 2], b[order, 3]
    start = np.searchsorted(b_hi, a[:, 2], side="right")
    count = np.maximum(np.searchsorted(b_lo, a[:, 3], side="left") - start, 0)
    ai = np.repeat(np.arange(len(a)), count)
    j = np.arange(len(ai)) - np.repeat(np.cumsum(count) - count, count)
    return ai, order[np.repeat(start, count) + j]


@dataclass
class _Group:
    """An open region: the pieces of one class found connected so far, not yet unioned."""

    shells: list[np.ndarray]
    cls: int
    holes: list[np.ndarray]
    nodes: list[np.ndarray]

    def absorb(self, other: _Group) -> None:
        self.shells += other.shells
        self.holes += other.holes
        self.nodes += other.nodes


class Stitcher:
    """Holds the pieces that touch an unprocessed window and merges them across seams.

    Windows must be added in row-major order. An open region keeps its edges on seams whose
    other side is not read yet; when the window there is read they are matched with the new
    pieces' edges of the same class (overlap of positive length: 4-connectivity), and the
    matched pieces join the region. A region with no such edge left is final: its pieces are
    unioned once, then. Memory is the open regions.
    """

    def __init__(self, grid: SeamGrid) -> None:
        self.grid = grid
        self.groups: dict[int, _Group] = {}
        self.edges = np.empty((0, 5), dtype=np.int64)  # (orient, line, lo, hi, group id)
        self._next = 0

    def add(self, pieces: Pieces, edges: np.ndarray, row0: int, row1: int, col0: int,
            col1: int) -> Pieces:
        """Take one window's pieces and seam edges; return the polygons now final."""
        if not len(edges) and not len(self.edges):
            return pieces
        n = len(pieces)
        is_edge = np.zeros(n, dtype=bool)
        is_edge[edges[:, 4]] = True
        back = (((edges[:, 0] == 0) & (edges[:, 1] == row0))
                | ((edges[:, 0] == 1) & (edges[:, 1] == col0)))  # towards read windows
        st = self.edges
        here = (((st[:, 0] == 0) & (st[:, 1] == row0) & (st[:, 2] >= col0) & (st[:, 3] <= col1))
                | ((st[:, 0] == 1) & (st[:, 1] == col0) & (st[:, 2] >= row0)
                   & (st[:, 3] <= row1)))
        touched = np.unique(st[here, 4])
        new_idx = np.flatnonzero(is_edge)
        m, k = len(new_idx), len(touched)
        local = np.full(n, -1)
        local[new_idx] = np.arange(m)
        pairs = [np.empty((0, 2), dtype=np.int64)]
        for orient, line in ((0, row0), (1, col0)):
            a = edges[back & (edges[:, 0] == orient) & (edges[:, 1] == line)]
            b = st[here & (st[:, 0] == orient) & (st[:, 1] == line)]
            if len(a) and len(b):
                ai, bi = _overlapping(a, b)
                pairs.append(np.column_stack([local[a[ai, 4]],
                                              m + np.searchsorted(touched, b[bi, 4])]))
        pair = np.concatenate(pairs)
        node_cls = np.concatenate([pieces.classes[new_idx],
                                   [self.groups[int(u)].cls for u in touched]])
        pair = pair[node_cls[pair[:, 0]] == node_cls[pair[:, 1]]]
        _, comp = connected_components(
            coo_matrix((np.ones(len(pair)), (pair[:, 0], pair[:, 1])), shape=(m + k, m + k)),
            directed=False)
        node_uid = np.concatenate([self._next + np.arange(m), touched]).astype(np.int64)
        self._next += m
        for i, p in enumerate(new_idx):
            self.groups[int(node_uid[i])] = _Group([pieces.shells[p:p + 1]],
                                                   int(pieces.classes[p]), [pieces.holes[p]],
                                                   [pieces.seam_nodes[p]])
        comp_uid = np.zeros(comp.max(initial=-1) + 1, dtype=np.int64)
        comp_uid[comp[::-1]] = node_uid[::-1]  # each region is named after its first member
        for j in np.flatnonzero(node_uid != comp_uid[comp]):
            self.groups[int(comp_uid[comp[j]])].absorb(self.groups.pop(int(node_uid[j])))
        fwd = edges[~back]
        fwd[:, 4] = comp_uid[comp[local[fwd[:, 4]]]]
        kept = st[~here]
        old = np.isin(kept[:, 4], touched)
        kept[old, 4] = comp_uid[comp[m + np.searchsorted(touched, kept[old, 4])]]
        self.edges = np.concatenate([kept, fwd])
        regions = np.unique(comp_uid)
        done = regions[~np.isin(regions, self.edges[:, 4])]
        final = self._finish([self.groups.pop(int(u)) for u in done])
        return Pieces.concat([pieces.take(~is_edge), final])

    def finish(self) -> Pieces:
        """Every region still open (none is, after the last window)."""
        groups, self.groups = list(self.groups.values()), {}
        self.edges = np.empty((0, 5), dtype=np.int64)
        return self._finish(groups)

    def _finish(self, groups: list[_Group]) -> Pieces:
        """One polygon per region: its pieces unioned, seam vertices dropped, holes added.

        The shells share identical segments along seams, so a coverage union merges them.
        """
        if not groups:
            return Pieces()
        exteriors, closed, owner = [], [], []
        for i, g in enumerate(groups):
            members = np.concatenate(g.shells)
            union = members[0] if len(members) == 1 else shapely.coverage_union_all(members)
            if not isinstance(union, shapely.Polygon):
                raise RuntimeError(f"stitching produced a {union.geom_type}; please report")
            exteriors.append(union.exterior)
            closed.extend(union.interiors)  # holes closed by the union (if any)
            owner.extend([i] * len(union.interiors))
        nodes = [np.concatenate(g.nodes) for g in groups]
        keys = np.concatenate(nodes)
        shells = shapely.polygons(drop_seam_vertices(_objects(exteriors), keys, self.grid))
        new_holes = _split(drop_seam_vertices(_objects(closed), keys, self.grid),
                           np.asarray(owner, dtype=np.intp), len(groups))
        holes = [np.concatenate([h, *g.holes]) for h, g in zip(new_holes, groups, strict=True)]
        return Pieces(shells, np.array([g.cls for g in groups], dtype=np.int32), holes, nodes)
