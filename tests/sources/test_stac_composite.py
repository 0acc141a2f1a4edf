"""STAC modalities from a static ItemCollection: the composite is what numpy and GDAL say it is,
and stacking it equals stacking the files where the grids align."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject

from geomm.errors import GeommError, RasterReadError, RecipeError
from geomm.recipe import load_recipe
from geomm.sources import describe_plan, plan, resolve
from geomm.stack.build import stack
from geomm.stack.store import open_store
from tests.sources.stacdata import (
    UTM33,
    cut_items,
    item,
    item_collection,
    make_scene,
    write_tif,
)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOMM_CACHE", str(tmp_path / "cache"))


def _recipe(folder: Path, name: str, stac: dict | None, modalities: dict) -> Path:
    doc = {"name": name, "modalities": modalities, "tiling": {"size": 48, "halo": 6}}
    if stac is not None:
        doc["stac"] = stac
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _layers(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    st = open_store(path)
    return {k: (st.layer(k)["data"].values, st.layer(k)["valid"].values)
            for k in st.layer_keys}


def test_first_of_overlapping_items_stacks_bit_identical_to_the_files(tmp_path):
    sc = make_scene()
    write_tif(tmp_path / "red.tif", sc.red, sc.transform(10))
    write_tif(tmp_path / "swir.tif", sc.swir, sc.transform(20))
    item_collection(tmp_path / "items.json", cut_items(sc, tmp_path / "items"))
    local = _recipe(tmp_path, "local", None, {"optical": {"bands": [
        {"file": "red.tif", "name": "red"}, {"file": "swir.tif", "name": "swir"}]}})
    remote = _recipe(tmp_path, "stac", {"catalog": "items.json"}, {"optical": {"stac": {
        "collection": "synthetic-s2", "assets": {"red": "red", "swir": "swir"},
        "composite": "first"}}})
    stack(load_recipe(local), out=tmp_path / "s_local")
    stack(load_recipe(remote), out=tmp_path / "s_stac")
    a, b = _layers(tmp_path / "s_local"), _layers(tmp_path / "s_stac")
    assert sorted(a) == sorted(b) == ["optical/10m", "optical/20m"]
    for key in a:
        assert a[key][0].dtype == b[key][0].dtype
        np.testing.assert_array_equal(a[key][0], b[key][0])
        np.testing.assert_array_equal(a[key][1], b[key][1])
    # the second run finds its composites in the cache and the store up to date
    again = stack(load_recipe(remote), out=tmp_path / "s_stac")
    assert again[0].up_to_date


def _dated(tmp_path: Path) -> tuple[list[np.ndarray], list[np.ndarray], Path]:
    """Three acquisitions of the same footprint, each with an SCL-like 20 m mask."""
    reds, masks, items = [], [], []
    rng = np.random.default_rng(7)
    for i, day in enumerate(("2021-06-01", "2021-06-11", "2021-06-21")):
        sc = make_scene(seed=10 + i)
        red = sc.red.copy()
        red[:5, :7] = 0  # nodata
        scl = rng.choice(np.array([4, 5, 9, 3], np.uint8), size=sc.swir.shape,
                         p=[0.5, 0.2, 0.2, 0.1])
        red_p = write_tif(tmp_path / f"d{i}_red.tif", red, sc.transform(10))
        scl_p = write_tif(tmp_path / f"d{i}_scl.tif", scl, sc.transform(20), nodata=None)
        items.append(item(f"d{i}", f"{day}T10:00:00Z", {"red": red_p, "scl": scl_p},
                          cloud=10.0 * i))
        reds.append(red)
        masks.append(np.repeat(np.repeat(scl, 2, 0), 2, 1))
    return reds, masks, item_collection(tmp_path / "dated.json", items)


@pytest.mark.parametrize("method", ["median", "mean", "first"])
def test_composite_equals_numpy_over_the_masked_items(tmp_path, method):
    reds, masks, catalog = _dated(tmp_path)
    rec = _recipe(tmp_path, "dated", {"catalog": str(catalog), "datetime":
                                      "2021-06-01/2021-06-30"},
                  {"optical": {"stac": {"collection": "synthetic-s2", "assets": {"red": "red"},
                                        "mask": {"asset": "scl", "drop": [3, 8, 9, 10]},
                                        "composite": method, "order": "newest"}}})
    [mod] = resolve(load_recipe(rec)).modalities
    with rasterio.open(mod.bands[0].path) as src:
        got = src.read(1)
        assert src.crs == UTM33 and src.res == (10.0, 10.0)
    obs = np.stack([np.where((r == 0) | np.isin(m, [3, 9]), np.nan, r.astype(np.float64))
                    for r, m in zip(reds, masks, strict=True)])
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):  # all-NaN pixels
        want = np.nanmedian(obs, axis=0) if method == "median" else np.nanmean(obs, axis=0)
    if method == "first":
        # newest first: the last acquisition wins where it is valid
        want = obs[2].copy()
        for o in (obs[1], obs[0]):
            want = np.where(np.isnan(want), o, want)
    win = (slice(3, 90), slice(5, 130))
    if method == "first":  # the items' own type and nodata (0) where nothing was seen
        assert got.dtype == np.uint16
        want = np.nan_to_num(want, nan=0.0)
    np.testing.assert_allclose(got[win], want[win].astype(got.dtype), rtol=1e-6)
    assert (got[:5, :7] == 0).all() if method == "first" else np.isnan(got[:5, :7]).all()


def test_items_in_three_utm_zones_land_where_gdal_warps_them(tmp_path):
    """Items in UTM 32, 33 and 34 near 15 deg E, each with a bright square: the composite
    (in the CRS most items are in) has each square where GDAL's warp of its file puts it."""
    utm = {32: CRS.from_epsg(32632), 33: UTM33, 34: CRS.from_epsg(32634)}
    # origins (metres in each zone) of 3 km x 3 km items around 52.0 N, 14.9-15.1 E
    origins = {"z32": (32, (887_000.0, 5_770_000.0)), "z33a": (33, (499_000.0, 5_766_000.0)),
               "z33b": (33, (501_000.0, 5_768_000.0)), "z34": (34, (110_000.0, 5_777_000.0))}
    items, files = [], {}
    for name, (zone, (x0, y0)) in origins.items():
        arr = np.full((300, 300), 100, np.uint16)
        arr[140:160, 140:160] = 5000
        path = write_tif(tmp_path / f"{name}.tif", arr, Affine(10, 0, x0, 0, -10, y0),
                         crs=utm[zone])
        files[name] = path
        items.append(item(name, "2021-06-01T10:00:00Z", {"red": path}, crs=utm[zone]))
    catalog = item_collection(tmp_path / "zones.json", items)
    rec = load_recipe(_recipe(tmp_path, "zones", {"catalog": str(catalog)}, {"optical": {
        "stac": {"collection": "synthetic-s2", "assets": {"red": "red"},
                 "composite": "first"}, "resampling": "nearest"}}))
    [p] = plan(rec)
    grid = p.bands[0].grid
    assert grid.crs == UTM33  # two of four items
    [mod] = resolve(rec, plans=[p]).modalities
    with rasterio.open(mod.bands[0].path) as src:
        got = src.read(1)
    for name, path in files.items():
        with rasterio.open(path) as src:
            want = np.zeros((grid.height, grid.width), np.uint16)
            reproject(rasterio.band(src, 1), want, dst_transform=grid.transform,
                      dst_crs=grid.crs, resampling=Resampling.nearest, dst_nodata=0)
        square = want == 5000
        assert square.sum() > 200, name
        rows, cols = np.nonzero(square)
        bright = (got == 5000) & (np.abs(np.arange(grid.height)[:, None] - rows.mean()) < 30) \
            & (np.abs(np.arange(grid.width)[None, :] - cols.mean()) < 30)
        r2, c2 = np.nonzero(bright)
        assert abs(r2.mean() - rows.mean()) <= 1 and abs(c2.mean() - cols.mean()) <= 1, name


