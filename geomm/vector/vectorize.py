"""Land-cover class raster -> one polygon per 4-connected region of a class, in bounded memory.

The raster is read window by window. A polygon that does not touch an internal window edge is
written at once; one that does is held open and merged with the pieces of its class across
the seam, and written when it no longer touches an unread window. The output is therefore the
same, vertex for vertex, whatever ``window`` is: each polygon has a vertex where its boundary
turns and where three or more classes meet (see :mod:`geomm.vector._polygons`), and none where a
window edge crossed it. Memory holds one window (plus its halo) and the regions still open
along the read frontier; a region that spans the whole raster is held until its last window.
Final polygons are written in chunks of ``_CHUNK``.

Sieve rule (``min_area``): a 4-connected region of fewer than ``ceil(min_area / pixel area)``
pixels takes the class of the large region (at or above that size) it shares most pixel edges
with, lowest class id on a tie. This is done in :data:`SIEVE_PASSES` passes; a small region with
no large neighbour (enclosed by nodata or by other small regions) waits for the next pass, and
is kept if none remains. Nodata never changes and never spreads. Every decision looks at most
``2 * size - 2`` pixels away, so each window is sieved with a halo of
``SIEVE_PASSES * (2 * size - 2) + 1`` pixels and the result does not depend on the windows.

Simplification (``simplify``) is :func:`shapely.coverage_simplify` over each chunk of
polygons written together, with ``simplify_boundary=False``: edges shared by two polygons of
the chunk are simplified once for both, while edges along nodata, the raster border or a
polygon of another chunk are kept as they are, so no gap or overlap can appear.

Areas (``area_m2``) are exact for projected rasters. For a geographic CRS (degrees) they are
computed in a Lambert azimuthal equal-area projection centred on the raster, and ``min_area``
and ``simplify`` use the metre size of the centre pixel.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import rasterio
import shapely
from affine import Affine
from rasterio.windows import Window

from geomm._lock import output_lock
from geomm._outputs import drop_partials, settle
from geomm.vector import _polygons as poly
from geomm.vector import _sieve
from geomm.vector._common import Chunk, Guarded, VectorizeError, one_line
from geomm.vector._sinks import (
    FORMATS,
    check_side_files,
    commit_file,
    drop_file,
    drop_partial_folders,
    resolve_driver,
    temp_path,
    write_file,
)
from geomm.vector._stitch import Stitcher
from geomm.vector.postgis import PgTarget, is_postgis, write_postgis
from geomm.vector.styles import StyleClass, class_info, style_classes, vector_qml, vector_sld

__all__ = ["FORMATS", "ClassSummary", "VectorizeError", "VectorizeSummary", "vectorize"]

LAYER = "classes"
"""Layer name in a GeoPackage (and other multi-layer formats)."""
SIEVE_PASSES = 2
"""Passes of the sieve rule (see the module docstring)."""
_CHUNK = 20_000  # polygons written (and coverage-simplified) together
_INTEGER = ("uint8", "int8", "uint16", "int16", "int32")


@dataclass(frozen=True)
class ClassSummary:
    """What was written for one class."""

    class_id: int
    """Pixel value of the class."""
    name: str
    """Class name (from the raster's class table or band tags, else the id)."""
    n_polygons: int
    """Polygons written."""
    area_m2: float
    """Their total area, square metres."""


@dataclass(frozen=True)
class VectorizeSummary:
    """The result of :func:`vectorize`."""

    path: Path | str
    """The file written; for PostGIS the connection string (password masked) and table."""
    n_polygons: int
    """Polygons written, all classes."""
    classes: tuple[ClassSummary, ...]
    """Per class, by id."""
    seconds: float
    """Wall time."""

    def describe(self) -> str:
        """One line: file, polygon counts per class, time."""
        per = ", ".join(f"{c.name} {c.n_polygons}" for c in self.classes) or "no classes"
        return f"{self.path}: {self.n_polygons} polygons ({per}) in {self.seconds:.1f} s"


def vectorize(classes: str | Path, out: str | Path, *, min_area: float | None = None,
              simplify: float | None = None, window: int = 2048, overwrite: bool = False,
              append: bool = False, layer: str | None = None, driver: str | None = None
              ) -> VectorizeSummary:
    """Turn a class raster into polygons per class, written to a vector file or PostGIS table.

    Columns: ``class_id`` (int32), ``class_name``, ``area_m2`` (float64) and the geometry
    (Polygon), in the raster's CRS. Pixels equal to nodata or to the class table's ignore value
    (or negative) make no polygon. A file appears only when complete (it is written under a
    temporary name beside ``out``, removed on any error); a PostGIS table is written in one
    transaction (see :mod:`geomm.vector.postgis`). A GeoPackage (version 1.2) and a PostGIS
    table get a QGIS style (categories of ``class_id`` in the class colours) in
    ``layer_styles``.

    Args:
        classes: single-band integer GeoTIFF/COG of class ids. Names come from its
            ``GEOMM_CLASSES`` tag (a :meth:`ClassTable.to_dict` JSON), else from band tags
            ``class_<id>=<name>``, else the id.
        out: a file whose suffix names the format (``.gpkg``, ``.parquet`` GeoParquet,
            ``.fgb``, ``.shp``, ``.geojson``, ...), or a PostgreSQL connection string
            (``postgresql://USER[:PW]@HOST[:PORT]/DB`` or ``PG:host=... dbname=...``).
        min_area: square metres; smaller regions are sieved into a neighbour first.
        simplify: metres; topology-preserving coverage simplification of shared edges.
        window: side of the square windows read at a time, pixels.
        overwrite: replace an existing file or table, and the side files geomm writes with a
            file (its QGIS style ``<name>.qml``, a shapefile's parts); without it an existing
            one is refused before anything is written.
        append: PostGIS only: add the polygons to an existing table (same columns).
        layer: the layer name (default ``classes``), or for PostGIS ``[SCHEMA.]TABLE``
            (default ``public.classes``).
        driver: a GDAL/OGR driver name (or ``GeoParquet``) instead of the suffix's format.

    Returns:
        What was written, per class.

    Raises:
        VectorizeError: bad suffix, driver or option, ``out`` or a side file it would replace
            (``<name>.qml``) exists, the raster is missing, has several bands, is not integer
            or has no CRS, or the database refused the write (nothing written then).
    """
    start = time.perf_counter()
    src_path = Path(classes)
    _check_options(min_area, simplify, window)
    if overwrite and append:
        raise VectorizeError("overwrite and append exclude each other; give one")
    if is_postgis(out):
        target = PgTarget.parse(str(out), layer)
        if driver is not None:
            raise VectorizeError(f"{target.shown}: driver={driver!r} is for files; leave it "
                                 "out for a PostgreSQL connection string")
        mode = "overwrite" if overwrite else "append" if append else "create"
        return _to_postgis(src_path, target, mode, min_area, simplify, window, start)
    out = Path(out)
    if out.resolve() == src_path.resolve():  # --overwrite would replace the map itself
        raise VectorizeError(f"{out}: is the class raster being vectorised; write the polygons "
                             "to another file (e.g. .gpkg)")
    if append:
        raise VectorizeError(f"{out}: append is for PostGIS tables (a file is written whole); "
                             "pass overwrite=True (--overwrite) to replace the file")
    fmt = resolve_driver(out, driver)
    args = (src_path, out, fmt, layer or LAYER, min_area, simplify, window, overwrite, start)
    if out.parent.is_dir():
        with output_lock(out, "geomm vectorize"):  # one writer per file
            return _to_file(*args)
    return _to_file(*args)


def _to_file(src_path: Path, out: Path, fmt: str, layer: str, min_area: float | None,
             simplify: float | None, window: int, overwrite: bool, start: float
             ) -> VectorizeSummary:
    _check_file(out, fmt, overwrite)
    drop_partial_folders(out)  # a killed run's (this run holds the output's lock)
    drop_partials(out)
    tmp = temp_path(out)
    try:
        with _open(src_path) as src:
            meta = _Meta.read(src, src_path)
            stats: dict[int, tuple[int, float]] = {}
            chunks = Guarded(_run(src, meta, window, min_area, simplify, stats))
            _write(lambda: write_file(tmp, fmt, meta.crs, layer, chunks,
                                      lambda: meta.style(stats)), chunks, src_path)
        commit_file(tmp, out, fmt, overwrite=overwrite)
    except BaseException:
        drop_file(tmp)
        raise
    return _summary(out, meta, stats, start)


def _to_postgis(src_path: Path, target: PgTarget, mode: str, min_area: float | None,
                simplify: float | None, window: int, start: float) -> VectorizeSummary:
    with _open(src_path) as src:
        meta = _Meta.read(src, src_path)
        stats: dict[int, tuple[int, float]] = {}
        chunks = Guarded(_run(src, meta, window, min_area, simplify, stats))

        def style() -> tuple[str, str]:
            cats = meta.style(stats)
            return vector_qml(cats), vector_sld(cats, target.table)

        _write(lambda: write_postgis(target, chunks, meta.crs, style, mode=mode), chunks,
               src_path)
    return _summary(str(target), meta, stats, start)


def _write(write: Callable[[], None], chunks: Guarded, src_path: Path) -> None:
    """Run ``write``; a failure of the raster read (seen by the writer as a failed stream) is
    raised as itself, a read error of rasterio as one line naming the raster."""
    try:
        write()
    except BaseException as exc:
        err = chunks.error or exc
        if isinstance(err, rasterio.errors.RasterioError):
            raise VectorizeError(f"{src_path}: reading failed ({one_line(err)}); check that the "
                                 "file is complete and readable") from err
        if err is not exc:
            raise err from None
        raise


def _summary(where: Path | str, meta: _Meta, stats: dict[int, tuple[int, float]],
             start: float) -> VectorizeSummary:
    per = tuple(ClassSummary(k, meta.name(k), n, a) for k, (n, a) in sorted(stats.items()))
    return VectorizeSummary(where, sum(c.n_polygons for c in per), per,
                            time.perf_counter() - start)


def _check_file(out: Path, fmt: str, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise VectorizeError(f"{out} already exists; pass overwrite=True (--overwrite) to "
                             "replace it")
    if out.is_dir():
        raise VectorizeError(f"{out} is a folder; give a file name ending in .gpkg, .parquet, "
                             ".fgb, .shp or .geojson")
    if not out.parent.is_dir():
        raise VectorizeError(f"{out}: folder {out.parent} does not exist; create it first")
    check_side_files(out, fmt, overwrite)  # its <name>.qml style, a shapefile's parts


def _check_options(min_area: float | None, simplify: float | None, window: int) -> None:
    for name, value in (("min_area", min_area), ("simplify", simplify)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise VectorizeError(f"{name}={value!r} must be a number >= 0 (or None)")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise VectorizeError(f"window={window!r} must be a whole number of pixels >= 1 "
                             "(default 2048)")


def _open(path: Path) -> Any:
    settle(path)  # a run killed mid-commit: finish it, never read a mix of two runs
    if not path.is_file():
        raise VectorizeError(f"{path}: no such file; give the path of a class raster "
                             "(single-band integer GeoTIFF)")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        msg = " ".join(str(exc).split())
        raise VectorizeError(f"{path}: GDAL cannot open it as a raster ({msg}); give a "
                             "single-band integer GeoTIFF of class ids") from None


@dataclass(frozen=True)
class _Meta:
    """What vectorizing needs to know about the raster."""

    names: dict[int, str]
    colours: dict[int, str]
    no_class: tuple[int, ...]
    crs: pyproj.CRS
    transform: Affine
    pixel_m2: float
    area: Callable[[np.ndarray], np.ndarray]

    @classmethod
    def read(cls, src: Any, path: Path) -> _Meta:
        if src.count != 1:
            raise VectorizeError(f"{path}: has {src.count} bands; vectorize needs a "
                                 "single-band class raster (extract it: gdal_translate -b N)")
        if src.dtypes[0] not in _INTEGER:
            raise VectorizeError(f"{path}: band is {src.dtypes[0]}; vectorize needs class ids "
                                 f"of type {', '.join(_INTEGER)}: convert with "
                                 "gdal_translate -ot Byte")
        if src.crs is None:
            raise VectorizeError(f"{path}: has no CRS; set one (gdal_edit.py -a_srs EPSG:...)")
        names, colours, ignore = class_info(src, path)
        if not names:
            _refuse_continuous(src, path)
        no_class = {ignore} if ignore is not None else set()
        if src.nodata is not None and float(src.nodata).is_integer():
            no_class.add(int(src.nodata))
        crs = pyproj.CRS.from_wkt(src.crs.to_wkt())
        pixel_m2, area = _area_model(crs, src.transform, src.height, src.width)
        return cls(names, colours, tuple(sorted(no_class)), crs, src.transform, pixel_m2, area)

    def name(self, class_id: int) -> str:
        return self.names.get(class_id, str(class_id))

    def style(self, stats: dict[int, tuple[int, float]]) -> list[StyleClass]:
        """The style's categories: every named class and every class written."""
        return style_classes(self.names, self.colours, stats)


MAX_UNNAMED_VALUES = 64
"""A raster without class names and with more distinct values than this in a sample is taken
for a continuous one (confidence, probabilities, reflectance), not a class map."""


def _refuse_continuous(src: Any, path: Path) -> None:
    """Refuse a raster that is not a class map (it would make a polygon per pixel value)."""
    desc = (src.descriptions[0] or "").lower() if src.descriptions else ""
    if desc in ("confidence", "probability") or desc.startswith("p("):
        raise VectorizeError(f"{path}: band 1 is '{desc}', not class ids; vectorize the "
                             "classes.tif beside it")
    h, w = min(src.height, 1024), min(src.width, 1024)
    sample = src.read(1, window=Window((src.width - w) // 2, (src.height - h) // 2, w, h))
    n = len(np.unique(sample))
    if n > MAX_UNNAMED_VALUES:
        raise VectorizeError(f"{path}: {n} distinct values in a {w} x {h} px sample and no "
                             "class names: a continuous raster (confidence, probability, "
                             "reflectance?), not class ids; give a class map (geomm's "
                             "classes.tif, or name its classes in band tags class_<id>=name)")


def _to_world(geoms: np.ndarray, t: Affine) -> np.ndarray:
    """Pixel-space geometries in the raster's CRS (same arithmetic as GDAL's polygonize)."""
    return shapely.transform(geoms, lambda xy: np.column_stack(
        [t.c + xy[:, 0] * t.a + xy[:, 1] * t.b, t.f + xy[:, 0] * t.d + xy[:, 1] * t.e]))


def _area_model(crs: pyproj.CRS, t: Affine, height: int, width: int
                ) -> tuple[float, Callable[[np.ndarray], np.ndarray]]:
    """Pixel area (m²) and a function: pixel-space polygons -> their areas in m²."""
    if not crs.is_geographic:
        unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
        pixel_m2 = abs(t.a * t.e - t.b * t.d) * unit * unit
        return pixel_m2, lambda g: shapely.area(g) * pixel_m2
    lon, lat = t * (width / 2, height / 2)
    ell = crs.ellipsoid
    shape = (f"+a={ell.semi_major_metre} +b={ell.semi_minor_metre}" if ell is not None
             else "+ellps=WGS84")
    laea = pyproj.CRS.from_proj4(f"+proj=laea +lat_0={lat} +lon_0={lon} {shape} +units=m")
    fwd = pyproj.Transformer.from_crs(crs, laea, always_xy=True)

    def area(geoms: np.ndarray) -> np.ndarray:
        world = _to_world(shapely.segmentize(geoms, 4.0), t)  # edges of at most 4 pixels
        return np.asarray(shapely.area(shapely.transform(
            world, lambda xy: np.column_stack(fwd.transform(xy[:, 0], xy[:, 1])))))

    centre = shapely.box(width // 2, height // 2, width // 2 + 1, height // 2 + 1)
    return float(area(np.array([centre]))[0]), area


def _read(src: Any, rows: tuple[int, int], cols: tuple[int, int],
          no_class: tuple[int, ...]) -> np.ndarray:
    """Classes of a pixel range (may reach past the raster) as int32; -1 where no class."""
    (r0, r1), (c0, c1) = rows, cols
    rr0, rr1 = max(r0, 0), min(r1, src.height)
    cc0, cc1 = max(c0, 0), min(c1, src.width)
    data = src.read(1, window=Window(cc0, rr0, cc1 - cc0, rr1 - rr0)).astype(np.int32)
    data[np.isin(data, no_class) | (data < 0)] = -1
    return np.pad(data, ((rr0 - r0, r1 - rr1), (cc0 - c0, c1 - cc1)), constant_values=-1)


def _run(src: Any, meta: _Meta, window: int, min_area: float | None, simplify: float | None,
         stats: dict[int, tuple[int, float]]) -> Iterator[Chunk]:
    """Read, sieve, polygonize and stitch every window; yield polygons in chunks as they are
    final (``stats``: polygons and area per class, counted as they are yielded)."""
    height, width = src.height, src.width
    size = math.ceil(min_area / meta.pixel_m2 - 1e-9) if min_area else 0
    halo = 1 + (_sieve.sieve_halo(size, SIEVE_PASSES) if size > 1 else 0)
    # past the raster there is no class: context beyond its far side adds nothing
    halo = min(halo, max(height, width) + 1)
    grid = poly.SeamGrid(height, width, window)
    stitcher = Stitcher(grid)
    tolerance = simplify / math.sqrt(meta.pixel_m2) if simplify else 0.0
    out = _Chunks(meta, tolerance, stats)
    for r0 in range(0, height, window):
        for c0 in range(0, width, window):
            r1, c1 = min(r0 + window, height), min(c0 + window, width)
            ext = _read(src, (r0 - halo, r1 + halo), (c0 - halo, c1 + halo), meta.no_class)
            if size > 1:
                cut = halo - 1
                ext = _sieve.sieve(ext, size, SIEVE_PASSES)[cut:ext.shape[0] - cut,
                                                          cut:ext.shape[1] - cut]
            pieces, edges = poly.window_pieces(ext, r0, c0, grid)
            yield from out.add(stitcher.add(pieces, edges, r0, r1, c0, c1))
    yield from out.add(stitcher.finish())
    yield from out.flush()


class _Chunks:
    """Final polygons gathered into chunks: simplified together, measured and handed on."""

    def __init__(self, meta: _Meta, tolerance: float,
                 stats: dict[int, tuple[int, float]]) -> None:
        self.meta, self.tolerance, self.stats = meta, tolerance, stats
        self.parts: list[poly.Pieces] = []
        self.count = 0

    def add(self, pieces: poly.Pieces) -> list[Chunk]:
        self.parts.append(pieces)
        self.count += len(pieces)
        return self.flush() if self.count >= _CHUNK else []

    def flush(self) -> list[Chunk]:
        pieces = poly.Pieces.concat(self.parts)
        self.parts, self.count = [], 0
        if not len(pieces):
            return []
        geoms = pieces.polygons()
        if self.tolerance > 0:
            geoms = shapely.coverage_simplify(geoms, self.tolerance, simplify_boundary=False)
        area = self.meta.area(geoms)
        ids = pieces.classes
        present, which = np.unique(ids, return_inverse=True)
        names = np.array([self.meta.name(int(k)) for k in present], dtype=object)[which]
        counts = np.bincount(which, minlength=len(present))
        areas = np.bincount(which, weights=area, minlength=len(present))
        for k, n_k, a_k in zip(present, counts, areas, strict=True):
            n, a = self.stats.get(int(k), (0, 0.0))
            self.stats[int(k)] = (n + int(n_k), a + float(a_k))
        return [(ids, names, area, _to_world(geoms, self.meta.transform))]
