"""Put a reference (points, polygons or a label raster) onto a class map's pixels.

Each reader returns the error matrix of counts (rows map class, columns reference class) and a
:class:`Tally` of what did not make it into the matrix. Reference class values are matched to
the map's class names (exactly, else ignoring case and surrounding spaces); values the map
does not know are handled as the caller says: an error, extra reference-only classes, or
dropped and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import rasterio

from geomm._remote import AnyPath, gdal_path, remote_env, remote_vector_env
from geomm.assess._classmap import ClassMap
from geomm.errors import CRSMissingError, GeommError
from geomm.metrics import confusion_matrix

__all__ = ["ClassMatcher", "Tally", "UnknownClassError", "read_points", "read_polygons",
           "read_raster", "read_vector"]

UnknownPolicy = Literal["error", "extra", "skip"]
_UNLABELLED = -1
_UNKNOWN = -2


class UnknownClassError(GeommError, ValueError):
    """The reference names classes the map does not have."""


@dataclass
class Tally:
    """What happened to the reference on its way into the error matrix."""

    kind: str
    """``"points"``, ``"polygons"`` or ``"raster"``."""
    features: int = 0
    """Features read (vector), or labelled reference pixels seen (raster)."""
    samples: int = 0
    """Samples in the error matrix: points, or reference pixels."""
    outside_map: int = 0
    """Points (or whole polygons) outside the map's extent."""
    on_nodata: int = 0
    """Points or reference pixels on map pixels without a class."""
    unlabelled: int = 0
    """Features whose reference class is empty."""
    unknown: dict[str, int] = field(default_factory=dict)
    """Reference classes the map does not know, with their feature counts."""
    other_geometries: int = 0
    """Features neither point nor polygon (lines, empty geometries): not used."""
    reprojected_from: str | None = None
    """The reference's own CRS when it differed from the map's."""
    other_stratum: int = 0
    """Design points (``map_class`` of ``geomm sample-design``) on a pixel of another class
    in this map: the design was drawn from another map."""


class ClassMatcher:
    """Reference class values to map class ids, by name."""

    def __init__(self, names: Sequence[str], policy: UnknownPolicy) -> None:
        self.names = list(names)
        self.k = len(self.names)
        self.policy = policy
        self.extra: list[str] = []
        self._exact = {n: i for i, n in enumerate(self.names)}
        folded = Counter(n.strip().casefold() for n in self.names)
        self._loose = {n.strip().casefold(): i for i, n in enumerate(self.names)
                       if folded[n.strip().casefold()] == 1}

    def lookup(self, value: Any) -> int:
        """The map class id of ``value``; ``-1`` when empty, ``-2`` when the map lacks it."""
        name = _as_name(value)
        if name is None:
            return _UNLABELLED
        i = self._exact.get(name, self._loose.get(name.strip().casefold()))
        return _UNKNOWN if i is None else i

    def id_of(self, value: Any) -> int:
        """Like :meth:`lookup`, but under the ``extra`` policy an unknown name becomes (and
        stays) an extra reference class with an id from ``k`` on."""
        i = self.lookup(value)
        if i != _UNKNOWN:
            return i
        name = str(_as_name(value))
        if self.policy == "extra":
            if name not in self.extra:
                self.extra.append(name)
            return self.k + self.extra.index(name)
        return _UNKNOWN

    def ids(self, values: Sequence[Any], tally: Tally, where: str) -> np.ndarray:
        """Ids of many values; unknown ones tallied, or an error under the ``error`` policy."""
        ids = np.array([self.id_of(v) for v in values], dtype=np.int64)
        unknown = Counter(str(_as_name(v)) for v, i in zip(values, ids, strict=True)
                          if i == _UNKNOWN or i >= self.k)
        self.tally_unknown(unknown, tally, where)
        tally.unlabelled += int((ids == _UNLABELLED).sum())
        return ids

    def tally_unknown(self, unknown: Counter[str], tally: Tally, where: str) -> None:
        """Add unknown reference classes to ``tally``; raise under the ``error`` policy.

        Raises:
            UnknownClassError: there are unknown classes and the policy is ``error``.
        """
        for name, count in unknown.items():
            tally.unknown[name] = tally.unknown.get(name, 0) + count
        if self.policy == "error" and unknown:
            listed = ", ".join(f"{n!r} ({c})" for n, c in sorted(unknown.items()))
            unnamed = all(n.isdigit() for n in self.names)  # a map that names no class
            raise UnknownClassError(
                f"{where}: reference classes {listed} are not classes of the map "
                f"({', '.join(self.names)}); " + (
                    "the map names no class: pass --bundle with the model it was predicted "
                    "with" if unnamed else
                    "rename them in the reference, or pass --unknown-classes extra (score "
                    "them as classes the map never predicts) or --unknown-classes skip (leave "
                    "them out)"))


