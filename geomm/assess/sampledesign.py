"""Draw a stratified random sample of reference points from a land-cover map.

The strata are the map classes (Olofsson et al. 2014, section 5.1). ``n`` points are
allocated to the classes:

* ``proportional``: in proportion to the mapped area ``W_h``;
* ``equal``: the same number per class;
* ``neyman``: in proportion to ``W_h S_h`` with ``S_h = sqrt(U_h (1 - U_h))`` for expected
  user's accuracies ``U_h`` (Olofsson et al. 2014, eq. 13 and its ``S_i``). Give your own
  ``U_h``: rare and change classes are usually mapped less accurately (lower ``U_h`` draws
  more points to them). The default, 0.8 for every class, makes Neyman equal proportional.

``min_per_class`` first gives every class at least that many points and spreads the rest by
the allocation (Olofsson et al. suggest 50-100 for rare classes). Within a class, pixels are
drawn uniformly without replacement; nodata is never drawn; a class with fewer pixels than its
allocation gives all of them. Points sit at pixel centres, in the map's CRS, in a shuffled
order (so the map class is not given away by the order), with an empty ``reference`` column
for the interpreter to fill.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from geomm._lock import output_lock
from geomm._outputs import OutputExistsError, drop_partials, partial_path
from geomm.assess._classmap import open_class_map
from geomm.errors import GeommError

__all__ = ["SampleDesign", "allocate", "sample_design"]

Allocation = Literal["proportional", "equal", "neyman"]
DEFAULT_UA = 0.8
"""Expected user's accuracy of a class when none is given (Neyman allocation)."""


@dataclass(frozen=True)
class SampleDesign:
    """A drawn sample: how many points each map class got, and where they were written."""

    path: Path
    """The GeoPackage written (layer ``samples``)."""
    names: tuple[str, ...]
    """Map class names."""
    mapped_px: tuple[int, ...]
    """Map pixels per class."""
    allocated: tuple[int, ...]
    """Points allocated per class."""
    drawn: tuple[int, ...]
    """Points drawn per class (fewer than allocated where a class has too few pixels)."""
    allocation: str
    """``proportional``, ``equal`` or ``neyman``."""
    expected_ua: tuple[float, ...] | None
    """Expected user's accuracies used by ``neyman``."""
    seed: int
    """Random seed."""
    notes: tuple[str, ...]
    """Lines for people (capped classes, defaults used)."""

    def describe(self) -> str:
        """A table of the allocation and the notes."""
        total = sum(self.mapped_px) or 1
        lines = [f"{sum(self.drawn)} points ({self.allocation} allocation, seed {self.seed}) "
                 f"-> {self.path}",
                 f"{'class':<20} {'map share':>9} {'allocated':>9} {'drawn':>6}"]
        for i, n in enumerate(self.names):
            lines.append(f"{n:<20} {self.mapped_px[i] / total:9.4f} {self.allocated[i]:9d} "
                         f"{self.drawn[i]:6d}")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _largest_remainder(n: int, weights: np.ndarray) -> np.ndarray:
    """``n`` split in proportion to ``weights`` as integers summing to ``n``."""
    if n <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), dtype=np.int64)
    exact = n * weights / weights.sum()
    out = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - out), kind="stable")
    out[order[:n - int(out.sum())]] += 1
    return out


def allocate(mapped_px: np.ndarray, n: int, allocation: Allocation = "proportional", *,
             expected_ua: np.ndarray | None = None, min_per_class: int = 0) -> np.ndarray:
    """Points per class for a sample of ``n`` (classes without pixels get none).

    Raises:
        GeommError: an unknown allocation, or ``min_per_class`` times the classes exceeds
            ``n``.
    """
    mapped = np.asarray(mapped_px, dtype=np.float64)
    present = mapped > 0
    if allocation == "proportional":
        weights = mapped
    elif allocation == "equal":
        weights = present.astype(np.float64)
    elif allocation == "neyman":
        u = np.full(len(mapped), DEFAULT_UA) if expected_ua is None else np.asarray(expected_ua)
        weights = mapped * np.sqrt(u * (1 - u))
    else:
        raise GeommError(f"allocation {allocation!r}; use proportional, equal or neyman")
    floor = np.where(present, min_per_class, 0).astype(np.int64)
    if floor.sum() > n:
        raise GeommError(f"--min-per-class {min_per_class} for {int(present.sum())} classes "
                         f"needs {int(floor.sum())} points, more than -n {n}; raise -n or "
                         "lower --min-per-class")
    out = _largest_remainder(n, weights)
    while np.any(out < floor):  # fix the small classes at the floor, re-spread the rest
        fixed = out <= floor
        out = np.where(fixed, floor, 0)
        out[~fixed] = _largest_remainder(n - int(floor[fixed].sum()), weights * ~fixed)[~fixed]
    return out


def _expected_ua(names: tuple[str, ...],
                 given: float | Mapping[str, float] | None) -> tuple[np.ndarray, list[str]]:
    notes = []
    if given is None or isinstance(given, Mapping):
        by_name = dict(given or {})
        unknown = sorted(set(by_name) - set(names))
        if unknown:
            raise GeommError(f"--expected-ua names {unknown}, which are not map classes "
                             f"({', '.join(names)})")
        u = np.array([by_name.get(n, DEFAULT_UA) for n in names], dtype=np.float64)
        default = [n for n in names if n not in by_name]
        if default:
            notes.append(f"expected user's accuracy {DEFAULT_UA} assumed for "
                         f"{', '.join(default)} (give --expected-ua NAME=U)")
    else:
        u = np.full(len(names), float(given))
    bad = [f"{n}={v}" for n, v in zip(names, u, strict=True) if not 0 < v < 1]
    if bad:
        raise GeommError(f"--expected-ua must lie strictly between 0 and 1: {', '.join(bad)}")
    return u, notes


