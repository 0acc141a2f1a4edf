"""Small files written beside a predicted class map: QGIS style, STAC Item and PNG quicklook.

The predict stage writes ``classes.tif`` (uint8, nodata 255, colour table, ``GEOMM_CLASSES``
tag), ``probabilities.tif`` and ``confidence.tif``; :func:`write_qml`, :func:`write_stac_item`
and :func:`write_quicklook` describe them for QGIS, STAC catalogues and humans. Every file is
written atomically (a temporary sibling, then ``os.replace``). Only rasterio, numpy and
matplotlib's Agg canvas are imported; no pyplot global state.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds, transform_geom

from geomm._files import follow_umask
from geomm.classes import RGB, ClassTable, default_colours
from geomm.errors import GeommError, LabelError

__all__ = ["AssetInfo", "SidecarError", "write_qml", "write_quicklook", "write_stac_item"]

CLASS_NODATA = 255
"""Nodata value of the predicted ``classes.tif``."""
COG = "image/tiff; application=geotiff; profile=cloud-optimized"
STAC_VERSION = "1.1.0"
PROJ_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
CLASS_EXT = "https://stac-extensions.github.io/classification/v2.0.0/schema.json"
RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
_EDGE_POINTS = 21
_SLUG = re.compile(r"[^0-9A-Za-z_-]+")


class SidecarError(GeommError, ValueError):
    """A sidecar file cannot be written from the given raster, table or metadata."""


@dataclass(frozen=True)
class AssetInfo:
    """One STAC asset of a prediction: a file beside the Item JSON."""

    href: str
    """Path of the file relative to the Item JSON, e.g. ``"./classes.tif"``."""
    title: str
    """Human-readable title."""
    roles: tuple[str, ...] = ("data",)
    """STAC asset roles, e.g. ``("data",)``, ``("overview",)``, ``("metadata",)``."""
    media_type: str = COG
    """Media type written as the asset's ``type``."""
    classes: bool = False
    """Attach ``classification:classes`` (the class table) to this asset."""
    bands: tuple[str, ...] | None = None
    """Band names in order (STAC 1.1 ``bands``), e.g. the class names of probabilities."""
    raster_bands: tuple[Mapping[str, Any], ...] | None = None
    """``raster:bands`` entries (data type, nodata, scale, offset), one per band."""


