"""Synthetic STAC items over tiny rasters, for the STAC-input tests.

A "scene" is a 10 m red band and a 20 m SWIR band in UTM 33N. :func:`cut_items` cuts it into
overlapping items (GeoTIFFs, one file per asset) with an ItemCollection that names them, so
that a recipe can stack the same pixels from the files or from the items.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

UTM33 = CRS.from_epsg(32633)
ORIGIN = (400_000.0, 5_800_020.0)  # a multiple of 60 m, like Sentinel-2 tiles


@dataclass
class Scene:
    """Band arrays of the synthetic scene (10 m red, 20 m SWIR), uint16 with nodata 0."""

    red: np.ndarray
    swir: np.ndarray
    origin: tuple[float, float] = ORIGIN

    def transform(self, res: float) -> Affine:
        return Affine(res, 0, self.origin[0], 0, -res, self.origin[1])


def make_scene(h: int = 120, w: int = 160, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    red = rng.integers(1, 10_000, (h, w), dtype=np.uint16)
    swir = rng.integers(1, 10_000, (h // 2, w // 2), dtype=np.uint16)
    return Scene(red, swir)


def write_tif(path: Path, arr: np.ndarray, transform: Affine, crs: CRS = UTM33,
              nodata: float | None = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype=arr.dtype.name, crs=crs, transform=transform,
                       nodata=nodata, tiled=True, blockxsize=64, blockysize=64,
                       compress="deflate") as dst:
        dst.write(arr, 1)
    return path


def item(item_id: str, when: str, assets: dict[str, Path], *, crs: CRS = UTM33,
         collection: str = "synthetic-s2", cloud: float = 10.0,
         extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """An item dict whose bbox is the union of its assets' footprints (EPSG:4326)."""
    boxes = []
    for p in assets.values():
        with rasterio.open(p) as src:
            boxes.append(transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21))
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
            max(b[3] for b in boxes)]
    w, s, e, n = bbox
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": collection,
            "bbox": bbox,
            "geometry": {"type": "Polygon",
                         "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
            "properties": {"datetime": when, "eo:cloud_cover": cloud,
                           "proj:epsg": crs.to_epsg(), **(extra or {})},
            "links": [],
            "assets": {k: {"href": str(p), "type": "image/tiff; application=geotiff"}
                       for k, p in assets.items()}}


def item_collection(path: Path, items: Sequence[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(items)}))
    return path


def cut_items(scene: Scene, folder: Path, *, when: str = "2021-06-10T10:00:00Z",
              prefix: str = "a", cols: Sequence[tuple[int, int]] = ((0, 96), (64, 160))
              ) -> list[dict[str, Any]]:
    """Overlapping column strips of the scene (red 10 m cols, SWIR half of them), one item
    per strip. Strip edges must be even (the 20 m band)."""
    out = []
    for i, (c0, c1) in enumerate(cols):
        red = write_tif(folder / f"{prefix}{i}_red.tif", scene.red[:, c0:c1],
                        scene.transform(10) * Affine.translation(c0, 0))
        swir = write_tif(folder / f"{prefix}{i}_swir.tif", scene.swir[:, c0 // 2:c1 // 2],
                         scene.transform(20) * Affine.translation(c0 // 2, 0))
        out.append(item(f"{prefix}{i}", when, {"red": red, "swir": swir}))
    return out
