"""The real sample through a real STAC API: its bands as COGs cut into two overlapping items of
two dates with a cloud mask, served by nginx and found through pgstac + stac-fastapi-pgstac,
stack to the same layers, bit for bit, as the sample's own recipe."""

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


def _cut(src_path: Path, dst: Path, x0: float, x1: float,
         cloud: tuple[float, float, float, float] | None = None) -> None:
    """The columns of ``src_path`` between eastings x0 and x1, as a COG; pixels inside
    ``cloud`` (left, bottom, right, top) made bright, as a cloud would."""
    with rasterio.open(src_path) as src:
        c0 = round((x0 - src.transform.c) / src.transform.a)
        c1 = round((x1 - src.transform.c) / src.transform.a)
        arr = src.read(1, window=Window(c0, 0, c1 - c0, src.height))
        if cloud is not None:
            res, top = src.transform.a, src.transform.f
            arr[round((top - cloud[3]) / res):round((top - cloud[1]) / res),
                round((cloud[0] - x0) / res):round((cloud[2] - x0) / res)] = 9999
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
        dates = {"east": "2017-02-26T10:21:01Z", "west": "2017-02-16T10:21:01Z"}
        # a cloud on the newer (east) item where the items overlap, on the 60 m lattice
        cloud = (cut_b + 120, bounds.top - 3000, cut_a - 120, bounds.top - 1020)
        for name, (x0, x1) in {"east": (cut_b, right), "west": (left, cut_a)}.items():
            assets = {}
            for band, path in files.items():
                _cut(path, www / f"{name}_{band}.tif", x0, x1,
                     cloud if name == "east" else None)
                assets[band] = {"href": f"{server.url}/{name}_{band}.tif",
                                "type": "image/tiff; application=geotiff; profile=cloud-optimized"}
            # an SCL-like 20 m mask: clear (4), the cloud (9) on the east item: the composite
            # must take the older west item's pixels there
            with rasterio.open(www / f"{name}_B11.tif") as b11:
                scl_profile = {**b11.profile, "dtype": "uint8", "nodata": None}
                scl = np.full((b11.height, b11.width), 4, np.uint8)
            if name == "east":
                scl[51:150, 6:round((cut_a - cut_b) / 20) - 6] = 9
            with rasterio.open(www / f"{name}_scl.tif", "w", **scl_profile) as dst:
                dst.write(scl, 1)
            assets["scl"] = {"href": f"{server.url}/{name}_scl.tif"}
            w, s, e, n = transform_bounds(crs, "EPSG:4326", x0, bounds.bottom, x1, bounds.top)
            items.append({"type": "Feature", "stac_version": "1.0.0", "id": f"sample-{name}",
                          "collection": COLLECTION, "bbox": [w, s, e, n],
                          "geometry": {"type": "Polygon", "coordinates": [[
                              [w, s], [e, s], [e, n], [w, n], [w, s]]]},
                          "properties": {"datetime": dates[name],
                                         "eo:cloud_cover": 0.0, "proj:epsg": crs.to_epsg()},
                          "links": [], "assets": assets})
        stac_api.load([{"type": "Collection", "stac_version": "1.0.0", "id": COLLECTION,
                        "description": "the s2-t33uuu sample, cut in two", "license": "CC-BY-4.0",
                        "links": [], "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                                                "temporal": {"interval": [[None, None]]}}}],
                      items)
        stac_doc = {**doc, "name": "s2-landcover-stac", "data_root": str(root),
                    "stac": {"api": stac_api.url, "datetime": "2017-02-01/2017-02-28"}}
        for mod in stac_doc["modalities"].values():
            bands = mod.pop("bands")
            mod.pop("file")
            mod["stac"] = {"collection": COLLECTION, "assets": {b: b for b in bands},
                           "composite": "first", "order": "newest",
                           "mask": {"asset": "scl", "drop": [9]}}
        path = tmp_path / "stac.yaml"
        path.write_text(yaml.safe_dump(stac_doc, sort_keys=False))
        stack(load_recipe("s2-landcover"), out=tmp_path / "local")
        said: list[str] = []
        stack(load_recipe(path), out=tmp_path / "stac", echo=said.append)
    finally:
        server.stop()
    assert "2 item(s) of sample-s2-l1c, first composite (newest first), mask scl" in said[0]
    assert said[0].index("sample-east  2017-02-26") < said[0].index("sample-west  2017-02-16")
    a, b = open_store(tmp_path / "local"), open_store(tmp_path / "stac")
    assert a.layer_keys == b.layer_keys and len(a.layer_keys) == 5
    for key in a.layer_keys:
        for var in ("data", "valid"):
            np.testing.assert_array_equal(a.layer(key)[var].values, b.layer(key)[var].values,
                                          err_msg=f"{key} {var}")
    np.testing.assert_array_equal(a.labels(), b.labels())


def test_bigearthnet_items_from_three_utm_zones_land_where_gdal_warps_them(
        tmp_path, monkeypatch, bigearthnet_sample, stac_api):
    """The six BigEarthNet S2 patches (UTM 29, 33 and 35) as items of the API; each patch's
    area composited onto a UTM 33 grid equals GDAL's warp of its file there."""
    import re

    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    from geomm.sources import plan, resolve

    monkeypatch.setenv("GEOMM_CACHE", str(tmp_path / "cache"))
    patches = sorted(Path(bigearthnet_sample.root).glob("BigEarthNet-S2-Example/*"))
    items, zones = [], set()
    for folder in patches:
        b02, b11 = (folder / f"{folder.name}_{b}.tif" for b in ("B02", "B11"))
        with rasterio.open(b02) as src:
            w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
            zones.add(src.crs.to_epsg())
            epsg = src.crs.to_epsg()
        day = re.search(r"_(\d{8})T", folder.name).group(1)  # type: ignore[union-attr]
        items.append({"type": "Feature", "stac_version": "1.0.0", "id": folder.name,
                      "collection": "bigearthnet-s2", "bbox": [w, s, e, n],
                      "geometry": {"type": "Polygon", "coordinates": [[
                          [w, s], [e, s], [e, n], [w, n], [w, s]]]},
                      "properties": {"datetime": f"{day[:4]}-{day[4:6]}-{day[6:]}T10:00:00Z",
                                     "proj:epsg": epsg},
                      "links": [], "assets": {"B02": {"href": str(b02)},
                                              "B11": {"href": str(b11)}}})
    assert zones == {32629, 32633, 32635}
    stac_api.load([{"type": "Collection", "stac_version": "1.0.0", "id": "bigearthnet-s2",
                    "description": "BigEarthNet-S2 example patches", "license": "CDLA-1.0",
                    "links": [], "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                                            "temporal": {"interval": [[None, None]]}}}], items)
    for it in items:
        w, s, e, n = it["bbox"]
        pad = 0.1 * (e - w)
        doc = {"name": "ben", "stac": {"api": stac_api.url, "bbox": [w + pad, s + pad, e - pad,
                                                                      n - pad]},
               "grid": {"crs": "EPSG:32633", "resolution": 10.0},
               "modalities": {"optical": {"stac": {"collection": "bigearthnet-s2",
                                                   "assets": {"B02": "B02", "B11": "B11"},
                                                   "composite": "first"},
                                          "resampling": "nearest", "nodata": 0}}}
        path = tmp_path / "ben.yaml"
        path.write_text(yaml.safe_dump(doc))
        rec = load_recipe(path)
        [p] = plan(rec)
        assert [x["id"] for x in p.items] == [it["id"]]
        [mod] = resolve(rec, plans=[p]).modalities
        for band, spec in zip(p.bands, mod.bands, strict=True):
            with rasterio.open(spec.path) as got_src:
                got = got_src.read(1)
            want = np.zeros_like(got)
            with rasterio.open(it["assets"][band.name]["href"]) as src:
                reproject(rasterio.band(src, 1), want, dst_transform=band.grid.transform,
                          dst_crs=band.grid.crs, resampling=Resampling.nearest, dst_nodata=0)
            seen = want != 0
            assert seen.sum() > 0.5 * got.size, (it["id"], band.name)
            assert (got[seen] == want[seen]).mean() >= 0.99, (it["id"], band.name)


def test_the_shipped_stac_recipe_stacks_earth_search_shaped_items(tmp_path, monkeypatch,
                                                                  s2_sample, stac_api):
    """recipes/s2-landcover-stac.yaml against a local API serving a real Earth Search item
    document (tests/sources/items/) whose hrefs point at the sample's bands as COGs: each
    band is composited in reflectance (the item's raster:bands scale and offset)."""
    import json

    from geomm.stacpresets import PRESETS

    monkeypatch.setenv("GEOMM_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    doc = json.loads((Path(__file__).parent / "items" / "earth-search-sentinel-2-l2a.json")
                     .read_text())
    root = Path(s2_sample.root)
    preset = PRESETS["sentinel-2-l2a/earth-search"]
    with rasterio.open(root / "IMG_DATA" / "T33UUU_20170216T102101_B02.jp2") as ref:
        crs, b = ref.crs, ref.bounds
    for band, key in preset.assets.items():
        jp2 = root / "IMG_DATA" / f"T33UUU_20170216T102101_{band}.jp2"
        with rasterio.open(jp2) as src:
            _cut(jp2, tmp_path / f"{key}.tif", src.bounds.left, src.bounds.right)
        doc["assets"][key]["href"] = str(tmp_path / f"{key}.tif")
    with rasterio.open(tmp_path / "swir16.tif") as src:  # a clear-sky SCL (4: vegetation)
        profile = {**src.profile, "dtype": "uint8", "nodata": None, "driver": "GTiff"}
        scl = np.full((src.height, src.width), 4, np.uint8)
        scl[:40, :40] = 9  # a cloud in the north-west corner
    with rasterio.open(tmp_path / "scl.tif", "w", **profile) as dst:
        dst.write(scl, 1)
    doc["assets"]["scl"]["href"] = str(tmp_path / "scl.tif")
    w, s, e, n = transform_bounds(crs, "EPSG:4326", *b)
    doc.update(bbox=[w, s, e, n], geometry={"type": "Polygon", "coordinates": [[
        [w, s], [e, s], [e, n], [w, n], [w, s]]]})
    doc["properties"].update({"datetime": "2021-07-01T10:00:00Z", "proj:epsg": 32633})
    stac_api.load([{"type": "Collection", "stac_version": "1.0.0", "id": "sentinel-2-l2a",
                    "description": "Earth Search-shaped", "license": "proprietary",
                    "links": [], "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                                            "temporal": {"interval": [[None, None]]}}}], [doc])
    recipe = yaml.safe_load(bundled_recipes()["s2-landcover-stac"].read_text())
    recipe["stac"]["api"] = stac_api.url
    path = tmp_path / "s2-landcover-stac.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    (stac,) = stack(load_recipe(path), out=tmp_path / "stac")
    (local,) = stack(load_recipe("s2-landcover"), out=tmp_path / "local")
    a, c = open_store(local.path), open_store(stac.path)
    assert a.layer_keys == c.layer_keys
    for key in a.layer_keys:
        raw = a.layer(key)["data"].values.astype(np.float64)
        got = c.layer(key)["data"].values
        assert got.dtype == np.float32
        ok = a.layer(key)["valid"].values & c.layer(key)["valid"].values
        assert ok.mean() > 0.9, key
        np.testing.assert_allclose(got[:, ok], (raw * 0.0001 - 0.1)[:, ok], atol=1e-6)
    valid = c.layer("visible/10m")["valid"].values
    assert not valid[:80, :80].any()  # the SCL cloud (20 m pixels) is left out at 10 m too
    np.testing.assert_array_equal(a.labels(), c.labels())