def test_plan_names_items_dates_cloud_crs_and_bytes(tmp_path):
    _, _, catalog = _dated(tmp_path)
    rec = load_recipe(_recipe(tmp_path, "dated", {"catalog": str(catalog)}, {"optical": {
        "stac": {"collection": "synthetic-s2", "assets": {"red": "red"},
                 "mask": {"asset": "scl", "drop": [9]}}}}))
    plans = plan(rec)
    text = describe_plan(rec, plans)
    assert "3 item(s) of synthetic-s2, median composite" in text
    for i, day in enumerate(("2021-06-01", "2021-06-11", "2021-06-21")):
        assert f"d{i}  {day}T10:00:00+00:00  cloud {10 * i} %  EPSG:32633" in text
    assert "band red (asset red): 160 x 120 px at 10 EPSG:32633" in text
    size = sum((tmp_path / f"d{i}_{b}.tif").stat().st_size for i in range(3)
               for b in ("red", "scl"))
    assert plans[0].expected_bytes() == pytest.approx(size, rel=0.01)
    assert not (tmp_path / "cache" / "stac").exists()  # a plan writes nothing


def test_faults_are_one_line_errors_and_write_nothing(tmp_path):
    _, _, catalog = _dated(tmp_path)

    def run(stac: dict, spec: dict) -> str:
        rec = _recipe(tmp_path, "bad", {"catalog": str(catalog), **stac},
                      {"optical": {"stac": {"collection": "synthetic-s2", **spec}}})
        with pytest.raises(GeommError) as err:
            stack(load_recipe(rec), out=tmp_path / "store")
        assert not (tmp_path / "store").exists()
        assert "\n" not in str(err.value)
        return str(err.value)

    red = {"assets": {"red": "red"}}
    msg = run({"datetime": "2020-01-01/2020-02-01"}, red)
    assert "no items found" in msg and "datetime 2020-01-01/2020-02-01" in msg
    msg = run({}, {**red, "query": {"eo:cloud_cover": {"gt": 50}}})
    assert 'query {"eo:cloud_cover": {"gt": 50}}' in msg
    msg = run({}, {"assets": {"red": "red", "nir": "B08"}})
    assert "item 'd2' has no asset 'B08'" in msg  # newest first and "red, scl" in msg
    (tmp_path / "d1_red.tif").unlink()
    with pytest.raises(RasterReadError, match="d1_red.tif: no such file"):
        resolve(load_recipe(_recipe(tmp_path, "gone", {"catalog": str(catalog)},
                                    {"optical": {"stac": {"collection": "synthetic-s2",
                                                          **red}}})))
    assert not (tmp_path / "cache" / "stac").exists()