def _as_name(value: Any) -> str | None:
    if value is None or (isinstance(value, float | np.floating) and not np.isfinite(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return text if text.strip() else None


def read_vector(path: AnyPath, column: str) -> Any:
    """The reference features in the map's CRS, with the class column checked.

    Raises:
        GeommError: the file has no features, or no column ``column`` (the message lists
            the columns), or no CRS while the map has one.
    """
    import geopandas as gpd
    from pyogrio.errors import DataSourceError

    try:
        with remote_vector_env(path):
            gdf = gpd.read_file(gdal_path(path), engine="pyogrio")
    except DataSourceError as exc:
        raise GeommError(f"{path}: OGR cannot read it as vector data ({exc}); give a "
                         "GeoPackage, Shapefile or GeoJSON, or a label raster") from None
    if len(gdf) == 0:
        raise GeommError(f"{path}: the reference file has no features; label some sample "
                         "points (see `geomm sample-design`) or give another file")
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.active_geometry_name is None:
        raise GeommError(f"{path}: a table without geometries; give reference points or "
                         "polygons (GeoPackage, Shapefile, GeoJSON) or a label raster")
    if column not in gdf.columns:
        have = [c for c in gdf.columns if c != gdf.geometry.name]
        raise GeommError(f"{path}: no column {column!r}; its columns are "
                         f"{', '.join(have) or '(none)'}; pass --column NAME")
    return gdf


def to_map_crs(gdf: Any, cmap: ClassMap, path: AnyPath, tally: Tally) -> Any:
    """``gdf`` reprojected to the map's CRS (noted in ``tally``)."""
    from geomm.stack.grid import same_crs

    if gdf.crs is None and cmap.crs is None:
        return gdf
    if gdf.crs is None:
        raise CRSMissingError(f"{path}: the reference has no CRS; set it (e.g. `ogr2ogr "
                              "-a_srs EPSG:4326 out.gpkg in.gpkg`) so it can be put on the map")
    if cmap.crs is None:
        raise CRSMissingError(f"{cmap.path}: the map has no CRS, so the reference in "
                              f"{gdf.crs.to_string()} cannot be placed on it")
    if not same_crs(gdf.crs.to_wkt(), cmap.crs.to_wkt()):
        tally.reprojected_from = gdf.crs.to_string()
        gdf = gdf.to_crs(cmap.crs.to_wkt())
    return gdf


def read_points(gdf: Any, column: str, cmap: ClassMap, matcher: ClassMatcher, tally: Tally,
                where: str) -> np.ndarray:
    """Count (map class, reference class) of every point; returns ``(k, k)`` counts."""
    ref = matcher.ids(list(gdf[column]), tally, where)
    x, y = gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy()
    col, row = ~cmap.transform @ (x, y)
    row, col = np.floor(row).astype(np.int64), np.floor(col).astype(np.int64)
    inside = (row >= 0) & (row < cmap.height) & (col >= 0) & (col < cmap.width)
    labelled = ref >= 0
    tally.outside_map += int((~inside & labelled).sum())
    mapped = np.full(len(ref), cmap.nodata, dtype=np.int64)
    use = inside & labelled
    with rasterio.open(cmap.path) as src:
        for win in cmap.windows():
            r0, c0 = int(win.row_off), int(win.col_off)
            here = use & (row >= r0) & (row < r0 + win.height) & (col >= c0) & \
                (col < c0 + win.width)
            if here.any():
                ids = cmap.read(src, win)
                mapped[here] = ids[row[here] - r0, col[here] - c0]
    on_nodata = use & (mapped == cmap.nodata)
    tally.on_nodata += int(on_nodata.sum())
    keep = use & ~on_nodata
    tally.samples += int(keep.sum())
    if "map_class" in gdf.columns:  # a design of geomm sample-design: drawn from this map?
        names = np.array([n.strip().casefold() for n in cmap.table.names], dtype=object)
        drawn = np.array([str(v).strip().casefold() for v in gdf["map_class"]], dtype=object)
        tally.other_stratum += int((names[mapped[keep]] != drawn[keep]).sum())
    return _pairs(mapped[keep], ref[keep], matcher)


def read_polygons(gdf: Any, column: str, cmap: ClassMap, matcher: ClassMatcher,
                  tally: Tally, where: str) -> np.ndarray:
    """Count (map class, reference class) of every map pixel whose centre a polygon covers.

    Where polygons overlap, the one later in the file wins.
    """
    from rasterio.features import rasterize
    from rasterio.windows import bounds as window_bounds
    from shapely import box, intersects

    ref = matcher.ids(list(gdf[column]), tally, where)
    geoms = gdf.geometry.to_numpy()
    left, bottom, right, top = rasterio.transform.array_bounds(cmap.height, cmap.width,
                                                               cmap.transform)
    touches = intersects(geoms, box(left, bottom, right, top))
    tally.outside_map += int((~touches & (ref >= 0)).sum())
    keep = touches & (ref >= 0)
    geoms, ref = geoms[keep], ref[keep]
    total = np.zeros((matcher.k, matcher.k), dtype=np.int64)
    if not len(geoms):
        return _pad(total, matcher)
    import geopandas as gpd

    index = gpd.GeoSeries(geoms).sindex
    fill = np.iinfo(np.uint16).max
    chunks = []
    with rasterio.open(cmap.path) as src:
        for win in cmap.windows():
            hits = np.sort(index.query(box(*window_bounds(win, cmap.transform)),
                                       predicate="intersects"))
            if not len(hits):
                continue
            t = rasterio.windows.transform(win, cmap.transform)
            burnt = rasterize(zip(geoms[hits], ref[hits], strict=True),
                              out_shape=(int(win.height), int(win.width)), transform=t,
                              fill=fill, all_touched=False, dtype=np.uint16)
            labelled = burnt != fill
            if not labelled.any():
                continue
            ids = cmap.read(src, win)
            nodata = labelled & (ids == cmap.nodata)
            tally.on_nodata += int(nodata.sum())
            ok = labelled & ~nodata
            chunks.append(_pairs(ids[ok].astype(np.int64), burnt[ok].astype(np.int64),
                                 matcher))
    tally.samples += int(sum(c.sum() for c in chunks))
    return _sum(chunks, matcher)


def read_raster(path: AnyPath, cmap: ClassMap, matcher: ClassMatcher, tally: Tally) -> np.ndarray:
    """Count (map class, reference class) of every labelled pixel of a label raster.

    The label raster is warped onto the map's grid (nearest neighbour) when it differs; its
    codes are named by its ``GEOMM_CLASSES`` tag or ``class_<id>`` band tags, else by the
    codes themselves.
    """
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    from geomm.assess._classmap import open_class_map

    labels = open_class_map(path)
    if labels.kind != "classes":
        raise GeommError(f"{path}: a label raster must have one integer band of class codes")
    from geomm.stack.grid import same_crs

    if labels.crs is not None and cmap.crs is not None and not same_crs(
            labels.crs.to_wkt(), cmap.crs.to_wkt()):
        tally.reprojected_from = labels.crs.to_string()
    # known names now; a name the map lacks becomes an extra class only once it is seen
    names = list(labels.table.names)
    lut = np.array([matcher.lookup(n) for n in names], dtype=np.int64)
    chunks = []
    unknown = Counter[str]()
    with remote_env(path), rasterio.open(cmap.path) as src, rasterio.open(
            gdal_path(path)) as lsrc, WarpedVRT(
            lsrc, crs=cmap.crs, transform=cmap.transform, width=cmap.width,
            height=cmap.height, resampling=Resampling.nearest, nodata=labels.nodata) as vrt:
        for win in cmap.windows():
            raw = vrt.read(1, window=win).astype(np.int64)
            valid = (raw != labels.nodata) & (raw >= 0)
            if not valid.any():
                continue
            if (top := int(raw[valid].max())) >= len(lut):  # codes its table does not name:
                names += [str(c) for c in range(len(names), top + 1)]  # named by the number
                lut = np.concatenate([lut, [matcher.lookup(n) for n in names[len(lut):]]])
            tally.features += int(valid.sum())
            seen = np.unique(raw[valid])
            for code in seen[lut[seen] == _UNKNOWN]:
                lut[code] = matcher.id_of(names[int(code)])
            ref = np.where(valid, lut[np.where(valid, raw, 0)], _UNLABELLED)
            for code, count in zip(*np.unique(raw[valid & ((ref == _UNKNOWN) |
                                                         (ref >= matcher.k))],
                                              return_counts=True), strict=True):
                unknown[names[int(code)]] += int(count)
            ids = cmap.read(src, win)
            labelled = ref >= 0
            nodata = labelled & (ids == cmap.nodata)
            tally.on_nodata += int(nodata.sum())
            ok = labelled & ~nodata
            chunks.append(_pairs(ids[ok].astype(np.int64), ref[ok], matcher))
    matcher.tally_unknown(unknown, tally, str(path))
    tally.samples += int(sum(c.sum() for c in chunks))
    return _sum(chunks, matcher)


def _pairs(mapped: np.ndarray, ref: np.ndarray, matcher: ClassMatcher) -> np.ndarray:
    """Counts of (map id, reference id) pairs, ``(k + extra)`` square, rows map classes."""
    k = matcher.k + len(matcher.extra)
    return confusion_matrix(ref, mapped, k, ignore_value=None).T


def _pad(m: np.ndarray, matcher: ClassMatcher) -> np.ndarray:
    k = matcher.k + len(matcher.extra)
    out = np.zeros((k, k), dtype=np.int64)
    out[:m.shape[0], :m.shape[1]] = m
    return out


def _sum(chunks: list[np.ndarray], matcher: ClassMatcher) -> np.ndarray:
    total = _pad(np.zeros((0, 0), np.int64), matcher)
    for c in chunks:
        total += _pad(c, matcher)
    return total
