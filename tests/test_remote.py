"""Remote inputs read over HTTP from a real web server (Debian's nginx on 127.0.0.1): the
same store as from local files, range reads only, and one-line errors for the faults."""

from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.shutil
import yaml
from affine import Affine
from click.testing import CliRunner
from shapely.geometry import box

from geomm._remote import RemotePath, as_path, gdal_path
from geomm.errors import GeommError
from geomm.info import describe
from geomm.recipe import load_recipe
from geomm.stack.build import stack
from geomm.stack.store import open_store
from tests.conftest import require_or_skip
from tests.webserver import Nginx, find_nginx, start_nginx

X0, Y0, N, BLOCK = 500000.0, 5800000.0, 1024, 256


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[Path, Nginx]:
    """A folder of COGs (10 m and 20 m bands, 256 px blocks) and labels, served by nginx."""
    nginx = find_nginx()
    if nginx is None:
        require_or_skip("nginx is not installed (apt-get install nginx-light) - the remote "
                        "input tests read COGs from a real web server")
    root = tmp_path_factory.mktemp("www")
    rng = np.random.default_rng(0)
    for name, f in (("b10", 1), ("b20", 2)):
        n = N // f
        arr = rng.integers(1, 4000, (1, n, n), dtype=np.uint16)
        tmp = root / f"{name}.plain.tif"
        with rasterio.open(tmp, "w", driver="GTiff", width=n, height=n, count=1,
                           dtype="uint16", crs="EPSG:32633", nodata=0,
                           transform=Affine(10 * f, 0, X0, 0, -10 * f, Y0)) as dst:
            dst.write(arr)
        rasterio.shutil.copy(tmp, root / f"{name}.tif", driver="COG", BLOCKSIZE=BLOCK,
                             COMPRESS="DEFLATE", OVERVIEWS="NONE")
        tmp.unlink()
    side = N * 10
    gpd.GeoDataFrame({"c": ["a", "b"]}, geometry=[
        box(X0 + 100, Y0 - side + 100, X0 + side / 2, Y0 - 100),
        box(X0 + side / 2, Y0 - side + 100, X0 + side - 100, Y0 - 100)],
        crs="EPSG:32633").to_file(root / "labels.gpkg")
    server = start_nginx(nginx, root, tmp_path_factory.mktemp("nginx"))
    yield root, server
    server.stop()


def _recipe(folder: Path, data_root: str, *, labels: bool = True, bands: tuple = ("b10", "b20"),
            bounds: list[float] | None = None, name: str = "remote") -> Path:
    doc = {"name": name, "data_root": data_root,
           "modalities": {b: {"bands": [{"file": f"{b}.tif", "name": b.upper()}]}
                          for b in bands},
           "tiling": {"size": 128, "halo": 8}}
    if labels:
        doc["labels"] = {"vector": "labels.gpkg", "class_column": "c"}
    if bounds:
        doc["grid"] = {"crs": "EPSG:32633", "resolution": 10.0, "bounds": bounds}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _arrays(store_path: Path) -> dict[str, np.ndarray]:
    store = open_store(store_path)
    out = {"labels": store.labels()}
    for key in store.layer_keys:
        ds = store.layer(key)
        out[key] = ds["data"].values
        out[key + ":valid"] = ds["valid"].values
    return out


def test_a_url_stays_a_url():
    p = as_path("https://example.org/a//b/B04.tif?sig=x")
    assert isinstance(p, RemotePath) and str(p) == "https://example.org/a//b/B04.tif?sig=x"
    assert p.name == "B04.tif" and p.suffix == ".tif" and p.stem == "B04"
    assert gdal_path(p) == "/vsicurl/https://example.org/a//b/B04.tif?sig=x"
    assert gdal_path("s3://bucket/key.tif") == "/vsis3/bucket/key.tif"
    assert gdal_path("gs://bucket/key.tif") == "/vsigs/bucket/key.tif"
    assert str(as_path("/vsizip/a.zip/b.tif")) == "/vsizip/a.zip/b.tif"
    assert not isinstance(as_path("local/B04.tif"), RemotePath)
    assert RemotePath("https://h/dir") / "x.tif" == "https://h/dir/x.tif"


