"""STAC modalities from real servers: a STAC API (PostgreSQL + pgstac + stac-fastapi-pgstac)
whose items point at COGs that Debian's nginx serves with range requests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import yaml
from affine import Affine
from rasterio.warp import transform_bounds

from geomm.errors import GeommError, RasterReadError
from geomm.recipe import load_recipe
from geomm.sources import resolve
from geomm.stack.build import stack
from geomm.stack.store import open_store
from tests.conftest import require_or_skip
from tests.sources.stacdata import UTM33, cut_items, item, make_scene, write_tif
from tests.webserver import find_nginx, start_nginx

COLLECTION = "synthetic-s2"


def _cog(src: Path, dst: Path, block: int = 128) -> Path:
    rasterio.shutil.copy(src, dst, driver="COG", BLOCKSIZE=block, COMPRESS="DEFLATE",
                         OVERVIEWS="NONE")
    return dst


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Any:
    nginx = find_nginx()
    if nginx is None:
        require_or_skip("nginx is not installed (apt-get install nginx-light) - the STAC "
                        "tests read COGs from a real web server")
    root = tmp_path_factory.mktemp("www")
    server = start_nginx(nginx, root, tmp_path_factory.mktemp("nginx"))
    yield root, server
    server.stop()


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOMM_CACHE", str(tmp_path / "cache"))


def _served(items: list[dict[str, Any]], root: Path, url: str, sub: str) -> list[dict]:
    """The items with their assets made COGs under ``root/sub`` and hrefs pointing at nginx."""
    (root / sub).mkdir(exist_ok=True)
    out = []
    for it in items:
        assets = {}
        for key, asset in it["assets"].items():
            name = Path(asset["href"]).name
            _cog(Path(asset["href"]), root / sub / name)
            assets[key] = {**asset, "href": f"{url}/{sub}/{name}"}
        out.append({**it, "assets": assets})
    return out


def _collection() -> dict[str, Any]:
    return {"type": "Collection", "stac_version": "1.0.0", "id": COLLECTION,
            "description": "geomm test scenes", "license": "proprietary", "links": [],
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                       "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]}}}


def _recipe(folder: Path, name: str, stac: dict, assets: dict, **spec: Any) -> Path:
    doc = {"name": name, "stac": stac, "tiling": {"size": 48, "halo": 6},
           "modalities": {"optical": {"stac": {"collection": COLLECTION, "assets": assets,
                                               **spec}}}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_stac_api_recipe_stacks_the_same_layers_as_the_files(tmp_path, web, stac_api):
    root, server = web
    sc = make_scene(seed=3)
    write_tif(tmp_path / "red.tif", sc.red, sc.transform(10))
    write_tif(tmp_path / "swir.tif", sc.swir, sc.transform(20))
    items = _served(cut_items(sc, tmp_path / "items", prefix="api"), root, server.url, "api")
    stac_api.load([_collection()], items)
    local = tmp_path / "local.yaml"
    local.write_text(yaml.safe_dump({"name": "local", "tiling": {"size": 48, "halo": 6},
                                     "modalities": {"optical": {"bands": [
                                         {"file": "red.tif", "name": "red"},
                                         {"file": "swir.tif", "name": "swir"}]}}}))
    bbox = list(transform_bounds(UTM33, "EPSG:4326", 400_000, 5_798_820, 401_600, 5_800_020))
    remote = _recipe(tmp_path, "api", {"api": stac_api.url, "bbox": bbox,
                                       "datetime": "2021-06-01/2021-06-30"},
                     {"red": "red", "swir": "swir"}, composite="first")
    stack(load_recipe(local), out=tmp_path / "s_local")
    stack(load_recipe(remote), out=tmp_path / "s_api")
    a, b = open_store(tmp_path / "s_local"), open_store(tmp_path / "s_api")
    assert a.layer_keys == b.layer_keys == ["optical/10m", "optical/20m"]
    for key in a.layer_keys:
        for var in ("data", "valid"):
            np.testing.assert_array_equal(a.layer(key)[var].values, b.layer(key)[var].values)
    with pytest.raises(GeommError, match="no items found .* datetime 2019-01-01/2019-12-31"):
        resolve(load_recipe(_recipe(tmp_path, "none", {"api": stac_api.url, "datetime":
                                                       "2019-01-01/2019-12-31"},
                                    {"red": "red"})))
    # two items match: a cap of one would composite whichever the API lists first
    with pytest.raises(GeommError, match=r"finds more than stac\.max_items \(1\) items"):
        resolve(load_recipe(_recipe(tmp_path, "cut", {"api": stac_api.url, "bbox": bbox,
                                                      "max_items": 1}, {"red": "red"})))


def test_a_window_of_a_cog_reads_only_its_share(tmp_path, web):
    """A composite over 1/16 of a 1024 x 1024 COG (256 px blocks) reads at most 1.5 x that
    share of the file's bytes, plus its header (counted in nginx's access log)."""
    root, server = web
    rng = np.random.default_rng(5)
    big = rng.integers(1, 60_000, (1024, 1024), dtype=np.uint16)
    plain = write_tif(tmp_path / "big.plain.tif", big, Affine(10, 0, 400_000, 0, -10,
                                                               5_810_240))
    (root / "win").mkdir(exist_ok=True)
    cog = _cog(plain, root / "win" / "big.tif", block=256)
    it = item("big", "2021-06-05T10:00:00Z", {"red": plain})
    it["assets"]["red"]["href"] = f"{server.url}/win/big.tif"
    (tmp_path / "big.json").write_text(json.dumps({"type": "FeatureCollection",
                                                        "features": [it]}))
    # the second block row and column: 256 x 256 px = 1/16 of the image, on block edges
    x0, y0 = 400_000 + 2560, 5_810_240 - 2560
    rec = _recipe(tmp_path, "win", {"catalog": str(tmp_path / "big.json")}, {"red": "red"},
                  composite="first")
    doc = yaml.safe_load(rec.read_text())
    doc["grid"] = {"crs": "EPSG:32633", "resolution": 10.0,
                   "bounds": [x0, y0 - 2560, x0 + 2560, y0]}
    rec.write_text(yaml.safe_dump(doc))
    server.clear_log()
    [mod] = resolve(load_recipe(rec)).modalities
    assert mod.bands[0].path.suffix == ".vrt"  # one aligned item: its window, nothing copied
    with rasterio.open(mod.bands[0].path) as src:
        np.testing.assert_array_equal(src.read(1), big[256:512, 256:512])
    sent = sum(r.body_bytes for r in server.requests() if r.uri.endswith("big.tif"))
    size = cog.stat().st_size
    header = 16_384  # GDAL's first read of a COG: header and tile index
    assert sent <= 1.5 * size / 16 + header, (sent, size)
    assert sent < size / 4


def test_asset_faults_are_one_line_errors_or_recovered(tmp_path, web):
    root, server = web
    sc = make_scene(seed=4)
    items = _served(cut_items(sc, tmp_path / "items", prefix="f"), root, server.url, "f")
    catalog = tmp_path / "f.json"

    def write(its: list[dict]) -> None:
        catalog.write_text(json.dumps({"type": "FeatureCollection", "features": its}))

    def recipe(name: str) -> Path:
        return _recipe(tmp_path, name, {"catalog": str(catalog)}, {"red": "red"},
                       composite="first")

    # a 404: the URL and the status, nothing written
    gone = [{**items[0], "assets": {"red": {"href": f"{server.url}/f/missing.tif"}}},
            items[1]]
    write(gone)
    with pytest.raises(RasterReadError, match=r"/f/missing.tif: .*404"):
        stack(load_recipe(recipe("gone")), out=tmp_path / "s_gone")
    assert not (tmp_path / "s_gone").exists() and not (tmp_path / "cache" / "stac").exists()
    # a text file the server sends as asked: not a raster, not a range-request problem
    (root / "f" / "notes.tif").write_text("not a raster\n" * 100)
    write([{**items[0], "assets": {"red": {"href": f"{server.url}/f/notes.tif"}}}, items[1]])
    with pytest.raises(RasterReadError, match=r"/f/notes.tif: the server sends it \(HTTP 20"
                                              r"\d .*\) but it is not a raster") as err:
        stack(load_recipe(recipe("text")), out=tmp_path / "s_text")
    assert "range requests" not in str(err.value)
    # 503s from a rate-limited path: GDAL retries and the run completes
    busy = [{**it, "assets": {"red": {"href": it["assets"]["red"]["href"].replace(
        "/f/", "/busy/f/")}}} for it in items]
    write(busy)
    [mod] = resolve(load_recipe(recipe("busy"))).modalities
    assert any(r.status == 503 for r in server.requests())
    with rasterio.open(mod.bands[0].path) as src:
        np.testing.assert_array_equal(src.read(1), sc.red)
    # a truncated COG behind a 200: one line naming the file, no composite, no store
    shutil.copy(root / "f" / "f0_red.tif", root / "f" / "cut.tif")
    with open(root / "f" / "cut.tif", "r+b") as f:
        f.truncate((root / "f" / "cut.tif").stat().st_size // 2)
    write([{**items[0], "assets": {"red": {"href": f"{server.url}/f/cut.tif"}}}])
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
    with pytest.raises(RasterReadError) as err:
        stack(load_recipe(recipe("cut")), out=tmp_path / "s_cut")
    assert "cut.tif" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "s_cut").exists()
    assert not list((tmp_path / "cache").rglob("*.tif"))


def sign_url(href: str) -> str:
    """A stand-in for planetary_computer.sign_url: the href with a query token."""
    return href + "?st=2026&sig=abc"


def test_sign_hook_signs_every_asset_href_before_reading(tmp_path, web):
    root, server = web
    sc = make_scene(seed=6)
    items = _served(cut_items(sc, tmp_path / "items", prefix="s"), root, server.url, "s")
    catalog = tmp_path / "s.json"
    catalog.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    rec = _recipe(tmp_path, "signed", {"catalog": str(catalog),
                                       "sign": "tests.sources.test_stac_served:sign_url"},
                  {"red": "red"}, composite="first")
    server.clear_log()
    [mod] = resolve(load_recipe(rec)).modalities
    reads = [r.uri for r in server.requests() if "/s/" in r.uri]
    assert {u.split("?")[0] for u in reads} == {"/s/s0_red.tif", "/s/s1_red.tif"}
    assert all(u.endswith("?st=2026&sig=abc") for u in reads), reads  # every request signed
    with rasterio.open(mod.bands[0].path) as src:
        np.testing.assert_array_equal(src.read(1), sc.red)
    bad = _recipe(tmp_path, "nosign", {"catalog": str(catalog), "sign": "nowhere_pkg:sign"},
                  {"red": "red"})
    with pytest.raises(GeommError, match="stac.sign: cannot import nowhere_pkg:sign"):
        resolve(load_recipe(bad))