def sample_design(map_path: str | Path, n: int, out: str | Path, *,
                  allocation: Allocation = "proportional",
                  expected_ua: float | Mapping[str, float] | None = None,
                  min_per_class: int = 0, seed: int = 0, bundle: str | Path | None = None,
                  overwrite: bool = False) -> SampleDesign:
    """Draw ``n`` stratified random reference points from a class map into a GeoPackage.

    Args:
        map_path: ``classes.tif`` or ``probabilities.tif`` (argmax).
        n: Sample size.
        out: The ``.gpkg`` to write (layer ``samples``: ``point_id``, ``map_class_id``,
            ``map_class``, ``reference``).
        allocation: ``proportional``, ``equal`` or ``neyman``.
        expected_ua: Expected user's accuracy for ``neyman``: one value for all classes or
            one per class name (others take 0.8).
        min_per_class: At least this many points per map class.
        seed: Random seed; the same seed and map give the same points.
        bundle: Model bundle for class names, when the map carries none.
        overwrite: Replace an existing ``out``.

    Returns:
        What was drawn.

    Raises:
        OutputExistsError: ``out`` exists and not ``overwrite``.
        GeommError: ``n`` below 1, a bad allocation setting, or a map without valid pixels.
    """
    import geopandas as gpd
    import rasterio

    out = Path(out)
    if out.suffix.lower() != ".gpkg":
        raise GeommError(f"{out}: write the sample to a .gpkg file")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists; pass --overwrite to replace it, or choose "
                                "another file")
    if n < 1:
        raise GeommError(f"-n {n}: draw at least one point")
    cmap = open_class_map(map_path, bundle=bundle)
    if cmap.crs is None:
        raise GeommError(f"{map_path}: has no CRS, so its sample points could not be placed "
                         "on the ground; set one (gdal_edit.py -a_srs EPSG:...)")
    names = cmap.table.names
    counts = cmap.class_counts()
    if counts.sum() == 0:
        raise GeommError(f"{cmap.path}: the map has no classified pixels to sample")
    u, notes = (_expected_ua(names, expected_ua) if allocation == "neyman"
                else (None, []))
    wanted = allocate(counts, n, allocation, expected_ua=u, min_per_class=min_per_class)
    take = np.minimum(wanted, counts)
    for i in np.flatnonzero(take < wanted):
        notes.append(f"class {names[i]!r} has only {counts[i]} pixels for {wanted[i]} "
                     "allocated points: all of them are taken")
    if unsampled := [names[i] for i in np.flatnonzero((counts > 0) & (take < 2))]:
        notes.append(f"mapped classes {', '.join(map(repr, unsampled))} get fewer than 2 "
                     "points: geomm evaluate cannot give their areas (none) or standard "
                     "errors (one); raise -n or pass --min-per-class 2")
    rng = np.random.default_rng(seed)
    ranks = [np.sort(rng.choice(int(counts[h]), int(take[h]), replace=False))
             for h in range(len(names))]
    rows, cols, cls = [], [], []
    seen = np.zeros(len(names), dtype=np.int64)
    with rasterio.open(cmap.path) as src:
        for win in cmap.windows():
            ids = cmap.read(src, win).ravel()
            here = np.bincount(ids[ids != cmap.nodata], minlength=len(names))[:len(names)]
            for h in np.flatnonzero(here):
                r = ranks[h]
                sel = r[(r >= seen[h]) & (r < seen[h] + here[h])] - seen[h]
                if sel.size:
                    flat = np.flatnonzero(ids == h)[sel]
                    rows.append(flat // int(win.width) + int(win.row_off))
                    cols.append(flat % int(win.width) + int(win.col_off))
                    cls.append(np.full(sel.size, h))
            seen += here
    row, col, klass = (np.concatenate(v) if v else np.zeros(0, np.int64)
                       for v in (rows, cols, cls))
    order = rng.permutation(len(row))
    row, col, klass = row[order], col[order], klass[order]
    x, y = cmap.transform @ (col + 0.5, row + 0.5)
    gdf = gpd.GeoDataFrame(
        {"point_id": np.arange(1, len(row) + 1), "map_class_id": klass.astype(np.int64),
         "map_class": [names[k] for k in klass], "reference": [""] * len(row)},
        geometry=gpd.points_from_xy(x, y), crs=None if cmap.crs is None else cmap.crs.to_wkt())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(out)
    with output_lock(out, "geomm sample-design"):  # one writer per file
        drop_partials(out)  # a killed run's
        if out.exists() and not overwrite:
            raise OutputExistsError(f"{out} appeared meanwhile; pass --overwrite to replace "
                                    "it, or choose another file")
        try:
            gdf.to_file(tmp, layer="samples", driver="GPKG", engine="pyogrio")
            os.replace(tmp, out)
        finally:
            drop_partials(out)
    return SampleDesign(out, tuple(names), tuple(int(c) for c in counts),
                        tuple(int(v) for v in wanted), tuple(int(v) for v in take),
                        allocation, None if u is None else tuple(float(v) for v in u), seed,
                        tuple(notes))
