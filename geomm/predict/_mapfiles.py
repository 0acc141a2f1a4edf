"""The map files of a prediction: class, probability and confidence COGs, and sidecars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from geomm.classes import ClassTable
from geomm.predict.blend import Window
from geomm.predict.cogout import RasterLayout, StreamedRaster

__all__ = ["MapWriter", "write_sidecars"]


class MapWriter:
    """Turns blended probability windows into the output rasters (in a work folder).

    Args:
        work: folder the files are made in.
        grid: the base grid (:class:`~geomm.stack.grid.GridSpec`).
        table: the model's class table (names, colours, ignore value = nodata).
        probabilities: ``"uint8"`` (0-255, scale 1/255), ``"float32"`` or ``"none"``.
    """

    def __init__(self, work: Path, grid: Any, table: ClassTable, probabilities: str) -> None:
        self.work, self.grid, self.table = work, grid, table
        self.k = len(table)
        self.nodata = int(table.ignore_value)
        self.counts = np.zeros(self.k, dtype=np.int64)
        names = list(table.names)
        classes_json = json.dumps(table.to_dict())
        common = {"height": grid.height, "width": grid.width, "crs": grid.crs,
                  "transform": grid.transform}
        cmap = {i: (*table.colours[i], 255) for i in range(self.k)}
        cmap[self.nodata] = (0, 0, 0, 0)
        self.sinks: dict[str, StreamedRaster] = {}
        self.sinks["classes.tif"] = StreamedRaster(
            work / "classes.tif", work, **common, layout=RasterLayout(
                1, "uint8", self.nodata, "mode", "DEFLATE", descriptions=("class",),
                tags={"GEOMM_CLASSES": classes_json, "CLASS_NAMES": ",".join(names)},
                band_tags={1: {f"class_{i}": n for i, n in enumerate(names)}},
                colormap=cmap))
        self.prob_kind = probabilities
        if probabilities != "none":
            f32 = probabilities == "float32"
            self.sinks["probabilities.tif"] = StreamedRaster(
                work / "probabilities.tif", work, **common, layout=RasterLayout(
                    self.k, "float32" if f32 else "uint8", float("nan") if f32 else None,
                    "average", "ZSTD", 1, descriptions=tuple(names),
                    tags={"GEOMM_CLASSES": classes_json},
                    scale=None if f32 else 1 / 255))
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
            q = (probs * 255 + 0.5).astype(np.uint8)  # probabilities are in [0, 1]
            q[:, ~valid] = 0
            self.sinks["probabilities.tif"].write(q, r0, c0)
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
               sidecars: bool = True) -> dict[str, str]:
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
                files.update(write_sidecars(self.work, self.table, scene_id=scene_id,
                                            bundle=bundle, counts=counts,
                                            probabilities="probabilities.tif" in self.sinks))
            for job in jobs:
                job.result()
        return files


def write_sidecars(folder: Path, table: ClassTable, *, scene_id: str, bundle: Any,
                   counts: np.ndarray, probabilities: bool) -> dict[str, str]:
    """QGIS style, quicklook and STAC item beside ``folder/classes.tif``; returns
    ``{file name: what it is}``."""
    from geomm.predict import sidecars
    sidecars.write_qml(folder / "classes.qml", table)
    sidecars.write_quicklook(folder / "classes.tif", folder / "quicklook.png", table=table,
                             title=f"{scene_id}: {bundle.kind} model of {bundle.meta.recipe}")
    assets = {
        "classes": sidecars.AssetInfo("./classes.tif", "Land-cover classes",
                                      ("data",), classes=True),
        "confidence": sidecars.AssetInfo("./confidence.tif", "Confidence (max probability)",
                                         ("data",)),
        "style": sidecars.AssetInfo("./classes.qml", "QGIS style", ("style",),
                                    media_type="application/xml"),
        "thumbnail": sidecars.AssetInfo("./quicklook.png", "Quicklook", ("thumbnail",),
                                        media_type="image/png"),
    }
    if probabilities:
        assets["probabilities"] = sidecars.AssetInfo(
            "./probabilities.tif", "Class probabilities", ("data",), bands=tuple(table.names))
    sidecars.write_stac_item(
        folder / "item.json", item_id=scene_id, raster=folder / "classes.tif",
        assets=assets, table=table,
        properties={"geomm:model": bundle.meta.recipe, "geomm:model_kind": bundle.kind,
                    "geomm:class_pixels": {n: int(c) for n, c in
                                           zip(table.names, counts, strict=True)}})
    return {"classes.qml": "QGIS style", "quicklook.png": "quicklook", "item.json": "STAC item"}


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