def test_api_down_is_a_one_line_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rec = load_recipe(_recipe(tmp_path, "down", {"api": f"http://127.0.0.1:{port}/"},
                              {"optical": {"stac": {"collection": "c", "assets": {"r": "r"}}}}))
    with pytest.raises(GeommError, match=f"stac.api http://127.0.0.1:{port}/: cannot reach"):
        plan(rec)


@pytest.mark.parametrize("doc, match", [
    ({"preset": "sentinel-2-l2a/nowhere"}, "is not known; presets: sentinel-2-l2a/earth"),
    ({"preset": "sentinel-2-l2a/earth-search", "bands": ["B02", "red"]},
     r"\['red'\] not in preset"),
    ({"collection": "c"}, "list `assets:`"),
    ({"collection": "c", "assets": {"r": "r"}, "composite": "max"}, "not one of median"),
    ({"collection": "c", "assets": {"r": "r"}, "mask": {"asset": "scl"}}, "name the values"),
    ({"collection": "c", "assets": {"r": "r"}, "query": {"eo:cloud_cover": {"below": 3}}},
     r"operator\(s\) \['below'\]"),
])
def test_bad_stac_blocks_name_the_key(tmp_path, doc, match):
    path = _recipe(tmp_path, "bad", {"catalog": "x.json"}, {"optical": {"stac": doc}})
    with pytest.raises(RecipeError, match=match):
        load_recipe(path)