def test_info_describes_a_remote_cog(served):
    root, web = served
    info = describe(f"{web.url}/b10.tif")
    assert info.is_cog and info.width == N and info.path == f"{web.url}/b10.tif"
    from geomm.cli import main

    res = CliRunner().invoke(main, ["info", f"{web.url}/labels.gpkg", "--json"])
    assert res.exit_code == 0, res.output
    assert '"feature_count": 2' in res.output
    res = CliRunner().invoke(main, ["info", f"{web.url}/missing.tif"])
    assert res.exit_code != 0
    assert "HTTP 404" in res.output and f"{web.url}/missing.tif" in res.output
    (root / "notes.tif").write_text("not a raster")  # served with a 2xx
    res = CliRunner().invoke(main, ["info", f"{web.url}/notes.tif"])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
    assert "the server sends it (HTTP 2" in res.output and "no GDAL raster or OGR" in res.output
    down = "http://127.0.0.1:1/x.tif"  # nothing listens: one line, no pyogrio warning
    res = CliRunner().invoke(main, ["info", down])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output


def test_a_remote_recipe_stacks_the_same_store_as_local_files(served, tmp_path):
    root, web = served
    local = stack(load_recipe(_recipe(tmp_path, str(root), name="here")), out=tmp_path / "l")
    remote = stack(load_recipe(_recipe(tmp_path, web.url, name="there")), out=tmp_path / "r")
    a, b = _arrays(local[0].path), _arrays(remote[0].path)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert (a["labels"] != 255).any()
    files = open_store(remote[0].path).manifest
    assert f"{web.url}/b10.tif" in str(files)  # the URL is the input's name in the store
    # stacked again: the inputs' HTTP size and Last-Modified are unchanged, nothing is read
    web.clear_log()
    (again,) = stack(load_recipe(_recipe(tmp_path, web.url, name="there")), out=tmp_path / "r")
    assert again.up_to_date
    assert all(r.method == "HEAD" for r in web.requests())


def test_a_window_reads_its_share_of_the_bytes(served, tmp_path):
    """A grid of 1/16 of the COG (one 256 px block of 16) reads at most 1.5x a sixteenth of
    the file, plus the header GDAL reads on opening (16 KiB)."""
    root, web = served
    side = BLOCK * 10
    bounds = [X0 + side, Y0 - 2 * side, X0 + 2 * side, Y0 - side]
    (root / "cold").mkdir(exist_ok=True)  # a URL no earlier test read: GDAL's cache is cold
    shutil.copy(root / "b10.tif", root / "cold" / "b10.tif")
    web.clear_log()
    stack(load_recipe(_recipe(tmp_path, f"{web.url}/cold", labels=False, bands=("b10",),
                              bounds=bounds)), out=tmp_path / "w")
    got = sum(r.body_bytes for r in web.requests()
              if r.uri == "/cold/b10.tif" and r.method == "GET")
    size = (root / "b10.tif").stat().st_size
    assert all(r.range for r in web.requests() if r.method == "GET")  # range requests only
    assert got <= 1.5 * size / 16 + 16384, (got, size)


def _fails(recipe: Path, out: Path) -> str:
    with pytest.raises(GeommError) as e:
        stack(load_recipe(recipe), out=out)
    assert not out.exists()  # nothing half-written
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_a_missing_remote_file_names_the_url_and_the_status(served, tmp_path):
    _, web = served
    recipe = _recipe(tmp_path, web.url, labels=False, bands=("b10", "nope"))
    msg = _fails(recipe, tmp_path / "s")
    assert f"{web.url}/nope.tif" in msg and "HTTP 404 Not Found" in msg


