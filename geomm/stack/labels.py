"""Put training labels on the base grid, lazily: burn polygons, or read a class-code raster.

Both give a uint8 ``(y, x)`` DataArray of class ids on the grid's base (factor 1) resolution,
chunked one tile per chunk, with unlabelled pixels set to the table's ``ignore_value``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from affine import Affine
from dask.base import tokenize

from geomm._files import file_stamp
from geomm._remote import (
    AnyPath,
    RemotePath,
    as_path,
    gdal_path,
    remote_vector_env,
    why_unreadable,
)
from geomm.classes import ClassTable
from geomm.errors import CRSMissingError, LabelError, LabelWarning, RecipeError
from geomm.modality import BandSpec, ModalitySpec
from geomm.stack._arrays import grid_dataarray, split_chunks, upsample
from geomm.stack.coregister import coregister
from geomm.stack.grid import GridSpec, same_crs
from geomm.stack.labelnames import class_names, code_name

__all__ = ["LabelReport", "LabelResult", "burn_raster_labels", "burn_vector_labels",
           "label_counts"]


@dataclass(frozen=True)
class LabelReport:
    """What happened to the features of a label file on the way to the grid."""

    source: str
    """The label file."""
    read: int = 0
    """Features read from the file."""
    burned: int = 0
    """Features drawn onto the grid (non-empty, known class, touching the grid)."""
    repaired: int = 0
    """Invalid geometries repaired with ``shapely.make_valid`` (then burned)."""
    dropped_empty: int = 0
    """Features with a null or empty geometry (also after repair), not burned."""
    outside_grid: int = 0
    """Features entirely outside the grid bounds, not burned."""
    unknown_class: int = 0
    """Features whose class is empty or not among the requested classes, not burned."""
    unknown_values: tuple[str, ...] = ()
    """Up to ten of those unknown class values, for the message."""
    notes: tuple[str, ...] = ()
    """Further lines for people (how a label raster was put on the grid)."""

    def messages(self) -> list[str]:
        """One line per fact worth telling: counts that are not zero, then the notes."""
        lines = [f"{self.source}: {self.read} features read, {self.burned} burned"] \
            if self.read else []
        if self.repaired:
            lines.append(f"{self.repaired} invalid geometries repaired with make_valid")
        if self.dropped_empty:
            lines.append(f"{self.dropped_empty} null or empty geometries dropped")
        if self.outside_grid:
            lines.append(f"{self.outside_grid} features lie entirely outside the grid")
        if self.unknown_class:
            vals = ", ".join(repr(v) for v in self.unknown_values)
            lines.append(f"{self.unknown_class} features have no class or one not in "
                         f"`classes` ({vals}); not burned")
        return lines + list(self.notes)


@dataclass(frozen=True)
class LabelResult:
    """Class ids on the base grid, the class table that names them, and what was done."""

    labels: xr.DataArray
    """uint8 ``(y, x)`` class ids (dask-backed), ``ignore_value`` where unlabelled."""
    classes: ClassTable
    """Names and colours of ids 0..K-1."""
    report: LabelReport
    """Counts of repaired, dropped and skipped features."""


def _read_vector(path: AnyPath, layer: str | None) -> Any:
    import geopandas as gpd
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    if not path.exists():
        raise LabelError(f"{path}: no such label file; check `labels.vector` in the recipe "
                         "(relative paths are taken from the recipe's data root)")
    try:
        with remote_vector_env(path):
            if layer is None:
                layer = _only_layer(path)
            return gpd.read_file(gdal_path(path), layer=layer, engine="pyogrio")
    except DataLayerError as exc:
        with remote_vector_env(path):
            have = ", ".join(str(n) for n in pyogrio.list_layers(gdal_path(path))[:, 0])
        raise LabelError(f"{path}: cannot read layer {layer!r} ({exc}); the file's layers "
                         f"are {have}") from None
    except DataSourceError as exc:
        if isinstance(path, RemotePath):
            raise LabelError(f"{path}: cannot read it as vector data "
                             f"({why_unreadable(path) or exc}); check the URL and the labels "
                             "path in the recipe") from None
        raise LabelError(f"{path}: OGR cannot open it as vector data ({exc}); give a "
                         "GeoPackage, Shapefile, GeoJSON or other OGR format") from None


def _only_layer(path: AnyPath) -> str | None:
    """The file's one layer with geometries (a GeoPackage's ``layer_styles`` table has none);
    a :class:`LabelError` when it has several, as the first is not always the labels."""
    import pyogrio

    layers = pyogrio.list_layers(gdal_path(path))
    spatial = [str(n) for n, kind in layers if kind is not None]
    if len(spatial) > 1:
        raise LabelError(f"{path}: the file has {len(spatial)} layers with geometries "
                         f"({', '.join(spatial[:8])}{', ...' if len(spatial) > 8 else ''}); "
                         "choose the labels' one with `labels.layer` in the recipe")
    return spatial[0] if spatial else None


class _Burner:
    """Draws the geometries that meet one chunk onto that chunk (the map_blocks function)."""

    def __init__(self, gdf: Any, transform: Affine, fill: int) -> None:
        self.geoms = gdf.geometry.to_numpy()
        self.ids = gdf["_id"].to_numpy()
        self.sindex = gdf.sindex  # built here, once, not lazily inside the worker threads
        self.transform = transform
        self.fill = fill

    def __call__(self, block_info: dict | None = None) -> np.ndarray:
        from rasterio.features import rasterize
        from shapely import box

        (r0, r1), (c0, c1) = block_info[None]["array-location"]  # type: ignore[index]
        t = self.transform @ Affine.translation(c0, r0)
        (x0, y0), (x1, y1) = t @ (0, 0), t @ (c1 - c0, r1 - r0)
        hits = np.sort(self.sindex.query(box(x0, y1, x1, y0), predicate="intersects"))
        if not len(hits):
            return np.full((r1 - r0, c1 - c0), self.fill, np.uint8)
        return rasterize(zip(self.geoms[hits], self.ids[hits], strict=True),
                         out_shape=(r1 - r0, c1 - c0), transform=t, fill=self.fill,
                         all_touched=False, dtype=np.uint8)


def burn_vector_labels(path: str | os.PathLike[str], class_column: str, grid: GridSpec, *,
                       classes: Sequence[str] | None = None, tile_size: int,
                       ignore_value: int = 255, layer: str | None = None) -> LabelResult:
    """Burn labelled polygons onto the base grid as a lazy uint8 array of class ids.

    Polygons are reprojected to the grid CRS; a pixel takes the class of the polygon that
    covers its centre (``all_touched=False``). Where polygons overlap, larger ones are drawn
    first, so a smaller polygon inside a larger one keeps its class (equal areas: the later
    feature in the file wins). Invalid geometries are repaired (``make_valid``, polygonal
    parts kept); null/empty ones, ones outside the grid and ones of unknown class are
    skipped. All of it is counted in the report, and a :class:`LabelWarning` says so.

    Args:
        path: any vector file OGR reads (GeoPackage, Shapefile, GeoJSON, ...), any CRS.
        class_column: attribute holding each feature's class (values are stringified).
        grid: target grid; labels are on its base resolution.
        classes: class names in id order; default the sorted distinct values of the column.
        tile_size: chunk side in base pixels.
        ignore_value: value of unlabelled pixels.
        layer: layer to read from a multi-layer file; default the file's only layer with
            geometries (several: a :class:`LabelError`).

    Returns:
        A :class:`LabelResult`; nothing is rasterized until ``labels`` is computed.

    Raises:
        LabelError: the file or layer cannot be read, or has no column ``class_column``.
        CRSMissingError: the file has no CRS.
    """
    import shapely

    path = as_path(path)
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
        raise RecipeError(f"tile_size: {tile_size!r} must be a positive number of base pixels")
    gdf = _read_vector(path, layer)
    if len(gdf) == 0:
        raise LabelError(f"{path}: {'layer ' + repr(layer) if layer else 'the file'} has no "
                         "features; give the file (or `labels.layer`) that holds the polygons")
    if class_column not in gdf.columns:
        have = ", ".join(repr(c) for c in gdf.columns if c != gdf.geometry.name) or "none"
        raise LabelError(f"{path}: no class column {class_column!r}; the columns are {have}. "
                         "Set the labels' class column to one of them")
    if gdf.crs is None:
        raise CRSMissingError(f"{path}: vector has no CRS; assign one first, e.g. `ogr2ogr "
                              "-a_srs EPSG:4326 fixed.gpkg FILE`, or add the Shapefile's .prj")
    read = len(gdf)
    values, found, notes = class_names(gdf[class_column].to_numpy(), classes)
    if classes is None:
        classes = found
        if not classes:
            raise LabelError(f"{path}: class column {class_column!r} holds no values; "
                             "fill it in, or choose another column")
    table = ClassTable.from_names(classes, ignore_value=ignore_value)
    lookup = {n: i for i, n in enumerate(table.names)}
    known = np.array([v in lookup for v in values], dtype=bool)
    unknown = sorted({"<no class>" if v is None else v for v in values[~known]})[:10]
    gdf = gdf.assign(_id=np.array([lookup.get(v, 0) for v in values], dtype=np.uint8))
    gdf = gdf.loc[known, ["_id", gdf.geometry.name]]
    geoms = np.array(gdf.geometry.to_numpy(), dtype=object)
    bad = ~shapely.is_valid(geoms) & ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    if bad.any():
        geoms[bad] = shapely.make_valid(geoms[bad], method="structure", keep_collapsed=False)
        gdf = gdf.set_geometry(geoms, crs=gdf.crs)
    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    gdf = gdf.loc[~empty]
    if not same_crs(gdf.crs.to_wkt(), grid.crs):
        gdf = gdf.to_crs(grid.crs.to_wkt())
    inside = np.zeros(len(gdf), dtype=bool)
    inside[gdf.sindex.query(shapely.box(*grid.bounds), predicate="intersects")] = True
    gdf = gdf.loc[inside]
    # planar area in the grid's units (degrees too: only the order matters, small on top)
    order = np.argsort(-shapely.area(gdf.geometry.to_numpy()), kind="stable")
    gdf = gdf.iloc[order].reset_index(drop=True)
    thin = int((~np.isin(shapely.get_type_id(gdf.geometry.to_numpy()), (3, 6))).sum())
    if thin:  # not polygons: points and lines label the pixels they fall on or cross
        notes.append(f"{thin} features are points or lines, not polygons: each labels only the "
                     "pixels it falls on or crosses")
    report = LabelReport(str(path), read=read, burned=len(gdf), repaired=int(bad.sum()),
                         dropped_empty=int(empty.sum()), outside_grid=int((~inside).sum()),
                         unknown_class=int((~known).sum()), unknown_values=tuple(unknown),
                         notes=tuple(notes))
    if report.repaired or report.dropped_empty or report.outside_grid or report.unknown_class \
            or report.notes:
        warnings.warn("; ".join(report.messages()), LabelWarning, stacklevel=2)
    name = "geomm-burn-" + tokenize(*file_stamp(path), layer,
                                    class_column, table.names, ignore_value, grid.to_dict(),
                                    tile_size)
    h, w = grid.shape
    data = da.map_blocks(_Burner(gdf, grid.transform, ignore_value), dtype=np.uint8,
                         chunks=(split_chunks(h, tile_size), split_chunks(w, tile_size)),
                         meta=np.empty((0, 0), np.uint8), name=name)
    return LabelResult(_labels_array(data, grid, table), table, report)


def _labels_array(data: da.Array, grid: GridSpec, table: ClassTable) -> xr.DataArray:
    arr = grid_dataarray(data, grid, 1, None, "labels")
    arr = arr.rio.write_nodata(table.ignore_value, encoded=False)
    arr.attrs["classes"] = list(table.names)
    return arr


def _map_codes(codes: np.ndarray, valid: np.ndarray, keys: np.ndarray, ids: np.ndarray,
               fill: int) -> np.ndarray:
    pos = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
    hit = valid & (keys[pos] == codes)
    return np.where(hit, ids[pos], fill).astype(np.uint8)


def burn_raster_labels(path: str | os.PathLike[str], grid: GridSpec, *,
                       values: Mapping[int, str] | None = None, tile_size: int,
                       ignore_value: int = 255, band: int = 1) -> LabelResult:
    """Put a raster of class codes on the base grid (nearest resampling) as class ids.

    The raster is co-registered like any categorical modality: read as stored when it is on
    the grid at an integer factor (a 20 m raster on a 10 m grid), else warped with nearest.
    Each coarse pixel is then repeated to ``factor x factor`` base pixels.

    Args:
        path: a raster of integer class codes.
        grid: target grid; labels are on its base resolution.
        values: raw code -> class name; several codes may share a name. Class ids follow the
            names' first appearance. Default: every code in the raster, named ``str(code)``
            in ascending order (this reads the raster once).
        tile_size: chunk side in base pixels; a multiple of the raster's factor.
        ignore_value: value of unlabelled pixels: codes not in ``values`` (noted in the
            report), the raster's nodata, pixels outside it, and pixels holding this value
            (a raster without a nodata tag that marks unlabelled pixels 255).
        band: 1-based band of the file holding the codes.

    Returns:
        A :class:`LabelResult` with a lazy ``labels`` array.

    Raises:
        GeommError: the raster cannot be read or has no CRS, or the tile size does not fit.
        LabelError: the raster holds more distinct codes than a class table can.
    """
    path = as_path(path)
    if not path.exists():
        raise LabelError(f"{path}: no such file; check `labels.raster` in the recipe (relative "
                         "paths are taken from the recipe's data root)")
    spec = ModalitySpec("labels", (BandSpec(path, "labels", index=band),), categorical=True)
    stack = coregister([spec], grid=grid, tile_size=tile_size, chunk_size=tile_size)
    layer = next(iter(stack.layers.values()))
    codes, valid = layer.data.data[0], layer.valid.data
    # the raster's codes (one read of the label band); its ignore value is unlabelled
    found = np.unique(da.unique(codes[valid]).compute())
    found = found[found != ignore_value]
    notes: list[str] = []
    if values is None:
        if not len(found):
            raise LabelError(f"{path}: no valid label pixel on the grid (all nodata, "
                             f"{ignore_value} (the ignore value) or outside); check the file "
                             "and the grid bounds")
        if len(found) > 255:
            raise LabelError(f"{path}: {len(found)} distinct codes, more than a class table "
                             "holds; is it a class raster? Map its codes with `values`")
        values = {c.item(): code_name(c) for c in found}
    else:
        unmapped = [c.item() for c in found if c.item() not in values]
        if unmapped:
            shown = ", ".join(map(str, unmapped[:10])) + (", ..." if len(unmapped) > 10 else "")
            one = len(unmapped) == 1
            notes.append(f"{path}: code{'' if one else 's'} {shown} {'is' if one else 'are'} "
                         f"not in `labels.values`: {'its' if one else 'their'} pixels are "
                         f"unlabelled (add {'it' if one else 'them'} to `values` to use "
                         f"{'it' if one else 'them'})")
    names = list(dict.fromkeys(values.values()))
    table = ClassTable.from_names(names, ignore_value=ignore_value)
    keys = np.array(sorted(values), dtype=np.result_type(codes.dtype, np.array(list(values))))
    ids = np.array([table.id_of(values[k.item()]) for k in keys], dtype=np.uint8)
    mapped = da.map_blocks(_map_codes, codes, valid, dtype=np.uint8, keys=keys, ids=ids,
                           fill=ignore_value)
    how = ("warped with nearest: " + "; ".join(layer.warped.values())) if layer.warped \
        else "read as stored"
    note = (f"{path} band {band}: {layer.data.attrs['resolution']:g}-unit pixels, "
            f"{how}, repeated {layer.factor}x{layer.factor}; {len(table)} classes")
    return LabelResult(_labels_array(upsample(mapped, layer.factor), grid, table), table,
                       LabelReport(str(path), notes=(note, *notes)))


def label_counts(labels: xr.DataArray, table: ClassTable) -> dict[str, int]:
    """Count the pixels of each class (``ignore_value`` and other values are not counted).

    Args:
        labels: class ids, numpy- or dask-backed.
        table: the classes the ids refer to.

    Returns:
        Class name -> pixel count, in id order (classes with no pixel give 0).
    """
    k = len(table)

    def count(block: np.ndarray) -> np.ndarray:
        b = block.ravel()
        return np.bincount(b[(b >= 0) & (b < k)].astype(np.intp), minlength=k)

    blocks = da.asarray(labels.data).to_delayed().ravel()
    totals = sum(dask.compute(*(dask.delayed(count)(b) for b in blocks)), np.zeros(k, np.int64))
    return {name: int(n) for name, n in zip(table.names, totals, strict=True)}


def read_scene_labels(path: str | os.PathLike[str], key: str, *,
                      classes: Sequence[str] | None = None,
                      colours: Sequence[str] | None = None) -> tuple[list[str], ClassTable]:
    """Read a scene-level multi-label JSON (BigEarthNet style): the names under ``key``.

    Returns:
        The scene's class names and the class table (``classes``, default the names found).

    Raises:
        LabelError: unreadable JSON, a missing key, or a name not among ``classes``.
    """
    import json

    p = Path(path)
    try:
        names = json.loads(p.read_text())[key]
    except (OSError, ValueError) as exc:
        raise LabelError(f"{p}: cannot read labels JSON ({exc})") from None
    except (KeyError, TypeError):
        raise LabelError(f"{p}: no key {key!r}; set labels.key to the key holding the list "
                         "of class names") from None
    if not isinstance(names, list):
        raise LabelError(f"{p}: key {key!r} holds {type(names).__name__}, not a list of names")
    names = [str(n) for n in names]
    table = ClassTable.from_names(list(classes) if classes else sorted(set(names)),
                                  list(colours) if colours else None)
    unknown = sorted(set(names) - set(table.names))
    if unknown:
        raise LabelError(f"{p}: class(es) {unknown} are not in labels.classes; add them to "
                         "the recipe's class list")
    return names, table
