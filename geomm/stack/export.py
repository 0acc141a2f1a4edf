"""``geomm export``: one layer of a tile store as a Cloud-Optimized GeoTIFF any GIS opens.

The store is Zarr v3, which GDAL 3.6 (Debian 12's, QGIS 3.22's) cannot read ("Unsupported
codec: bytes"); rewriting it as Zarr v2 would give up the format the store is built on for one
reader's sake, and a VRT cannot point into Zarr for that GDAL either. A COG export is a copy,
but it opens everywhere (QGIS, GDAL tools, PostGIS raster loaders, web viewers) with the
layer's CRS, transform, band names, nodata, valid mask, scale and offset. Python users read
the store directly: ``xr.open_zarr(store, group=LAYER)`` carries the CRS as a CF
``spatial_ref`` coordinate, so ``.rio.crs`` and ``.rio.transform()`` work as they are.
"""

from __future__ import annotations

import glob
import math
import os
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil

from geomm._lock import pid_alive
from geomm.classes import ClassTable
from geomm.errors import StoreError
from geomm.stack.store import open_store

__all__ = ["export_layer"]

ROWS = 1024
"""Rows read from the store per step (memory stays one strip of the layer)."""


def export_layer(store: str | Path, layer: str, out: str | Path, *,
                 overwrite: bool = False) -> Path:
    """Write layer ``layer`` of the tile store at ``store`` (``visible/10m``, or ``labels``
    for the label raster) to the COG ``out``.

    The valid mask becomes the COG's mask band (and nodata where the layer has one); band
    names become band descriptions; the layer's scale and offset are kept. The label raster
    carries the class table (``GEOMM_CLASSES`` tag, ``class_<id>`` band tags and a colour
    table), so ``geomm evaluate`` and a GIS name its classes. Written under a
    temporary name and renamed when complete.

    Raises:
        StoreError: no such layer, or ``out`` exists and ``overwrite`` is not set.
    """
    st = open_store(Path(store))
    out = Path(out)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise StoreError(f"{out}: geomm export writes a GeoTIFF (COG); name it .tif")
    style = out.with_suffix(".qml")  # the labels' class names and colours, for QGIS
    for path in (out, style) if layer == "labels" else (out,):
        if path.exists() and not overwrite:
            raise StoreError(f"{path} exists; pass --overwrite to replace it, or choose another "
                             "path")
    if layer == "labels":
        if st.manifest.get("label_kind") not in ("vector", "raster"):
            raise StoreError(f"{st.path}: the store has no label raster; export a layer: "
                             f"{', '.join(st.layer_keys)}")
        ds, var, factor = st.base(), "labels", 1
        nodata: float | None = float(st.ignore_value)
        names: list[str] = ["labels"]
        scale, offset = 1.0, 0.0
        resampling = "MODE"  # overviews of classes: the most frequent, not the top-left one
        # the class table, as a map's classes.tif carries it: `geomm evaluate` and GIS read it
        table = ClassTable.from_dict(st.manifest["classes"])
        tags, band_tags, cmap = table.raster_tags()
        colormap: dict[int, tuple[int, int, int, int]] | None = cmap
    else:
        if layer not in st.layer_keys:
            raise StoreError(f"{st.path}: no layer {layer!r}; layers are "
                             f"{', '.join(st.layer_keys)} (or labels)")
        ds, var, factor = st.layer(layer), "data", st.factor(layer)
        attrs = ds["data"].attrs
        nodata = attrs.get("nodata")
        names = [str(b) for b in ds["band"].values]
        scale, offset = float(attrs.get("scale", 1.0)), float(attrs.get("offset", 0.0))
        tags, band_tags, colormap = {}, {}, None
        resampling = "MODE" if attrs.get("categorical") else "AVERAGE"
    data = ds[var]
    if data.ndim == 2:
        data = data.expand_dims("band")
    count, height, width = data.shape
    profile = {"driver": "GTiff", "count": count, "height": height, "width": width,
               "dtype": data.dtype.name, "crs": st.grid.crs,
               "transform": st.grid.transform_at(factor), "tiled": True, "blockxsize": 512,
               "blockysize": 512, "compress": "deflate", "BIGTIFF": "IF_SAFER"}
    if nodata is not None and not (math.isnan(nodata) and data.dtype.kind != "f"):
        profile["nodata"] = nodata
    out.parent.mkdir(parents=True, exist_ok=True)
    _drop_dead_partials(out, style)
    plain = out.with_name(f".{out.name}.{os.getpid()}.plain.tif")
    part = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), \
                rasterio.open(plain, "w", **profile) as dst:
            for r0 in range(0, height, ROWS):
                r1 = min(height, r0 + ROWS)
                win = ((r0, r1), (0, width))
                dst.write(np.asarray(data[:, r0:r1, :].values), window=win)
                valid = ds["valid"][r0:r1, :].values if var == "data" else \
                    ds["labels"][r0:r1, :].values != st.ignore_value
                dst.write_mask((valid * 255).astype(np.uint8), window=win)
            for i, name in enumerate(names, 1):
                dst.set_band_description(i, name)
            dst.scales, dst.offsets = (scale,) * count, (offset,) * count
            dst.update_tags(geomm_store=str(st.path), geomm_layer=layer, **tags)
            if band_tags:
                dst.update_tags(1, **band_tags)
            if colormap is not None:
                dst.write_colormap(1, colormap)
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
            rasterio.shutil.copy(plain, part, driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=512,
                                 OVERVIEWS="AUTO", RESAMPLING=resampling)
        if layer == "labels":  # QGIS applies <name>.qml on opening <name>.tif
            staged_style = out.with_name(f".{style.name}.{os.getpid()}.partial")
            staged_style.write_text(table.qml(st.ignore_value))
            os.replace(staged_style, style)
        os.replace(part, out)
    finally:
        plain.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
        out.with_name(f".{style.name}.{os.getpid()}.partial").unlink(missing_ok=True)
    return out


def _drop_dead_partials(*finals: Path) -> None:
    """Remove what killed exports of ``finals`` left beside them (``.<name>.<pid>.*``: the
    plain GeoTIFF, the partial COG and GDAL's overview temporaries) where that pid is gone."""
    for final in finals:
        for p in final.parent.glob(f".{glob.escape(final.name)}.*"):
            pid = p.name[len(final.name) + 2:].split(".")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                p.unlink(missing_ok=True)
