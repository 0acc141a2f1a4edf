"""Accuracy assessment of a land-cover map against a reference sample.

:func:`assess` reads the map (a class COG, or a probabilities COG taken by argmax), puts the
reference on it (points are looked up at their pixel; polygons and label rasters give every
pixel they cover), matches classes by name, and returns an :class:`Assessment`: the error
matrix, the scores of :mod:`geomm.metrics` and the error-adjusted area estimates of
:mod:`geomm.assess.areas`, with everything that was left out counted. A reference in another CRS is
reprojected to the map's.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geomm._remote import AnyPath, as_path, gdal_path, remote_env
from geomm._version import __version__
from geomm.assess._classmap import ClassMap, geographic_note, open_class_map
from geomm.assess._reference import (
    ClassMatcher,
    Tally,
    UnknownClassError,
    UnknownPolicy,
    read_points,
    read_polygons,
    read_raster,
    read_vector,
    to_map_crs,
)
from geomm.assess.areas import AreaEstimates, Design, EstimationError, estimate_areas
from geomm.errors import GeommError, GeommWarning
from geomm.metrics import Scores, scores

__all__ = ["AccuracyError", "Assessment", "ReferenceWarning", "UnknownClassError", "assess"]

Sampling = Literal["stratified", "simple"]


class AccuracyError(GeommError, ValueError):
    """The reference cannot be scored against the map (nothing overlaps, no features...)."""


class ReferenceWarning(GeommWarning):
    """Some reference samples were left out (outside the map, on nodata, unknown class)."""


@dataclass(frozen=True)
class Assessment:
    """A map scored against a reference: error matrix, scores, area estimates, left-outs."""

    map: ClassMap
    """The assessed map."""
    reference: AnyPath
    """The reference file."""
    column: str | None
    """Reference class column (None for a label raster)."""
    sampling: Sampling
    """Sampling design the estimates assume."""
    names: tuple[str, ...]
    """Class names: the map's, then reference-only classes (``--unknown-classes extra``)."""
    error_matrix: np.ndarray
    """Sample counts, rows map class, columns reference class (as in Olofsson et al.)."""
    mapped_px: np.ndarray
    """Map pixels per class (the strata sizes); zero for reference-only classes."""
    tally: Tally
    """What happened to the reference features."""
    scores: Scores
    """OA, kappa, per-class precision (UA) / recall (PA) / F1 / IoU of the sample counts."""
    estimates: AreaEstimates | None
    """Error-adjusted areas and accuracies; None when the sample cannot support them."""
    notes: tuple[str, ...]
    """Facts a reader of the report should know (reprojection, left-out samples, caveats)."""

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-able (the report's ``metrics.json``)."""
        m = self.map
        crs = None if m.crs is None else m.crs.to_string()
        return {
            "geomm_version": __version__,
            "map": {"path": str(m.path), "kind": m.kind, "class_names_from": m.names_from,
                    "crs": crs, "width": m.width, "height": m.height,
                    "pixel_size": [abs(m.transform.a), abs(m.transform.e)],
                    "pixel_area_m2": m.pixel_area_m2},
            "reference": {"path": str(self.reference), "column": self.column,
                          **asdict(self.tally)},
            "sampling": self.sampling,
            "classes": list(self.names),
            "map_classes": len(m.table),
            "error_matrix": {"rows": "map", "columns": "reference",
                             "counts": self.error_matrix.astype(int).tolist()},
            "scores": self.scores.to_dict(self.names),
            "estimates": None if self.estimates is None else self.estimates.to_dict(),
            "notes": list(self.notes),
        }


def assess(map_path: str | Path, reference: str | Path, *, column: str | None = "reference",
           sampling: Sampling = "stratified", bundle: str | Path | None = None,
           unknown_classes: UnknownPolicy = "error") -> Assessment:
    """Score a land-cover map against reference points, polygons or a label raster.

    Args:
        map_path: ``classes.tif``, or ``probabilities.tif`` (argmax of the bands).
        reference: A vector file (points: one sample each; polygons: every map pixel whose
            centre they cover) or a single-band label raster.
        column: The reference class column of a vector file (ignored for a raster).
        sampling: ``"stratified"``: stratified random sample with the map classes as strata
            (Olofsson et al. 2014; also right, post-stratified, for a simple random sample);
            ``"simple"``: ordinary sample proportions of a simple random sample.
        bundle: Model bundle with the class table, for a map without class names.
        unknown_classes: A reference class the map does not have: ``"error"`` stops,
            ``"extra"`` scores it as a class the map never predicts, ``"skip"`` leaves it out;
            it is counted in the result either way.

    Returns:
        The assessment.

    Raises:
        AccuracyError: no reference sample falls on a mapped pixel.
        UnknownClassError: the reference has classes the map lacks (``unknown_classes="error"``).
        GeommError: unreadable inputs, an empty reference, a missing column, no CRS.
    """
    reference = as_path(reference)
    if unknown_classes not in ("error", "extra", "skip"):
        raise GeommError(f"unknown_classes={unknown_classes!r}; use error, extra or skip")
    if sampling not in ("stratified", "simple"):
        raise GeommError(f"sampling={sampling!r}; use stratified or simple")
    if not reference.exists():
        raise GeommError(f"{reference}: no such reference file")
    cmap = open_class_map(map_path, bundle=bundle)
    matcher = ClassMatcher(cmap.table.names, unknown_classes)
    counts, tally, column = _read_reference(reference, column, cmap, matcher)
    names = (*cmap.table.names, *matcher.extra)
    k = len(names)
    matrix = np.zeros((k, k), dtype=np.int64)
    matrix[:counts.shape[0], :counts.shape[1]] = counts
    notes = _left_out(reference, tally, unknown_classes)
    if matrix.sum() == 0:
        raise AccuracyError(f"{reference}: no reference sample falls on a mapped pixel "
                            f"({'; '.join(notes) or 'nothing labelled'}); check that the "
                            "reference covers the map and its class column is filled in")
    for line in notes:
        warnings.warn(line, ReferenceWarning, stacklevel=2)
    mapped = np.zeros(k, dtype=np.int64)
    mapped[:len(cmap.table)] = cmap.class_counts()
    estimates, more = _estimates(matrix, mapped, names, sampling, cmap, tally)
    return Assessment(cmap, reference, column, sampling, names, matrix, mapped, tally,
                      scores(matrix.T), estimates, tuple(notes + more))


def _read_reference(path: AnyPath, column: str | None, cmap: ClassMap,
                    matcher: ClassMatcher) -> tuple[np.ndarray, Tally, str | None]:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with remote_env(path), rasterio.open(gdal_path(path)):
            is_raster = True
    except RasterioError:
        is_raster = False
    if is_raster:
        tally = Tally("raster")
        return read_raster(path, cmap, matcher, tally), tally, None
    column = column or "reference"
    gdf = read_vector(path, column)
    kinds = gdf.geometry.geom_type.to_numpy()
    real = ~(gdf.geometry.isna() | gdf.geometry.is_empty).to_numpy()  # no place to score
    is_point = np.isin(kinds, ["Point", "MultiPoint"]) & real
    is_polygon = np.isin(kinds, ["Polygon", "MultiPolygon"]) & real
    points = gdf[is_point].explode(index_parts=False)  # a MultiPoint: each of its points
    points = points[~points.geometry.is_empty]
    polygons = gdf[is_polygon]
    tally = Tally("points" if len(points) >= len(polygons) else "polygons",
                  features=len(gdf),
                  other_geometries=len(gdf) - int(is_point.sum()) - int(is_polygon.sum()))
    if len(points) + len(polygons) == 0:
        raise GeommError(f"{path}: no point or polygon features (only "
                         f"{', '.join(sorted(set(map(str, kinds))))}); give sample points or "
                         "reference polygons")
    counts = np.zeros((0, 0), dtype=np.int64)
    if len(points):
        counts = _add(counts, read_points(to_map_crs(points, cmap, path, tally), column, cmap,
                                          matcher, tally, str(path)))
    if len(polygons):
        counts = _add(counts, read_polygons(to_map_crs(polygons, cmap, path, tally), column,
                                            cmap, matcher, tally, str(path)))
    return counts, tally, column


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    k = max(a.shape[0], b.shape[0])
    out = np.zeros((k, k), dtype=np.int64)
    out[:a.shape[0], :a.shape[1]] += a
    out[:b.shape[0], :b.shape[1]] += b
    return out


def _left_out(path: AnyPath, t: Tally, policy: str) -> list[str]:
    """One line per reason samples were left out or changed."""
    unit = "point" if t.kind == "points" else "feature" if t.kind == "polygons" else "pixel"
    lines = []
    if t.reprojected_from:
        lines.append(f"reference reprojected from {t.reprojected_from} to the map's CRS")
    if t.outside_map:
        lines.append(f"{_count(t.outside_map, f'reference {unit}', 'lies', 'lie')} outside "
                     "the map: not scored")
    if t.on_nodata:
        what = "point" if t.kind == "points" else "reference pixel"
        lines.append(f"{_count(t.on_nodata, what, 'falls', 'fall')} on map nodata (no "
                     "class): not scored")
    if t.unlabelled:
        lines.append(f"{_count(t.unlabelled, f'reference {unit}', 'has', 'have')} no class "
                     "in the column yet: not scored")
    if t.unknown:
        listed = ", ".join(f"{n!r} ({c})" for n, c in sorted(t.unknown.items()))
        lines.append(f"reference classes the map does not have: {listed}; " + (
            "scored as extra classes the map never predicts" if policy == "extra"
            else "left out"))
    if t.other_geometries:
        lines.append(f"{_count(t.other_geometries, 'feature', 'is', 'are')} neither point "
                     "nor polygon, or empty: not used")
    if t.other_stratum:
        lines.append(f"{_count(t.other_stratum, 'design point', 'lies', 'lie')} in another "
                     "class of this map than the one it was drawn from (column map_class): "
                     "the stratified estimates assume the strata of the map the design was "
                     "drawn from; evaluate that map")
    return lines


def _count(n: int, noun: str, verb: str, verbs: str) -> str:
    """``"1 point falls"`` / ``"2 points fall"``."""
    return f"{n} {noun} {verb}" if n == 1 else f"{n} {noun}s {verbs}"


def _estimates(matrix: np.ndarray, mapped: np.ndarray, names: tuple[str, ...],
               sampling: Design, cmap: ClassMap,
               tally: Tally) -> tuple[AreaEstimates | None, list[str]]:
    notes = []
    note = geographic_note(cmap)
    if note:
        notes.append(note)
    if tally.kind != "points":
        notes.append(f"the reference is every pixel of the {tally.kind}, not a probability "
                     "sample: the estimates treat these pixels as a random sample, so their "
                     "confidence intervals are too narrow for spatially clustered reference")
    try:
        est = estimate_areas(matrix, mapped, names, design=sampling,
                             pixel_area_m2=cmap.pixel_area_m2)
    except EstimationError as exc:
        est, lacking = None, f"no area estimates: {exc}"
    else:
        thin = [n for i, n in enumerate(names) if mapped[i] > 0 and matrix[i].sum() == 1]
        lacking = (f"map classes {', '.join(map(repr, thin))} have a single sample: standard "
                   "errors need at least 2 per class and are left blank"
                   if thin and sampling == "stratified" else "")
    if lacking:  # what the estimates lack is said on the terminal too
        warnings.warn(lacking, ReferenceWarning, stacklevel=3)
        notes.append(lacking)
    return est, notes