def test_a_server_that_is_down_is_named(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recipe = _recipe(tmp_path, f"http://127.0.0.1:{port}", labels=False, bands=("b10",))
    msg = _fails(recipe, tmp_path / "s")
    assert f"http://127.0.0.1:{port}/b10.tif" in msg and "cannot connect" in msg


def test_503_answers_are_retried(served, tmp_path):
    root, web = served
    web.clear_log()
    (busy,) = stack(load_recipe(_recipe(tmp_path, f"{web.url}/busy", name="busy")),
                    out=tmp_path / "b", workers=2)
    assert any(r.status == 503 for r in web.requests())  # the limit was hit, and retried
    (local,) = stack(load_recipe(_recipe(tmp_path, str(root), name="here")), out=tmp_path / "l")
    a, b = _arrays(local.path), _arrays(busy.path)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_truncated_cog_behind_a_200_is_an_error_and_leaves_nothing(served, tmp_path):
    root, web = served
    cut = root / "cut"
    cut.mkdir(exist_ok=True)
    shutil.copy(root / "b10.tif", cut / "b10.tif")
    with (cut / "b10.tif").open("r+b") as f:
        f.truncate((root / "b10.tif").stat().st_size // 2)
    recipe = _recipe(tmp_path, f"{web.url}/cut", labels=False, bands=("b10",))
    msg = _fails(recipe, tmp_path / "s")
    assert f"{web.url}/cut/b10.tif" in msg


def test_predict_and_evaluate_take_urls(served, tmp_path):
    """``--modality NAME=URL`` maps what the local files map; a reference URL scores what the
    local reference scores."""
    from geomm.assess.accuracy import assess
    from geomm.predict.scene import PredictOptions, modalities_from_files, predict_scene
    from tests._evaldata import olofsson_example
    from tests.synthetic import cnn_bundle, write_scene

    root, web = served
    write_scene(root / "scene")
    bundle = cnn_bundle(tmp_path / "cnn")
    opts = PredictOptions(device="cpu", threads=1, tile_size=96, halo=12)
    maps = {}
    for where, base in (("local", str(root)), ("remote", web.url)):
        mods = modalities_from_files(bundle, [
            ("optical", f"{base}/scene/A.tif"), ("optical", f"{base}/scene/B.tif"),
            ("radar", f"{base}/scene/VV.tif")])
        predict_scene(bundle, mods, tmp_path / where, options=opts)
        with rasterio.open(tmp_path / where / "classes.tif") as src:
            maps[where] = src.read()
    np.testing.assert_array_equal(maps["local"], maps["remote"])
    with pytest.raises(GeommError, match="HTTP 404"):
        modalities_from_files(bundle, [("optical", f"{web.url}/scene/nope.tif")])

    (root / "eval").mkdir(exist_ok=True)
    map_tif, points = olofsson_example(root / "eval")
    here = assess(map_tif, points)
    there = assess(map_tif, f"{web.url}/eval/{points.name}")
    np.testing.assert_array_equal(here.error_matrix, there.error_matrix)
    assert there.to_dict()["reference"]["path"] == f"{web.url}/eval/{points.name}"


def test_reading_a_url_leaves_local_sidecars_visible(served, tmp_path):
    """No directory listing is a remote-only setting: a local file's external overviews
    (and .prj, .aux.xml) are still found after a URL was read in the same process."""
    import os

    from geomm._remote import NO_LISTING

    _, web = served
    assert describe(f"{web.url}/b10.tif").is_cog
    assert NO_LISTING not in os.environ
    path = tmp_path / "ovr.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(10, 0, X0, 0, -10, Y0),
                       tiled=True, blockxsize=16, blockysize=16) as dst:
        dst.write(np.ones((1, 64, 64), np.uint8))
    with rasterio.Env(TIFF_USE_OVR=True), rasterio.open(path, "r+") as dst:
        dst.build_overviews([2, 4])
    assert describe(path).overviews == (2, 4)
