"""The map files of a prediction: class, probability and confidence COGs, and sidecars."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geomm.classes import ClassTable
from geomm.predict._stacitem import Acquisition
from geomm.predict.blend import Window
from geomm.predict.cogout import RasterLayout, StreamedRaster

__all__ = ["MapWriter", "write_sidecars"]


class MapWriter:
    """Turns blended probability windows into the output rasters (in a work folder).

    Args:
        work: folder the files are made in.
        grid: the base grid (:class:`~geomm.stack.grid.GridSpec`).
        table: the model's class table (names, colours, ignore value = nodata).
        probabilities: ``"uint8"`` (0-255, scale 1/255, a mask band where nothing was
            predicted), ``"float32"`` (NaN there) or ``"none"``.
    """

    def __init__(self, work: Path, grid: Any, table: ClassTable, probabilities: str) -> None:
        self.work, self.grid, self.table = work, grid, table
        self.k = len(table)
        self.nodata = int(table.ignore_value)
        self.counts = np.zeros(self.k, dtype=np.int64)
        names = list(table.names)
        common = {"height": grid.height, "width": grid.width, "crs": grid.crs,
                  "transform": grid.transform}
        tags, band_tags, cmap = table.raster_tags()
        classes_json = tags["GEOMM_CLASSES"]
        self.sinks: dict[str, StreamedRaster] = {}
        self.sinks["classes.tif"] = StreamedRaster(
            work / "classes.tif", work, **common, layout=RasterLayout(
                1, "uint8", self.nodata, "mode", "DEFLATE", descriptions=("class",),
                tags=tags, band_tags={1: band_tags}, colormap=cmap))
        self.prob_kind = probabilities
        if probabilities != "none":
            f32 = probabilities == "float32"
            self.sinks["probabilities.tif"] = StreamedRaster(
                work / "probabilities.tif", work, **common, layout=RasterLayout(
                    self.k, "float32" if f32 else "uint8", float("nan") if f32 else None,
                    "average", "ZSTD", 1, descriptions=tuple(names),
                    tags={"GEOMM_CLASSES": classes_json},
                    scale=None if f32 else 1 / 255, mask=not f32))
        self.sinks["confidence.tif"] = StreamedRaster(
            work / "confidence.tif", work, **common, layout=RasterLayout(
                1, "uint8", 0, "average", "ZSTD", 1, descriptions=("confidence",),
                tags={"GEOMM_CLASSES": classes_json}, scale=1 / 255))

    def write(self, win: Window, probs: np.ndarray, valid: np.ndarray, *,
              last_in_row: bool) -> None:
        """Write one finished window: ``probs`` (K, h, w) over ``win.out``, ``valid`` (h, w)."""
        r0, _, c0, _ = win.out
        best = _argmax(probs)
        best[~valid] = self.nodata
        self.counts += np.bincount(best[valid], minlength=self.k)[:self.k]
        self.sinks["classes.tif"].write(best[None], r0, c0)
        conf = np.maximum(np.max(probs, axis=0) * 255 + 0.5, 1).astype(np.uint8)
        conf[~valid] = 0
        self.sinks["confidence.tif"].write(conf[None], r0, c0)
        if self.prob_kind == "float32":
            p = probs.astype(np.float32)
            p[:, ~valid] = np.nan
            self.sinks["probabilities.tif"].write(p, r0, c0)
        elif self.prob_kind == "uint8":
            q = quantised(probs)
            q[:, ~valid] = 0  # and masked: 0 to 255 are all probabilities
            self.sinks["probabilities.tif"].write(q, r0, c0, valid)
        if last_in_row:
            self.rows_done(win.out[1])

    def rows_done(self, end: int) -> None:
        """Every row above ``end`` is written (overviews can be built for them)."""
        for s in self.sinks.values():
            s.rows_complete(end)

    def totals(self) -> dict[str, Any]:
        """Pixels per class and valid pixels so far."""
        return {"counts": self.counts.copy(), "valid_px": int(self.counts.sum())}

    def close(self) -> None:
        """Release open files (safe to call twice)."""
        for s in self.sinks.values():
            s.close()

    def finish(self, *, scene_id: str, bundle: Any, counts: np.ndarray,
               sidecars: bool = True, acquired: Acquisition | None = None,
               run_id: str | None = None, missing: Sequence[str] = ()) -> dict[str, str]:
        """Finish the COGs and (unless not ``sidecars``) write the sidecars; return
        ``{file name: what it is}``."""
        from concurrent.futures import ThreadPoolExecutor

        files = {name: name.removesuffix(".tif") for name in self.sinks}
        # GDAL compresses without the GIL: the three COGs are laid out side by side, and the
        # sidecars are made while the larger ones finish
        with ThreadPoolExecutor(len(self.sinks)) as pool:
            jobs = [pool.submit(sink.finish) for sink in self.sinks.values()]
            jobs[0].result()  # classes.tif: the sidecars read it
            if sidecars:
                files.update(write_sidecars(
                    self.work, self.table, scene_id=scene_id, bundle=bundle, counts=counts,
                    probabilities="probabilities.tif" in self.sinks, acquired=acquired,
                    run_id=run_id, layouts={n: s.layout for n, s in self.sinks.items()},
                    missing=missing))
            for job in jobs:
                job.result()
        return files


def write_sidecars(folder: Path, table: ClassTable, *, scene_id: str, bundle: Any,
                   counts: np.ndarray, probabilities: bool, acquired: Acquisition | None = None,
                   run_id: str | None = None, vector: str | None = None,
                   layouts: Mapping[str, RasterLayout] | None = None,
                   missing: Sequence[str] = ()) -> dict[str, str]:
    """QGIS style, GDAL categories and attribute table (``classes.tif.aux.xml``), quicklook
    and STAC Item beside ``folder/classes.tif``; returns ``{file name: what it is}``.

    Args:
        folder: where the rasters are (``classes.tif`` complete; the others may still be
            being written when ``layouts`` describe them).
        table, scene_id, bundle, counts: the classes, the scene, the model, pixels per class.
        probabilities: ``probabilities.tif`` is (or will be) there.
        acquired: when the scene was acquired (default: unknown, see
            :mod:`geomm.predict._stacitem`).
        run_id: the run's token (default: a new one); the Item id is ``<scene_id>-<run_id>``.
        vector: file name of the vector map (e.g. ``map.gpkg``, written after this) to list
            as the Item's ``vector`` asset.
        layouts: the rasters' layouts (default: read from the files).
        missing: the model's modalities the map was made without (``geomm:missing_modalities``
            of the Item).
    """
    from geomm.predict import _stacitem, sidecars
    from geomm.predict.cogout import write_class_pam

    sidecars.write_qml(folder / "classes.qml", table)
    write_class_pam(folder / "classes.tif", table.names, table.colours, [int(c) for c in counts])
    sidecars.write_quicklook(folder / "classes.tif", folder / "quicklook.png", table=table,
                             title=f"{scene_id}: {bundle.kind} model of {bundle.meta.recipe}")
    bands = {n: _raster_bands(folder / n, (layouts or {}).get(n))
             for n in ("classes.tif", "confidence.tif", "probabilities.tif")
             if n != "probabilities.tif" or probabilities}
    assets = {
        "classes": sidecars.AssetInfo("./classes.tif", "Land-cover classes",
                                      ("data",), classes=True,
                                      raster_bands=bands["classes.tif"]),
        "confidence": sidecars.AssetInfo("./confidence.tif", "Confidence (max probability)",
                                         ("data",), raster_bands=bands["confidence.tif"]),
        "categories": sidecars.AssetInfo(
            "./classes.tif.aux.xml", "GDAL categories, colour table and attribute table of "
            "classes.tif", ("metadata",), media_type="application/xml"),
        "style": sidecars.AssetInfo("./classes.qml", "QGIS style", ("style",),
                                    media_type="application/xml"),
        "thumbnail": sidecars.AssetInfo("./quicklook.png", "Quicklook", ("thumbnail",),
                                        media_type="image/png"),
    }
    if probabilities:
        assets["probabilities"] = sidecars.AssetInfo(
            "./probabilities.tif", "Class probabilities", ("data",), bands=tuple(table.names),
            raster_bands=bands["probabilities.tif"])
    if vector:
        assets["vector"] = _stacitem.vector_asset(vector)
    run = run_id or _stacitem.run_token()
    sidecars.write_stac_item(
        folder / "item.json", item_id=_stacitem.item_id(scene_id, run),
        raster=folder / "classes.tif", assets=assets, table=table,
        properties=_stacitem.item_properties(
            scene_id=scene_id, run=run, acquired=acquired or _stacitem.Acquisition.unknown(),
            extra={"geomm:model": bundle.meta.recipe, "geomm:model_kind": bundle.kind,
                   "geomm:class_pixels": {n: int(c) for n, c in
                                          zip(table.names, counts, strict=True)},
                   # a map made without some of the model's modalities says so
                   **({"geomm:missing_modalities": list(missing)} if missing else {})}))
    return {"classes.qml": "QGIS style", "classes.tif.aux.xml": "GDAL categories",
            "quicklook.png": "quicklook", "item.json": "STAC item"}


def _raster_bands(path: Path, layout: RasterLayout | None) -> tuple[dict[str, Any], ...]:
    """``raster:bands`` of one output raster, from its layout or, without one, the file."""
    from geomm.predict._stacitem import raster_bands

    categorical = path.name == "classes.tif"
    if layout is not None:
        return raster_bands(layout.dtype, layout.count, layout.nodata,
                            None if categorical else (layout.scale or 1.0),
                            None if categorical else 0.0)
    import rasterio

    with rasterio.open(path) as src:
        return raster_bands(src.dtypes[0], src.count, src.nodata,
                            None if categorical else src.scales[0],
                            None if categorical else src.offsets[0])


def _argmax(probs: np.ndarray) -> np.ndarray:
    """Class of highest probability (first on ties), as uint8: one contiguous pass per class
    (numpy's argmax over the first axis walks the array with a large stride)."""
    best = probs[0].copy()
    out = np.zeros(best.shape, dtype=np.uint8)
    for k in range(1, len(probs)):
        better = probs[k] > best
        out[better] = k
        np.maximum(best, probs[k], out=best)
    return out


def quantised(probs: np.ndarray) -> np.ndarray:
    """(K, h, w) probabilities as uint8 in 255ths that sum to exactly 255 at every pixel
    (largest remainders: each within 1/255 of its probability), where rounding each alone
    could make them sum to 250 or 260."""
    total = probs.sum(axis=0, dtype=np.float32)
    scaled = probs.astype(np.float32) * (np.float32(255) / np.maximum(total, np.float32(1e-12)))
    q = np.floor(scaled)
    left = scaled - q  # remainders in [0, 1)
    short = np.rint(255 - q.sum(axis=0)).astype(np.uint8)  # 0 .. K-1 units left to give
    out = q.astype(np.uint8)
    for i in range(len(left)):  # a class's rank among the remainders (the first on ties)
        rank = np.zeros(short.shape, np.uint8)
        for j in range(len(left)):
            if j != i:
                rank += (left[j] > left[i]) if j > i else (left[j] >= left[i])
        out[i] += rank < short  # the `short` largest remainders get one unit more
    return out
