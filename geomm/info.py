"""Describe a raster or vector file at a glance: the ``geomm info`` command.

Only rasterio and pyogrio are imported (no torch, torchgeo or dask), so this stays fast:
``describe(path)`` gives a :class:`RasterInfo` or :class:`VectorInfo`, ``format_info`` its text.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyogrio
import pyogrio.raw
import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from geomm._remote import (
    AnyPath,
    RemotePath,
    as_path,
    gdal_path,
    remote_env,
    remote_vector_env,
    why_unreadable,
)
from geomm.errors import NotGeodataError

__all__ = ["RasterInfo", "VectorInfo", "describe", "format_info"]

_WKT_NAMES = {n.upper(): n for n in ("Point", "LineString", "Polygon", "MultiPoint",
                                     "MultiLineString", "MultiPolygon", "GeometryCollection")}
_NOT_GEODATA = "{path}: not a raster or vector dataset GDAL/OGR can read ({reason}); {fix}"


@dataclass(frozen=True)
class RasterInfo:
    """What a GIS user wants to know about a raster file before using it."""

    path: str
    """The file described."""
    driver: str
    """GDAL driver short name, e.g. ``"GTiff"`` or ``"JP2OpenJPEG"``."""
    crs: str | None
    """``"EPSG:xxxx"`` when an EPSG code matches, else the CRS name; ``None`` without a CRS."""
    epsg: int | None
    """EPSG code of the CRS, or ``None``."""
    resolution: tuple[float, float]
    """Pixel size ``(x, y)`` in CRS units."""
    width: int
    """Columns."""
    height: int
    """Rows."""
    bounds: tuple[float, float, float, float]
    """``(left, bottom, right, top)`` in CRS units."""
    count: int
    """Number of bands."""
    dtypes: tuple[str, ...]
    """Data type of each band, e.g. ``"uint16"``."""
    descriptions: tuple[str | None, ...]
    """Description (band name) of each band, ``None`` where unset."""
    nodata: tuple[float | None, ...]
    """Nodata value of each band, ``None`` where unset."""
    block_size: tuple[int, int]
    """Block (tile or strip) size of band 1 as ``(width, height)`` in pixels."""
    overviews: tuple[int, ...]
    """Overview decimation factors of band 1, e.g. ``(2, 4, 8)``."""
    is_cog: bool
    """Whether the file is a Cloud Optimized GeoTIFF (see :func:`describe`)."""
    gcps: int = 0
    """Ground control points of a file georeferenced by them instead of a geotransform."""
    gcp_crs: str | None = None
    """CRS of those points, as :attr:`crs`."""
    georeferenced: bool = True
    """False where the file has no geotransform (nor control points): its bounds are pixel
    numbers, rows counted downwards."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (``kind: "raster"``; NaN nodata becomes ``"nan"``)."""
        doc = {"kind": "raster", **asdict(self)}
        doc["nodata"] = ["nan" if v is not None and math.isnan(v) else v for v in self.nodata]
        return doc