def _atomic_write(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise SidecarError(f"{path}: cannot write here ({exc.strerror}); "
                           "choose a writable output folder") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        follow_umask(Path(tmp))  # mkstemp made it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _open(path: str | Path) -> Any:
    try:
        return rasterio.open(path)
    except RasterioError as exc:
        why = (f"not a raster rasterio can open ({exc})" if Path(path).exists() else
               "raster not found; write the prediction first or fix the path")
        raise SidecarError(f"{path}: {why}") from None


def write_qml(path: str | Path, table: ClassTable, *, nodata: int = CLASS_NODATA) -> Path:
    """Write a QGIS 3 layer style (paletted renderer on band 1) for a class raster.

    Args:
        path: The ``.qml`` file; name it like the raster (``classes.qml``) and QGIS
            applies it when the raster is opened.
        table: Class names and colours; one palette entry per class.
        nodata: Class-raster value drawn transparent (no palette entry).

    Returns:
        The path written.
    """
    return _atomic_write(path, table.qml(nodata).encode("utf-8"))


def _footprint(src: Any) -> dict[str, Any]:
    """Counter-clockwise outline of the pixel grid (rotation included), edges densified."""
    h, w = src.height, src.width
    ring: list[tuple[float, float]] = []
    for (c0, r0), (c1, r1) in (((0, 0), (0, h)), ((0, h), (w, h)), ((w, h), (w, 0)),
                               ((w, 0), (0, 0))):
        for t in np.linspace(0.0, 1.0, _EDGE_POINTS)[:-1]:
            ring.append(src.transform * (c0 + (c1 - c0) * t, r0 + (r1 - r0) * t))
    ring.append(ring[0])
    if src.transform.determinant > 0:  # south-up grid: keep the ring counter-clockwise
        ring.reverse()
    return {"type": "Polygon", "coordinates": [ring]}


def _stac_datetime(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise SidecarError(f"properties.datetime {value!r} is not an RFC 3339 timestamp; "
                               "write e.g. '2024-06-01T10:30:00Z'") from None
    if not isinstance(value, datetime):
        raise SidecarError(f"properties.datetime {value!r} must be a string or datetime")
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def _stac_classes(table: ClassTable, nodata: int) -> list[dict[str, Any]]:
    """``classification:classes`` v2: ``name`` is a ``[0-9A-Za-z_-]`` slug, ``title`` the name."""
    out: list[dict[str, Any]] = []
    seen = {"nodata"}
    for i, title in enumerate(table.names):
        name = _SLUG.sub("_", title).strip("_") or f"class_{i}"
        name = f"{name}_{i}" if name in seen else name
        seen.add(name)
        out.append({"value": i, "name": name, "title": title,
                    "color_hint": table.hex_colour(i)[1:].upper()})
    out.append({"value": nodata, "name": "nodata", "title": "No data", "nodata": True})
    return out


def _check_href(key: str, href: str) -> str:
    if PurePosixPath(href).is_absolute() or PureWindowsPath(href).is_absolute():
        raise SidecarError(f"asset {key!r}: href {href!r} is an absolute path; give it "
                           "relative to the Item JSON, e.g. './classes.tif'")
    return href.replace("\\", "/")


def write_stac_item(path: str | Path, *, item_id: str, raster: str | Path,
                    assets: Mapping[str, AssetInfo], table: ClassTable,
                    properties: Mapping[str, Any] | None = None,
                    nodata: int = CLASS_NODATA) -> Path:
    """Write a STAC 1.1.0 Item (projection and classification extensions) for a prediction.

    Geometry and bbox are the footprint of ``raster`` in EPSG:4326 (edges densified);
    ``proj:*`` fields describe its grid. ``datetime`` comes from ``properties`` or, if absent,
    is the time of writing, and ``geomm:datetime_source`` says which (``properties`` unless
    ``properties`` name their own source). geomm's predictions always give the acquisition
    (:func:`geomm.predict._stacitem.acquisition`), never the time of writing.

    Args:
        path: The Item JSON file; asset hrefs are relative to its folder.
        item_id: The Item ``id``.
        raster: A raster on the grid of the assets (usually ``classes.tif``).
        assets: Asset key to :class:`AssetInfo`.
        table: Class table for the assets with ``classes=True``.
        properties: Extra Item properties; they override the computed ones.
        nodata: Class-raster value listed as the ``nodata: true`` class.

    Returns:
        The path written.

    Raises:
        SidecarError: ``raster`` is missing or has no CRS, an href is absolute, or
            ``properties["datetime"]`` is not a timestamp.
    """
    props = dict(properties or {})
    with _open(raster) as src:
        if src.crs is None:
            raise SidecarError(f"{raster}: raster has no CRS; a STAC Item needs a georeferenced "
                               "grid (write the prediction with the input CRS)")
        crs = src.crs
        geom = transform_geom(crs, "EPSG:4326", _footprint(src))
        proj: dict[str, Any] = {"proj:shape": [src.height, src.width],
                                "proj:transform": list(src.transform)[:6],
                                "proj:bbox": list(src.bounds)}
        bounds = src.bounds
    epsg = crs.to_epsg()
    if epsg is not None:
        proj["proj:code"] = f"EPSG:{epsg}"
    else:
        proj["proj:wkt2"] = crs.to_wkt(version="WKT2_2019")
    if geom["type"] == "Polygon":  # round to 1e-9 degrees, the bbox outwards
        xs, ys = zip(*geom["coordinates"][0], strict=True)
        bbox = [math.floor(min(xs) * 1e9) / 1e9, math.floor(min(ys) * 1e9) / 1e9,
                math.ceil(max(xs) * 1e9) / 1e9, math.ceil(max(ys) * 1e9) / 1e9]
        geom = {"type": "Polygon",
                "coordinates": [[[round(x, 9), round(y, 9)] for x, y in zip(xs, ys, strict=True)]]}
    else:  # cut at the antimeridian: GDAL gives west > east
        bbox = list(transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=_EDGE_POINTS))
    source = str(props.get("geomm:datetime_source", "properties"))
    for key in ("start_datetime", "end_datetime"):
        if props.get(key) is not None:
            props[key] = _stac_datetime(props[key])
    if props.get("datetime") is not None:
        when: str | None = _stac_datetime(props["datetime"])
    elif "datetime" in props and props.get("start_datetime") and props.get("end_datetime"):
        when = None
    else:
        when, source = _stac_datetime(datetime.now(UTC)), "written"
    item_props = {**proj, **props, "datetime": when, "geomm:datetime_source": source}
    stac_assets: dict[str, Any] = {}
    for key, info in assets.items():
        asset: dict[str, Any] = {"href": _check_href(key, info.href), "type": info.media_type,
                                 "title": info.title, "roles": list(info.roles)}
        if info.bands is not None:
            asset["bands"] = [{"name": b} for b in info.bands]
        if info.raster_bands is not None:
            asset["raster:bands"] = [dict(b) for b in info.raster_bands]
        if info.classes:
            asset["classification:classes"] = _stac_classes(table, nodata)
        stac_assets[key] = asset
    extensions = [PROJ_EXT] + ([CLASS_EXT] if any(a.classes for a in assets.values()) else []) \
        + ([RASTER_EXT] if any(a.raster_bands for a in assets.values()) else [])
    item = {"type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": extensions,
            "id": item_id, "geometry": geom, "bbox": bbox, "properties": item_props,
            "links": [], "assets": stac_assets}
    return _atomic_write(path, (json.dumps(item, indent=2) + "\n").encode("utf-8"))


def _styles(src: Any, table: ClassTable | None) -> dict[int, tuple[str, RGB]]:
    """Class id to (name, colour): the table, else ``GEOMM_CLASSES``, else tags + colour table."""
    if table is None and "GEOMM_CLASSES" in src.tags():
        try:
            table = ClassTable.from_dict(json.loads(src.tags()["GEOMM_CLASSES"]))
        except (ValueError, LabelError):
            table = None
    if table is not None:
        return {i: (n, table.colours[i]) for i, n in enumerate(table.names)}
    try:
        cmap: Mapping[int, Sequence[int]] = src.colormap(1)
    except ValueError:
        cmap = {}
    names = {int(k[6:]): v for k, v in src.tags(1).items()
             if k.startswith("class_") and k[6:].isdigit()}
    fallback = default_colours(256)
    return {i: (names.get(i, f"class {i}"),
                (cmap[i][0], cmap[i][1], cmap[i][2]) if i in cmap else fallback[i])
            for i in range(256)}


def _caption(crs: Any, pixel: float, size: tuple[int, int],
             scale: float) -> tuple[str, float | None]:
    """Caption text (CRS, pixel size, raster size) and metres per CRS unit (None: no bar)."""
    auth = crs.to_authority() if crs is not None else None
    label = "no CRS" if crs is None else (":".join(auth) if auth else "custom CRS")
    if crs is None or crs.is_geographic:
        unit, to_m = ("px" if crs is None else "°"), None
    else:
        unit, to_m = crs.linear_units_factor[0], float(crs.linear_units_factor[1])
    text = f"{label}  ·  {pixel:.6g} {unit} pixels  ·  {size[0]} × {size[1]} px"
    return text + (f"  ·  drawn at 1/{scale:.3g} resolution" if scale > 1 else ""), to_m


def _nice_length(target: float) -> float:
    """Largest 1, 2 or 5 times a power of ten not above ``target``."""
    exp = 10.0 ** math.floor(math.log10(target))
    return next(m * exp for m in (5, 2, 1) if m * exp <= target)


def write_quicklook(classes: str | Path, path: str | Path, *, table: ClassTable | None = None,
                    max_size: int = 1024, title: str | None = None) -> Path:
    """Render a class raster to a PNG with a legend, a scale bar and a CRS/resolution caption.

    The raster is read decimated (nearest, from its overviews when it has them) to at most
    ``max_size`` pixels on its long side, so memory stays small for any raster size. The
    legend lists the classes present in that decimated read; nodata is drawn white.

    Args:
        classes: Single-band class raster (``classes.tif``).
        path: The PNG file.
        table: Class names and colours; ``None`` reads the ``GEOMM_CLASSES`` tag, else the
            ``class_<id>`` band tags and the colour table.
        max_size: Longest side, in pixels, of the map drawn.
        title: Figure title; defaults to the raster's file name.

    Returns:
        The path written.

    Raises:
        SidecarError: ``classes`` is missing, unreadable or not single-band, or ``max_size``
            is below 16.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if max_size < 16:
        raise SidecarError(f"max_size {max_size} is too small for a quicklook; use 16 or more")
    with _open(classes) as src:
        if src.count != 1:
            raise SidecarError(f"{classes}: {src.count} bands; a quicklook needs the "
                               "single-band class raster (classes.tif)")
        scale = max(1.0, max(src.height, src.width) / max_size)
        shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
        if not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
            raise SidecarError(f"{classes}: {src.dtypes[0]} pixels; a quicklook needs the "
                               "integer class raster (classes.tif), not probabilities")
        data = src.read(1, out_shape=shape, resampling=Resampling.nearest)
        styles = _styles(src, table)
        nodata = src.nodata
        crs = src.crs
        pixel = math.hypot(src.transform.a, src.transform.d)
        size = (src.width, src.height)
    valid = (data >= 0) if nodata is None else (data >= 0) & (data != nodata)
    lut = np.zeros((int(data.max(initial=0)) + 1, 4), np.uint8)
    shown = {int(v): styles.get(int(v), (f"class {v}", (128, 128, 128)))
             for v in np.unique(data[valid])}
    for v, (_, rgb) in shown.items():
        lut[v] = (*rgb, 255)
    rgba = lut[data.astype(np.intp)]
    rgba[~valid] = 0
    h, w = shape
    zoom = max_size / max(h, w)
    fig = Figure(figsize=(w * zoom / 100 + 0.2, h * zoom / 100 + 0.2), dpi=100,
                 facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(rgba, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("0.75")
    ax.set_title(title if title is not None else Path(classes).name, fontsize=11)
    handles = [Patch(facecolor="#{:02x}{:02x}{:02x}".format(*rgb), edgecolor="0.3", label=name)
               for name, rgb in shown.values()]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  borderaxespad=0.0, frameon=False, fontsize=9,
                  ncol=math.ceil(len(handles) / 30))
    caption, to_m = _caption(crs, pixel, size, scale)
    ax.text(0.0, -0.02, caption, transform=ax.transAxes, va="top", fontsize=8)
    if to_m:  # scale bar, a quarter of the map wide at most
        px_m = pixel * to_m * scale
        length = _nice_length(0.25 * w * px_m)
        x0, y0 = 0.04 * w, 0.94 * h
        ax.plot([x0, x0 + length / px_m], [y0, y0], color="black", linewidth=3,
                solid_capstyle="butt")
        ax.text(x0, y0 - 0.015 * h, f"{length / 1000:g} km" if length >= 1000
                else f"{length:g} m", fontsize=8, va="bottom",
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", pad_inches=0.1)
    return _atomic_write(path, buf.getvalue())
