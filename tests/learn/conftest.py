"""The small synthetic scene the training tests share (module-scoped per test module)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import yaml
from affine import Affine
from shapely.geometry import box

from geomm.recipe import load_recipe
from geomm.stack.build import stack
from geomm.stack.store import open_store

X0, Y0, N = 500000.0, 5800000.0, 240  # 2.4 km at 10 m


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Three classes in vertical stripes, told apart by their band values, at 10/20/60 m."""
    root = tmp_path_factory.mktemp("synth")
    rng = np.random.default_rng(0)
    cls = np.repeat(np.arange(N) * 3 // N, 1)[None, :].repeat(N, axis=0)  # columns -> class
    for name, f in (("b10", 1), ("b20", 2), ("b60", 6)):
        base = cls[::f, ::f] * 1000 + 500
        arr = (base + rng.integers(0, 300, base.shape)).astype(np.uint16)
        with __import__("rasterio").open(
                root / f"{name}.tif", "w", driver="GTiff", width=arr.shape[1],
                height=arr.shape[0], count=1, dtype="uint16", crs="EPSG:32633",
                transform=Affine(10 * f, 0, X0, 0, -10 * f, Y0)) as dst:
            dst.write(arr[None])
    third = N * 10 / 3
    polys = gpd.GeoDataFrame({"c": ["a", "b", "c"]}, geometry=[
        box(X0 + i * third + 20, Y0 - N * 10 + 20, X0 + (i + 1) * third - 20, Y0 - 20)
        for i in range(3)], crs="EPSG:32633")
    polys.to_file(root / "labels.gpkg")
    doc = {"name": "synth", "data_root": ".",
           "modalities": {"fine": {"bands": [{"file": "b10.tif", "name": "F"}]},
                          "mid": {"bands": [{"file": "b20.tif", "name": "M"}]},
                          "coarse": {"bands": [{"file": "b60.tif", "name": "C"}]}},
           "labels": {"vector": "labels.gpkg", "class_column": "c"},
           "tiling": {"size": 120, "halo": 12}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (summary,) = stack(load_recipe(root / "recipe.yaml"), out=root / "store")
    return root, open_store(summary.path)
