"""geomm stack: the tile store on synthetic scenes and on the real samples."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import xarray as xr
import yaml
from affine import Affine
from click.testing import CliRunner
from shapely.geometry import box

from geomm.cli import main
from geomm.errors import CRSMissingError, GridError, LabelError, RecipeError, StoreError
from geomm.recipe import load_recipe
from geomm.stack.build import stack
from geomm.stack.store import open_store
from geomm.stack.windows import tile_windows

X0, Y0 = 500000.0, 5800000.0


@pytest.fixture
def scene(tmp_path, make_raster, rng):
    """10/20/60 m bands over 1.2 km, polygons in EPSG:4326, and a recipe that uses them."""
    arrays = {"b10": rng.integers(1, 5000, (120, 120), dtype=np.uint16),
              "b20": rng.integers(1, 5000, (60, 60), dtype=np.uint16),
              "b60": rng.integers(1, 5000, (20, 20), dtype=np.uint16)}
    for name, arr in arrays.items():
        f = {"b10": 10, "b20": 20, "b60": 60}[name]
        make_raster(f"{name}.tif", arr, transform=Affine(f, 0, X0, 0, -f, Y0))
    polys = gpd.GeoDataFrame(
        {"cls": ["crop", "forest", "water"]},
        geometry=[box(X0, Y0 - 300, X0 + 300, Y0), box(X0 + 600, Y0 - 1200, X0 + 1200, Y0 - 600),
                  box(X0 + 100, Y0 - 1100, X0 + 200, Y0 - 1000)], crs="EPSG:32633")
    polys.to_crs("EPSG:4326").to_file(tmp_path / "labels.gpkg")
    doc = {"name": "synth", "data_root": ".",
           "modalities": {"optical": {"bands": [{"file": "b10.tif", "name": "B1"},
                                                {"file": "b20.tif", "name": "B2"}]},
                          "coarse": {"file": "{band}.tif", "bands": ["b60"]}},
           "labels": {"vector": "labels.gpkg", "class_column": "cls"},
           "tiling": {"size": 60, "halo": 12}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, arrays, doc


def test_store_holds_native_layers_labels_and_index(scene, tmp_path):
    recipe_path, arrays, _ = scene
    out = tmp_path / "store"
    (summary,) = stack(load_recipe(recipe_path), out=out)
    assert not summary.up_to_date
    store = open_store(out)
    assert store.layer_keys == ["optical/10m", "optical/20m", "coarse/60m"]
    for key, name in [("optical/10m", "b10"), ("optical/20m", "b20"), ("coarse/60m", "b60")]:
        ds = store.layer(key)
        np.testing.assert_array_equal(ds["data"].values[0], arrays[name])
        assert ds["data"].dtype == np.uint16 and bool(ds["valid"].all())
    assert store.layer("optical/20m")["data"].encoding["chunks"] == (1, 30, 30)
    base = store.base()
    labels = base["labels"].values
    table = store.manifest["classes"]
    names = [c["name"] for c in table["classes"]]
    assert names == ["crop", "forest", "water"]
    assert (labels[:30, :30] == 0).all() and (labels[60:, 60:] == 1).all()
    assert (labels[100:110, 10:20] == 2).all() and labels[50, 50] == table["ignore_value"]
    assert np.array_equal(store.labels(), labels) and store.labels() is store.labels()  # once
    assert not store.labels().flags.writeable and store.ignore_value == table["ignore_value"]
    assert store.manifest["label_pixels"] == {"crop": 900, "forest": 3600, "water": 100}
    index = store.index()
    assert list(index.tile_id) == ["r000c000", "r000c001", "r001c000", "r001c001"]
    assert index.crs.to_epsg() == 32633
    assert tuple(index.total_bounds) == (X0, Y0 - 1200, X0 + 1200, Y0)
    r = index.set_index("tile_id")
    assert r.loc["r001c001", "frac_forest"] == 1.0 and r.loc["r000c000", "frac_crop"] == 0.25
    assert np.allclose(r[["frac_crop", "frac_forest", "frac_water"]].sum(axis=1),
                       r["labelled_fraction"])


def test_tiles_read_with_halo_padded_at_the_edge(scene, tmp_path):
    recipe_path, arrays, _ = scene
    out = tmp_path / "store"
    stack(load_recipe(recipe_path), out=out)
    store = open_store(out)
    tiles = list(tile_windows(120, 120, 60))
    t = store.read_tile(tiles[3])  # bottom-right: halo runs off two edges
    assert t["optical/10m"].shape == (1, 84, 84)
    assert t["optical/20m"].shape == (1, 42, 42) and t["coarse/60m"].shape == (1, 14, 14)
    np.testing.assert_array_equal(t["optical/10m"][0, :72, :72], arrays["b10"][48:, 48:])
    assert not t["valid"][72:, :].any() and t["valid"][:72, :72].all()
    assert (t["labels"][72:, :] == 255).all()
    core = store.read_tile(tiles[3], halo=0)
    assert core["optical/10m"].shape == (1, 60, 60)


def test_rerun_is_noop_and_changed_input_needs_overwrite(scene, tmp_path, make_raster, rng):
    recipe_path, _, _ = scene
    out = tmp_path / "store"
    stack(load_recipe(recipe_path), out=out)
    manifest = (out / "geomm-store.json").read_text()
    (again,) = stack(load_recipe(recipe_path), out=out)
    assert again.up_to_date and (out / "geomm-store.json").read_text() == manifest
    new = rng.integers(1, 5000, (120, 120), dtype=np.uint16)
    make_raster("b10.tif", new, transform=Affine(10, 0, X0, 0, -10, Y0))
    with pytest.raises(StoreError, match="--overwrite"):
        stack(load_recipe(recipe_path), out=out)
    assert (out / "geomm-store.json").read_text() == manifest  # old store untouched
    stack(load_recipe(recipe_path), out=out, overwrite=True)
    np.testing.assert_array_equal(open_store(out).layer("optical/10m")["data"].values[0], new)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".store")] == []


def test_never_replaces_a_folder_that_is_not_a_store(scene, tmp_path):
    recipe_path, _, _ = scene
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(StoreError, match="not a geomm tile store"):
            stack(load_recipe(recipe_path), out=out, overwrite=overwrite)
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("change,err,words", [
    ({"tiling": {"size": 64, "halo": 0}}, GridError, ["tiling.size", "multiple of 6"]),
    ({"labels": {"vector": "labels.gpkg", "class_column": "fclass"}}, LabelError,
     ["labels.gpkg", "fclass", "cls"]),
    ({"modalities": {"far": {"bands": [{"file": "far.tif", "name": "F"}]},
                     "coarse": {"file": "{band}.tif", "bands": ["b60"]}}},
     GridError, ["do not overlap", "far.tif", "b60.tif", "(505000.0"]),
    ({"modalities": {"nocrs": {"bands": [{"file": "nocrs.tif", "name": "N"}]}}},
     CRSMissingError, ["nocrs.tif", "no CRS"]),
    ({"modalities": {"optical": {"bands": [{"file": "b10.tif", "name": "B1", "index": 2}]}}},
     RecipeError, ["b10.tif", "index 2", "1 band"]),
])
def test_bad_input_writes_nothing(scene, tmp_path, make_raster, change, err, words):
    recipe_path, arrays, doc = scene
    make_raster("far.tif", arrays["b10"], transform=Affine(10, 0, X0 + 5000, 0, -10, Y0))
    make_raster("nocrs.tif", arrays["b10"], crs=None)
    recipe_path.write_text(yaml.safe_dump({**doc, **change}, sort_keys=False))
    out = tmp_path / "out" / "store"
    with pytest.raises(err) as info:
        stack(load_recipe(recipe_path), out=out)
    assert all(w in str(info.value) for w in words), str(info.value)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_a_band_in_another_crs_is_warped_into_the_store(scene, tmp_path, make_raster, rng):
    from rasterio.warp import transform_bounds

    recipe_path, _, doc = scene
    left, bottom, right, top = transform_bounds("EPSG:32633", "EPSG:4326",
                                                X0 - 100, Y0 - 1300, X0 + 1300, Y0 + 100)
    t = Affine((right - left) / 100, 0, left, 0, -(top - bottom) / 100, top)
    make_raster("geo.tif", rng.integers(1, 100, (100, 100), dtype=np.uint16), crs="EPSG:4326",
                transform=t)
    doc = {**doc, "modalities": {**doc["modalities"],
                                 "geo": {"bands": [{"file": "geo.tif", "name": "G"}]}}}
    recipe_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    (summary,) = stack(load_recipe(recipe_path), out=tmp_path / "w")
    layers = {lyr["key"]: lyr for lyr in summary.manifest["layers"]}
    geo = next(v for k, v in layers.items() if k.startswith("geo/"))
    assert "CRS" in geo["warped"]["G"] and layers["optical/10m"]["warped"] == {}
    ds = open_store(tmp_path / "w").layer(geo["key"])
    assert ds["valid"].values.mean() > 0.99 and int(ds["data"].values.min()) >= 1
    assert "warped: G: CRS" in summary.describe()


def test_a_scene_in_degrees_names_its_layers_in_degrees(scene, tmp_path, make_raster, rng):
    import warnings

    from rasterio.warp import transform_bounds

    recipe_path, _, doc = scene
    left, bottom, right, top = transform_bounds("EPSG:32633", "EPSG:4326",
                                                X0, Y0 - 1200, X0 + 1200, Y0)
    t = Affine((right - left) / 60, 0, left, 0, -(top - bottom) / 60, top)
    make_raster("geo.tif", rng.integers(1, 100, (60, 60), dtype=np.uint16), crs="EPSG:4326",
                transform=t)
    doc = {**doc, "modalities": {"geo": {"bands": [{"file": "geo.tif", "name": "G"}]}}}
    recipe_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        (summary,) = stack(load_recipe(recipe_path), out=tmp_path / "deg")
    assert open_store(tmp_path / "deg").layer_keys == [f"geo/{(right - left) / 60:g}deg"]
    assert "deg/px" in summary.describe()
    assert not [w for w in seen if "geographic CRS" in str(w.message)], \
        [str(w.message) for w in seen]
    assert summary.manifest["label_pixels"]["forest"] > 0


def test_recipe_labels_layer_picks_one_of_several(scene, tmp_path):
    recipe_path, _, doc = scene
    gpd.GeoDataFrame({"cls": ["road"]}, geometry=[box(X0, Y0 - 50, X0 + 50, Y0)],
                     crs="EPSG:32633").to_file(tmp_path / "labels.gpkg", layer="aaa_roads")
    with pytest.raises(LabelError, match="labels.layer"):
        stack(load_recipe(recipe_path), out=tmp_path / "none")
    assert not (tmp_path / "none").exists()
    doc = {**doc, "labels": {**doc["labels"], "layer": "labels"}}
    recipe_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    (summary,) = stack(load_recipe(recipe_path), out=tmp_path / "one")
    assert summary.manifest["label_pixels"] == {"crop": 900, "forest": 3600, "water": 100}


def test_multi_scene_recipe_checks_every_scene_before_writing(scene, tmp_path):
    recipe_path, _, doc = scene
    doc = {**doc, "modalities": {"optical": {"file": "{b}.tif", "bands": ["B"]}},
           "scenes": [{"id": "good", "b": "b10"}, {"id": "bad", "b": "missing"}], "labels": None}
    recipe_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(Exception, match="missing.tif"):
        stack(load_recipe(recipe_path), out=tmp_path / "multi")
    assert not (tmp_path / "multi" / "good").exists()


def test_cli_stack_prints_summary_and_errors_in_one_line(scene, tmp_path):
    recipe_path, _, doc = scene
    out = tmp_path / "cli-store"
    res = CliRunner().invoke(main, ["stack", str(recipe_path), "--out", str(out), "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "optical/20m" in res.output and "read as stored" in res.output
    assert "forest" in res.output and "tiles: 4 of 60 px" in res.output
    recipe_path.write_text(yaml.safe_dump({**doc, "tiling": {"size": 50}}, sort_keys=False))
    bad = CliRunner().invoke(main, ["stack", str(recipe_path), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geomm: error:") and "tiling.size" in lines[0]
    assert not (tmp_path / "x").exists()


@pytest.mark.e2e
def test_real_s2_sample_store_is_bit_identical_with_all_classes(s2_sample, tmp_path):
    (summary,) = stack(load_recipe("s2-landcover"), out=tmp_path / "s2")
    store = open_store(tmp_path / "s2")
    layers = {lyr["key"]: lyr for lyr in store.manifest["layers"]}
    assert {k: v["resolution"] for k, v in layers.items()} == {
        "visible/10m": 10, "infrared/10m": 10, "infrared/20m": 20, "multispectral/20m": 20,
        "multispectral/60m": 60}
    assert all(not v["warped"] for v in layers.values())
    bands = {b.name: b for m in s2_sample.scene.modalities.values() for b in m.bands}
    for key in layers:
        data = store.layer(key)["data"]
        for i, name in enumerate(data.band.values):
            with rasterio.open(bands[str(name)].path) as src:
                np.testing.assert_array_equal(data.values[i], src.read(1), err_msg=str(name))
    pixels = store.manifest["label_pixels"]
    assert set(pixels) == {"farm", "forest", "grass", "meadow", "residential", "scrub", "water",
                           "wetland"} and min(pixels.values()) > 1000
    labels = store.base()["labels"].values
    assert np.bincount(labels.ravel(), minlength=256)[:8].tolist() == list(pixels.values())
    index = store.index()
    assert len(index) == 8 and index.geometry.union_all().bounds == store.grid.bounds
    assert index["labelled_fraction"].mul(384 * 384).sum() == pytest.approx(sum(pixels.values()))


@pytest.mark.e2e
def test_real_bigearthnet_sample_stacks_every_scene(bigearthnet_sample, tmp_path):
    summaries = stack(load_recipe("s1s2-bigearthnet"), out=tmp_path / "ben")
    assert [s.scene for s in summaries] == ["87_48", "36_85", "4_55", "56_35", "69_24", "57_38"]
    epsgs = {s.manifest["grid"]["epsg"] for s in summaries}
    assert len(epsgs) >= 2  # several UTM zones, each scene on its own grid
    truth = {sc.name: sc for sc in bigearthnet_sample.scenes}
    for s in summaries:
        store = open_store(s.path)
        sar = store.layer("sar/10m")["data"]
        assert sar.dtype == np.float32 and sar.shape == (2, 120, 120)
        scene = next(v for k, v in truth.items() if k.endswith(s.scene))
        with rasterio.open(scene.modalities["sar"].bands[0].path) as src:
            np.testing.assert_array_equal(sar.values[0], src.read(1))
        expected = json.loads(Path(scene.labels.path).read_text())["labels"]
        assert s.manifest["scene_labels"] == expected
        assert len(s.manifest["classes"]["classes"]) == 43
        idx = store.index()
        assert all(idx[f"has_{n}"].all() for n in expected)
    assert isinstance(store.layer("multispectral/60m"), xr.Dataset)


def test_a_band_with_a_smaller_footprint_says_which_labels_it_costs(scene, tmp_path,
                                                                     make_raster):
    recipe_path, arrays, doc = scene
    b20 = arrays["b20"].copy()
    b20[:, 30:] = 0  # the 20 m band covers only the western half
    make_raster("b20.tif", b20, transform=Affine(20, 0, X0, 0, -20, Y0))
    doc["modalities"]["optical"]["nodata"] = 0
    recipe_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    (summary,) = stack(load_recipe(recipe_path), out=tmp_path / "half")
    m = summary.manifest
    layer = next(lyr for lyr in m["layers"] if lyr["key"] == "optical/20m")
    assert layer["valid_fraction"] == pytest.approx(0.5, abs=0.01)
    lost = m["label_pixels_without_data"]
    assert lost["forest"] == m["label_pixels"]["forest"] > 0  # all in the eastern half
    assert lost["crop"] == 0
    text = summary.describe()
    assert "data on 50.0 %" in text
    note = next(line for line in text.splitlines() if "without data" in line)
    assert "forest" in note and "optical/20m" in note and "crop" not in note