@dataclass(frozen=True)
class VectorInfo:
    """What a GIS user wants to know about a vector file before using it."""

    path: str
    """The file described."""
    driver: str
    """OGR driver short name, e.g. ``"GPKG"`` or ``"GeoJSON"``."""
    layer: str
    """Name of the layer described (the first one with geometries)."""
    layer_count: int
    """Number of layers in the file."""
    crs: str | None
    """``"EPSG:xxxx"`` when an EPSG code matches, else the CRS name; ``None`` without a CRS."""
    epsg: int | None
    """EPSG code of the CRS, or ``None``."""
    feature_count: int
    """Number of features in the layer."""
    geometry_types: tuple[str, ...]
    """Geometry type(s) of the layer, e.g. ``("Polygon",)``."""
    fields: dict[str, str]
    """Attribute field name -> data type, in file order."""
    bounds: tuple[float, float, float, float] | None
    """Total ``(minx, miny, maxx, maxy)`` in CRS units, ``None`` for an empty layer."""

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (``kind: "vector"``)."""
        return {"kind": "vector", **asdict(self)}


def describe(path: str | Path) -> RasterInfo | VectorInfo:
    """Describe a raster (tried first, with rasterio) or a vector (with pyogrio).

    A file is a Cloud Optimized GeoTIFF (``is_cog``) when its driver is GTiff, it is tiled (or
    is a single block of at most 512 x 512 px), it has no external ``.ovr`` overviews, and GDAL
    reports ``LAYOUT=COG`` in its IMAGE_STRUCTURE metadata: GDAL >= 3.1 (the one rasterio
    bundles) does so when the file carries the COG ghost header and IFD/data order, whatever
    wrote it. A tiled GeoTIFF without that layout is not a COG: its IFDs may sit anywhere, so
    HTTP range readers cannot rely on it.

    Args:
        path: A raster or vector file.

    Returns:
        A :class:`RasterInfo` or a :class:`VectorInfo`.

    Raises:
        NotGeodataError: ``path`` does not exist, neither GDAL nor OGR can open it, or OGR opens
            it only as a table without geometries (a plain CSV or text file).
    """
    if not str(path).strip():
        raise NotGeodataError("an empty path: give a raster or vector file")
    path = as_path(path)
    if not path.exists():
        raise NotGeodataError(f"{path}: no such file")
    with remote_env(path), remote_vector_env(path):
        return _describe(path)


def _describe(path: AnyPath) -> RasterInfo | VectorInfo:
    try:
        return _describe_raster(path)
    except RasterioError:
        pass
    try:
        with warnings.catch_warnings():  # pyogrio's RuntimeWarning repeats what it raises
            warnings.simplefilter("ignore", RuntimeWarning)
            layers = pyogrio.list_layers(gdal_path(path))
    except Exception as exc:  # pyogrio raises DataSourceError, or others for odd inputs
        why = why_unreadable(path) if isinstance(path, RemotePath) else ""
        if why.startswith("HTTP 2"):  # the server sends it: it is not geodata
            raise NotGeodataError(f"{path}: the server sends it ({why}) but no GDAL raster or "
                                  "OGR vector driver recognises it; check that the URL points "
                                  "at the raster or vector file itself") from exc
        if why:
            raise NotGeodataError(f"{path}: cannot read it ({why}); check the URL") from exc
        if "Unable to open" in str(exc) and ".shx" in str(exc).lower():  # a part is missing
            raise NotGeodataError(f"{path}: a shapefile without its .shx index; copy the "
                                  "shapefile with all its parts (.shp, .shx, .dbf, .prj), or "
                                  "set SHAPE_RESTORE_SHX=YES to rebuild the index") from exc
        raise NotGeodataError(_NOT_GEODATA.format(
            path=path, reason="no GDAL raster or OGR vector driver recognises it",
            fix="check the file is complete and in a format `gdalinfo` or `ogrinfo` opens",
        )) from exc
    with_geometry = [str(name) for name, geom_type in layers if geom_type is not None]
    if not with_geometry:
        raise NotGeodataError(_NOT_GEODATA.format(
            path=path, fix="give a raster, or a vector file with geometries",
            reason="OGR opens it as a table with no geometry column" if len(layers)
            else "OGR finds no layer in it"))
    return _describe_vector(path, with_geometry[0], len(layers))


def _crs_label(crs: CRS | None) -> tuple[str | None, int | None]:
    """``(label, epsg)`` of a CRS: ``"EPSG:xxxx"`` when one matches, else its name."""
    if not crs:  # None, or a dataset CRS that is empty
        return None, None
    epsg = crs.to_epsg()
    if epsg is not None:
        return f"EPSG:{epsg}", epsg
    try:
        from pyproj import CRS as ProjCRS

        name = ProjCRS.from_wkt(crs.to_wkt()).name
    except Exception:  # the name is a nicety: fall back to the PROJ string
        name = None
    if name and name != "unknown":
        return name, None
    return crs.to_proj4() or crs.to_string(), None


def _describe_raster(path: AnyPath) -> RasterInfo:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(gdal_path(path)) as src:
            if cut := _truncated(src, path):
                raise NotGeodataError(f"{path}: truncated ({cut}); copy or download it again")
            crs, epsg = _crs_label(src.crs)
            block_h, block_w = src.block_shapes[0]
            return RasterInfo(
                path=str(path), driver=src.driver, crs=crs, epsg=epsg,
                resolution=(float(src.res[0]), float(src.res[1])),
                width=src.width, height=src.height, bounds=_box(src.bounds),
                count=src.count, dtypes=tuple(src.dtypes),
                descriptions=tuple(d or None for d in src.descriptions),
                nodata=tuple(None if v is None else float(v) for v in src.nodatavals),
                block_size=(block_w, block_h), overviews=tuple(src.overviews(1)),
                is_cog=_is_cog(src),
                georeferenced=not (src.transform.is_identity and not src.gcps[0]),
                **_gcps(src),
            )


def _truncated(src: Any, path: AnyPath) -> str | None:
    """Why a local GeoTIFF is cut short: the last block of a band ends past the end of the
    file (an interrupted copy or download), else None. Writers put a band's last block at
    its end, so one block per band tells; GDAL itself opens such a file without a word."""
    if src.driver != "GTiff" or isinstance(path, RemotePath):
        return None
    size = Path(str(path)).stat().st_size
    bh, bw = src.block_shapes[0]
    col, row = (src.width - 1) // bw, (src.height - 1) // bh
    bands = range(1, src.count + 1) if src.interleaving and src.interleaving.name == "band" \
        else (1,)
    for b in bands:
        try:
            end = int(src.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=b)) + int(
                src.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=b))
        except (TypeError, ValueError):  # a sparse block, or no such metadata: cannot tell
            continue
        if end > size:
            return f"band {b}'s last block ends at byte {end}, the file has {size}"
    return None


def _gcps(src: Any) -> dict[str, Any]:
    """``gcps`` and ``gcp_crs`` of a file georeferenced by control points only."""
    points, crs = src.gcps
    if not points or not src.transform.is_identity:
        return {}
    return {"gcps": len(points), "gcp_crs": _crs_label(crs)[0] if crs else None}


def _is_cog(src: Any) -> bool:
    """Apply the COG rule documented in :func:`describe` to an open rasterio dataset."""
    if src.driver != "GTiff":
        return False
    block_h, block_w = src.block_shapes[0]
    tiled = block_w != src.width  # GDAL gives a striped TIFF blocks as wide as the raster
    single_block = (block_h >= src.height and block_w >= src.width
                    and max(src.width, src.height) <= 512)
    external_ovr = any(str(f).lower().endswith(".ovr") for f in src.files)
    if not (tiled or single_block) or external_ovr:
        return False
    layout = src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
    return layout is not None and layout.upper() == "COG"


def _describe_vector(path: AnyPath, layer: str, layer_count: int) -> VectorInfo:
    meta = pyogrio.read_info(gdal_path(path), layer=layer, force_feature_count=True,
                             force_total_bounds=True)
    crs, epsg = _crs_label(CRS.from_user_input(meta["crs"]) if meta.get("crs") else None)
    bounds = meta.get("total_bounds")
    if bounds is not None and not all(math.isfinite(float(b)) for b in bounds):
        bounds = None  # an empty layer has NaN bounds
    return VectorInfo(
        path=str(path), driver=str(meta["driver"]), layer=layer, layer_count=layer_count,
        crs=crs, epsg=epsg, feature_count=int(meta["features"]),
        geometry_types=_geometry_types(path, layer, str(meta["geometry_type"])),
        fields={str(n): "str" if t == "object" else str(t)  # pyogrio reads strings as object
                for n, t in zip(meta["fields"], meta["dtypes"], strict=True)},
        bounds=None if bounds is None else _box(bounds),
    )


def _geometry_types(path: AnyPath, layer: str, declared: str) -> tuple[str, ...]:
    """The declared geometry type or, for a mixed ("Unknown") layer, the distinct ones found."""
    if "Unknown" not in declared:
        return (declared,)
    try:
        sql = 'SELECT DISTINCT OGR_GEOMETRY FROM "{}"'.format(layer.replace('"', '""'))
        found = pyogrio.raw.read(gdal_path(path), sql=sql, sql_dialect="OGRSQL",
                                 read_geometry=False)[3][0]
    except Exception:  # the scan is a nicety: keep what the layer declares
        return (declared,)
    names = sorted({_WKT_NAMES.get(str(g), str(g)) for g in found if g is not None})
    return tuple(names) or (declared,)


def _box(values: Any) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in values)
    return x0, y0, x1, y1


def _num(value: float) -> str:
    return f"{value:.10g}"


def format_info(info: RasterInfo | VectorInfo) -> str:
    """Format a description as a compact, aligned text block for a terminal.

    Args:
        info: What :func:`describe` returned.

    Returns:
        Several lines: a header naming the path, then ``key  value`` rows.
    """
    rows: list[tuple[str, str]] = [("driver", info.driver),
                                   ("crs", info.crs or "none (not georeferenced)")]
    if isinstance(info, RasterInfo):
        nodata = ["none" if v is None else _num(v) for v in info.nodata]
        rows += [
            ("size",
             f"{info.width} x {info.height} px, {info.count} band{'s' * (info.count > 1)}"),
            ("resolution", f"{_num(info.resolution[0])} x {_num(info.resolution[1])}"),
            ("bounds", " ".join(_num(b) for b in info.bounds) + "  (left bottom right top)"),
            ("nodata", nodata[0] if len(set(nodata)) == 1 else ", ".join(nodata)),
            ("block", f"{info.block_size[0]} x {info.block_size[1]} px"),
            ("overviews", ", ".join(str(o) for o in info.overviews) or "none"),
            ("COG", "yes" if info.is_cog else "no"),
        ]
        if info.gcps:
            rows[1] = ("crs", f"{info.gcp_crs or 'none'} (of its control points)")
            rows.insert(2, ("georeferencing", f"{info.gcps} ground control points, no "
                            "geotransform: the bounds are pixel numbers; warp it "
                            "(gdalwarp -t_srs CRS FILE OUT.tif) before using it"))
        elif not info.georeferenced:
            rows.insert(2, ("georeferencing", "none (no geotransform): the bounds are pixel "
                            "numbers, rows counted downwards; georeference it (gdal_translate "
                            "-a_srs CRS -a_ullr ULX ULY LRX LRY FILE OUT.tif) before using it"))
        for i, (dtype, desc) in enumerate(zip(info.dtypes, info.descriptions, strict=True), 1):
            rows.append((f"band {i}", f"{dtype:<8} {desc or '-'}"))
    else:
        more = info.layer_count - 1
        layer = info.layer + (f"  (+{more} more layer{'s' * (more > 1)})" if more else "")
        rows += [
            ("layer", layer),
            ("features", str(info.feature_count)),
            ("geometry", ", ".join(info.geometry_types)),
            ("bounds", "none" if info.bounds is None else
             " ".join(_num(b) for b in info.bounds) + "  (minx miny maxx maxy)"),
            ("fields", ", ".join(f"{n} ({t})" for n, t in info.fields.items()) or "none"),
        ]
    width = max(len(k) for k, _ in rows)
    return "\n".join([f"{info.path}"] + [f"  {k:<{width}}  {v}" for k, v in rows])
