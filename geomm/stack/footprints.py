"""Where each band has pixels, in the grid's CRS: boxes for the grid's extent, outlines for
what an intersection loses, and the errors and warnings about either."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import shapely
from rasterio.warp import transform, transform_bounds

from geomm._remote import AnyPath
from geomm.errors import ExtentWarning, GridError
from geomm.stack.grid import crs_unit, same_crs
from geomm.stack.sources import BandSource

SHRINK_WARN = 0.03
"""A band whose footprint cuts more than this share off the other bands' common area is
named in a warning (``extent: intersection``)."""

_EDGE_POINTS = 21
"""Points per raster edge when an outline or a box is carried into another CRS."""


def footprint(src: BandSource, crs: object) -> tuple[float, float, float, float]:
    """The band's (left, bottom, right, top) box in ``crs``."""
    if same_crs(src.crs, crs):
        return src.bounds
    return transform_bounds(src.crs, crs, *src.bounds, densify_pts=_EDGE_POINTS)


def outline(src: BandSource, crs: object) -> shapely.Polygon:
    """The band's own outline in ``crs``: a rotated raster's is its turned rectangle, not the
    box around it (edges densified when carried into another CRS)."""
    t = np.linspace(0.0, 1.0, _EDGE_POINTS)[:-1]
    w, h = src.width, src.height
    cols = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), (1 - t) * h])
    a = src.transform
    xs, ys = a.a * cols + a.b * rows + a.c, a.d * cols + a.e * rows + a.f
    if not same_crs(src.crs, crs):
        xs, ys = transform(src.crs, crs, xs, ys)
    ring = shapely.Polygon(np.column_stack([xs, ys]))
    return ring if ring.is_valid else shapely.make_valid(ring)


def warn_shrinking(sources: Sequence[BandSource], crs: object) -> None:
    """Warn about each band that shrinks the intersection of the others' outlines by more than
    ``SHRINK_WARN`` (e.g. one 700 x 500 px band among 1536 x 768 px bands)."""
    if len(sources) < 2:
        return
    shapes = [outline(s, crs) for s in sources]
    common = shapely.intersection_all(shapes).area
    unit = crs_unit(crs)
    seen: set[AnyPath] = set()
    for src in sources:
        if src.path in seen:
            continue
        seen.add(src.path)
        others = [g for g, s in zip(shapes, sources, strict=True) if s.path != src.path]
        if not others:
            continue
        rest = shapely.intersection_all(others).area
        lost = 1 - common / rest if rest > 0 else 0.0
        if lost > SHRINK_WARN:
            size = (f"~{(rest - common) / 1e6:.3g} km²" if unit == "m"
                    else f"~{rest - common:.3g} square {unit}")
            warnings.warn(f"{src.path.name} covers less than the other bands: the scene (the "
                          f"intersection) loses {100 * lost:.0f} % of their common area "
                          f"({size}); use `grid: {{extent: union}}` to keep it (nodata where "
                          "this band has none)", ExtentWarning, stacklevel=4)


def raise_no_overlap(foot: list, step: float) -> None:
    """Raise a :class:`GridError` naming the first two rasters that do not overlap."""
    fb: dict[str, tuple[float, ...]] = {}
    for f, s in foot:
        fb.setdefault(s.path.name, tuple(round(v, 3) for v in f))
    items = list(fb.items())
    # name the first pair that does not overlap (by at least one coarsest pixel)
    for i, (na, a) in enumerate(items):
        for nb, b in items[i + 1:]:
            if min(a[2], b[2]) - max(a[0], b[0]) < step or min(a[3], b[3]) - max(a[1], b[1]) < step:
                raise GridError(f"rasters do not overlap: {na} bounds {a} and {nb} bounds {b} "
                                "(in the grid CRS); give rasters of the same area, or use "
                                "extent: union")
    raise GridError(f"the rasters' common area is smaller than one {step:g}-unit pixel: "
                    f"{dict(items)}; give rasters of the same area, or use extent: union")
