"""Builders of tiny class maps and reference files for the accuracy tests (not a test module)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine
from shapely.geometry import Point

from geomm.classes import ClassTable

UTM = "EPSG:32633"
T10 = Affine(10, 0, 500000, 0, -10, 5800000)

# Olofsson et al. (2014), section 5 / Table 8: four strata mapped in 30 m Landsat pixels and
# the stratified random sample's error matrix (rows map class, columns reference class).
OLOFSSON_NAMES = ("Deforestation", "Forest gain", "Stable forest", "Stable non-forest")
OLOFSSON_MAPPED_PX = (200_000, 150_000, 3_200_000, 6_450_000)
OLOFSSON_COUNTS = ((66, 0, 5, 4), (0, 55, 8, 12), (1, 0, 153, 11), (2, 1, 9, 313))
OLOFSSON_TRANSFORM = Affine(30, 0, 300000, 0, -30, 5000000)
OLOFSSON_SHAPE = (2500, 4000)  # 10,000,000 pixels: the four mapped areas, row after row


def write_class_map(path: Path, classes: np.ndarray, names: Sequence[str], *,
                    transform: Affine = T10, crs: Any = UTM, nodata: int = 255) -> Path:
    """A ``geomm predict``-style class GeoTIFF: uint8, nodata, GEOMM_CLASSES tag."""
    table = ClassTable.from_names(names)
    with rasterio.open(path, "w", driver="GTiff", width=classes.shape[1],
                       height=classes.shape[0], count=1, dtype="uint8", crs=crs,
                       transform=transform, nodata=nodata, tiled=True, blockxsize=256,
                       blockysize=256, compress="deflate") as dst:
        dst.write(classes.astype(np.uint8), 1)
        dst.update_tags(GEOMM_CLASSES=json.dumps(table.to_dict()))
        dst.update_tags(1, **{f"class_{i}": n for i, n in enumerate(names)})
    return path


def write_points(path: Path, xy: Sequence[tuple[float, float]], values: Sequence[Any], *,
                 crs: Any = UTM, column: str = "reference") -> Path:
    """A GeoPackage of points with one class column."""
    gdf = gpd.GeoDataFrame({column: list(values)}, geometry=[Point(x, y) for x, y in xy],
                           crs=crs)
    gdf.to_file(path, layer="samples", driver="GPKG", engine="pyogrio")
    return path


def centre(transform: Affine, row: int, col: int) -> tuple[float, float]:
    """CRS coordinates of a pixel centre."""
    x, y = transform @ (col + 0.5, row + 0.5)
    return float(x), float(y)


def olofsson_example(tmp: Path) -> tuple[Path, Path]:
    """The example as files: a 30 m map whose class pixel counts are the mapped areas, and
    640 points, each on a pixel of its map class, labelled to realise the error matrix."""
    h, w = OLOFSSON_SHAPE
    flat = np.repeat(np.arange(4, dtype=np.uint8), OLOFSSON_MAPPED_PX)
    map_tif = write_class_map(tmp / "olofsson.tif", flat.reshape(h, w), OLOFSSON_NAMES,
                              transform=OLOFSSON_TRANSFORM)
    starts = np.concatenate([[0], np.cumsum(OLOFSSON_MAPPED_PX)[:-1]])
    rng = np.random.default_rng(2014)
    xy, refs = [], []
    for i, row in enumerate(OLOFSSON_COUNTS):
        picks = starts[i] + rng.choice(OLOFSSON_MAPPED_PX[i], sum(row), replace=False)
        labels = [OLOFSSON_NAMES[j] for j, c in enumerate(row) for _ in range(c)]
        for flat_index, label in zip(picks, labels, strict=True):
            r, c = divmod(int(flat_index), w)
            xy.append(centre(OLOFSSON_TRANSFORM, r, c))
            refs.append(label)
    return map_tif, write_points(tmp / "olofsson_points.gpkg", xy, refs)