def test_preset_fills_collection_bands_mask_and_scale(tmp_path):
    rec = load_recipe(_recipe(tmp_path, "s2", {"api": "https://example.invalid/v1",
                                               "bbox": [14.2, 51.9, 14.5, 52.1]},
                              {"visible": {"stac": {"preset": "sentinel-2-l2a/earth-search",
                                                    "bands": ["B02", "B03", "B04"]}}}))
    [m] = rec.modalities
    assert m.band_names == ("B02", "B03", "B04") and m.scale == 0.0001
    assert m.stac is not None and m.stac.assets == (("B02", "blue"), ("B03", "green"),
                                                    ("B04", "red"))
    assert m.stac.mask is not None and m.stac.mask.asset == "scl" and 9 in m.stac.mask.drop
    with pytest.raises(RecipeError, match="must be searched and composited first"):
        rec.scene_inputs()


def test_stack_dry_run_prints_the_plan_and_writes_nothing(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from geomm.cli import main

    _, _, catalog = _dated(tmp_path)
    rec = _recipe(tmp_path, "dry", {"catalog": str(catalog)}, {"optical": {"stac": {
        "collection": "synthetic-s2", "assets": {"red": "red"}}}})
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["stack", str(rec), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "STAC plan for dry" in res.output and "3 item(s) of synthetic-s2" in res.output
    assert "MB to read in all" in res.output
    assert not (tmp_path / "tiles").exists() and not (tmp_path / "cache").exists()
    res = CliRunner().invoke(main, ["stack", str(rec)])
    assert res.exit_code == 0, res.output
    assert res.output.index("STAC plan for dry") < res.output.index("scene dry ->")


def test_seasons_become_one_modality_each_and_an_area_file_bounds_the_search(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    reds, masks, catalog = _dated(tmp_path)
    # the area: the western half of the scene (a polygon in UTM; its bbox in degrees)
    gpd.GeoDataFrame(geometry=[box(400_000, 5_798_820, 400_800, 5_800_020)],
                     crs="EPSG:32633").to_file(tmp_path / "area.gpkg")
    rec = load_recipe(_recipe(tmp_path, "seasons", {"catalog": str(catalog),
                                                    "area": "area.gpkg"}, {"optical": {
        "stac": {"collection": "synthetic-s2", "assets": {"red": "red"},
                 "mask": {"asset": "scl", "drop": [9]},
                 "seasons": {"early": "2021-06-01/2021-06-05",
                             "late": "2021-06-15/2021-06-30"}}}}))
    assert [m.name for m in rec.modalities] == ["optical_early", "optical_late"]
    plans = plan(rec)
    assert [len(p.items) for p in plans] == [1, 1]
    assert [p.items[0]["id"] for p in plans] == ["d0", "d2"]
    mods = resolve(rec, plans=plans).modalities
    for mod, i in zip(mods, (0, 2), strict=True):
        with rasterio.open(mod.bands[0].path) as src:
            got = src.read(1)
            assert src.bounds.left == 400_000 and src.bounds.right >= 400_800
            assert src.width < 160  # stops near the area's east edge, not the scene's
        want = np.where((reds[i] == 0) | np.isin(masks[i], [9]), np.nan,
                        reds[i].astype(np.float32))[:, : got.shape[1]]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(got[~np.isnan(got)], want[~np.isnan(want)])


def test_items_that_describe_their_assets_are_planned_without_reading_them(tmp_path):
    """proj:shape / proj:transform / proj:epsg and raster:bands data_type + nodata say all a
    header would: the plan is the same, and needs no request to the files."""
    import json

    _, _, catalog = _dated(tmp_path)
    doc = json.loads(catalog.read_text())
    for it in doc["features"]:
        for asset in it["assets"].values():
            with rasterio.open(asset["href"]) as src:
                asset.update({"proj:shape": [src.height, src.width],
                              "proj:transform": list(src.transform)[:6],
                              "raster:bands": [{"data_type": src.dtypes[0],
                                                "nodata": src.nodata}]})
    described = tmp_path / "described.json"
    described.write_text(json.dumps(doc))

    def reads(cat: Path) -> list:
        rec = load_recipe(_recipe(tmp_path, "d", {"catalog": str(cat)}, {"optical": {"stac": {
            "collection": "synthetic-s2", "assets": {"red": "red"},
            "mask": {"asset": "scl", "drop": [9]}}}}))
        [p] = plan(rec)
        return [(r.item, r.crs, r.transform, r.width, r.height, r.dtype, r.nodata)
                for r in (*p.bands[0].reads, *p.bands[0].masks)]

    assert reads(described) == reads(catalog)
    for i in range(3):
        (tmp_path / f"d{i}_red.tif").unlink()
    assert len(reads(described)) == 6  # planned from the metadata alone
    with pytest.raises(RasterReadError, match="d2_red.tif: no such file"):  # newest first
        reads(catalog)


def test_a_changed_nodata_makes_a_new_composite_not_the_cached_one(tmp_path):
    reds, masks, catalog = _dated(tmp_path)
    v = int(reds[2][40, 60])  # a value of the newest item, masked by the second recipe

    def first(nodata: int | None) -> tuple[Path, np.ndarray]:
        stac = {"collection": "synthetic-s2", "assets": {"red": "red"}, "composite": "first",
                "order": "newest", "mask": {"asset": "scl", "drop": [3, 8, 9, 10]}}
        mod = {"stac": stac, **({"nodata": nodata} if nodata is not None else {})}
        rec = _recipe(tmp_path, f"nd{nodata}", {"catalog": str(catalog), "datetime":
                                                "2021-06-01/2021-06-30"}, {"optical": mod})
        [m] = resolve(load_recipe(rec)).modalities
        with rasterio.open(m.bands[0].path) as src:
            return m.bands[0].path, src.read(1)

    path0, plain = first(None)
    path1, masked = first(v)
    assert path0 != path1
    # the recipe's nodata replaces the items' own (0)
    obs = [np.where((r == v) | np.isin(m, [3, 9]), -1, r.astype(np.int64))
           for r, m in zip(reds, masks, strict=True)]
    want = obs[2].copy()
    for o in (obs[1], obs[0]):
        want = np.where(want < 0, o, want)
    was_v = (reds[2] == v) & ~np.isin(masks[2], [3, 9])
    assert was_v.any() and (plain[was_v] == v).all()
    win = (slice(3, 90), slice(5, 130))
    seen = (want >= 0)[win]
    np.testing.assert_array_equal(masked[win][seen], want[win][seen])
    assert (masked[win][~seen] == v).all()  # nodata of the output: the recipe's


def test_items_with_and_without_a_raster_bands_scale_are_not_composited_together(tmp_path):
    import json

    _, _, catalog = _dated(tmp_path)
    doc = json.loads(catalog.read_text())
    doc["features"][0]["assets"]["red"]["raster:bands"] = [{"scale": 0.0001, "offset": 0.0}]
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(doc))
    rec = load_recipe(_recipe(tmp_path, "mixed", {"catalog": str(mixed)}, {"optical": {"stac": {
        "collection": "synthetic-s2", "assets": {"red": "red"}, "composite": "median"}}}))
    with pytest.raises(RecipeError, match=r"band red: items d0 declare a raster:bands "
                                          r"scale/offset and items d2, d1 do not"):
        plan(rec)
    for it in doc["features"]:  # every item declares it: composited in physical units
        it["assets"]["red"]["raster:bands"] = [{"scale": 0.0001, "offset": 0.0}]
    mixed.write_text(json.dumps(doc))
    assert plan(rec)[0].physical


def test_an_asset_that_is_not_a_raster_is_named_without_server_advice(tmp_path):
    import json

    _, _, catalog = _dated(tmp_path)
    doc = json.loads(catalog.read_text())
    notes = tmp_path / "notes.tif"
    notes.write_text("not a raster\n" * 100)
    doc["features"][0]["assets"]["red"]["href"] = str(notes)
    catalog.write_text(json.dumps(doc))
    rec = load_recipe(_recipe(tmp_path, "text", {"catalog": str(catalog)}, {"optical": {
        "stac": {"collection": "synthetic-s2", "assets": {"red": "red"}}}}))
    with pytest.raises(RasterReadError, match=r"notes.tif: cannot read it as a raster \(.*asset "
                                              r"'red' of item 'd0'\); check that it is one"):
        plan(rec)

