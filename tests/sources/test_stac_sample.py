"""The real sample through a real STAC API: its bands as COGs cut into two overlapping items,
served by nginx and found through pgstac + stac-fastapi-pgstac, stack to the same layers,
bit for bit, as the sample's own recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import yaml
from affine import Affine
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geomm.recipe import bundled_recipes, load_recipe
from geomm.stack.build import stack
from geomm.stack.store import open_store
from tests.conftest import require_or_skip
from tests.webserver import find_nginx, start_nginx

pytestmark = pytest.mark.e2e
COLLECTION = "sample-s2-l1c"


def _cut(src_path: Path, dst: Path, x0: float, x1: float) -> None:
    """The columns of ``src_path`` between eastings x0 and x1, as a COG."""
    with rasterio.open(src_path) as src:
        c0 = round((x0 - src.transform.c) / src.transform.a)
        c1 = round((x1 - src.transform.c) / src.transform.a)
        arr = src.read(1, window=Window(c0, 0, c1 - c0, src.height))
        profile = {"driver": "GTiff", "width": c1 - c0, "height": src.height, "count": 1,
                   "dtype": arr.dtype.name, "crs": src.crs,
                   "transform": src.transform * Affine.translation(c0, 0)}
    plain = dst.with_suffix(".plain.tif")
    with rasterio.open(plain, "w", **profile) as out:
        out.write(arr, 1)
    rasterio.shutil.copy(plain, dst, driver="COG", BLOCKSIZE=256, COMPRESS="DEFLATE",
                         OVERVIEWS="NONE")
    plain.unlink()


def test_sample_through_a_stac_api_stacks_bit_identical(tmp_path, monkeypatch, s2_sample,
                                                        stac_api):
    nginx = find_nginx()
    if nginx is None:
        require_or_skip("nginx is not installed (apt-get install nginx-light)")
    monkeypatch.setenv("GEOMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    doc = yaml.safe_load(bundled_recipes()["s2-landcover"].read_text())
    root = Path(s2_sample.root)
    www = tmp_path / "www"
    www.mkdir()
    server = start_nginx(nginx, www, tmp_path / "nginx")
    try:
        files = {b: root / m["file"].replace("{band}", b)
                 for m in doc["modalities"].values() for b in m["bands"]}
        with rasterio.open(files["B02"]) as ref:
            left, right = ref.bounds.left, ref.bounds.right
            crs = ref.crs
            bounds = ref.bounds
        # two items overlapping by a fifth of the tile, cut on the 60 m lattice
        width = right - left
        cut_a = left + 60 * round(0.6 * width / 60)
        cut_b = left + 60 * round(0.4 * width / 60)
        items: list[dict[str, Any]] = []
        for name, (x0, x1) in {"east": (cut_b, right), "west": (left, cut_a)}.items():
            assets = {}
            for band, path in files.items():
                _cut(path, www / f"{name}_{band}.tif", x0, x1)
                assets[band] = {"href": f"{server.url}/{name}_{band}.tif",
                                "type": "image/tiff; application=geotiff; profile=cloud-optimized"}
            w, s, e, n = transform_bounds(crs, "EPSG:4326", x0, bounds.bottom, x1, bounds.top)
            items.append({"type": "Feature", "stac_version": "1.0.0", "id": f"sample-{name}",
                          "collection": COLLECTION, "bbox": [w, s, e, n],
                          "geometry": {"type": "Polygon", "coordinates": [[
                              [w, s], [e, s], [e, n], [w, n], [w, s]]]},
                          "properties": {"datetime": "2017-02-16T10:21:01Z",
                                         "eo:cloud_cover": 0.0, "proj:epsg": crs.to_epsg()},
                          "links": [], "assets": assets})
        stac_api.load([{"type": "Collection", "stac_version": "1.0.0", "id": COLLECTION,
                        "description": "the s2-t33uuu sample, cut in two", "license": "CC-BY-4.0",
                        "links": [], "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                                                "temporal": {"interval": [[None, None]]}}}],
                      items)
        stac_doc = {**doc, "name": "s2-landcover-stac", "data_root": str(root),
                    "stac": {"api": stac_api.url, "datetime": "2017-02-16"}}
        for mod in stac_doc["modalities"].values():
            bands = mod.pop("bands")
            mod.pop("file")
            mod["stac"] = {"collection": COLLECTION, "assets": {b: b for b in bands},
                           "composite": "first"}
        path = tmp_path / "stac.yaml"
        path.write_text(yaml.safe_dump(stac_doc, sort_keys=False))
        stack(load_recipe("s2-landcover"), out=tmp_path / "local")
        said: list[str] = []
        stack(load_recipe(path), out=tmp_path / "stac", echo=said.append)
    finally:
        server.stop()
    assert "2 item(s) of sample-s2-l1c, first composite" in said[0]
    a, b = open_store(tmp_path / "local"), open_store(tmp_path / "stac")
    assert a.layer_keys == b.layer_keys and len(a.layer_keys) == 5
    for key in a.layer_keys:
        for var in ("data", "valid"):
            np.testing.assert_array_equal(a.layer(key)[var].values, b.layer(key)[var].values,
                                          err_msg=f"{key} {var}")
    np.testing.assert_array_equal(a.labels(), b.labels())
