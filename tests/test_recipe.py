"""Recipes: every key validated when loaded, errors that name the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from geomm.errors import RecipeError
from geomm.recipe import bundled_recipes, load_recipe

BASE = {"name": "r", "data_root": ".",
        "modalities": {"vis": {"file": "img_{band}.tif", "bands": ["B02", "B03"], "nodata": 0,
                               "scale": 0.0001}},
        "tiling": {"size": 120, "halo": 12}}


def write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def test_band_templates_and_defaults(tmp_path):
    r = load_recipe(write(tmp_path, BASE))
    (scene,) = r.scene_inputs()
    (vis,) = scene.modalities
    assert [b.path for b in vis.bands] == [tmp_path / "img_B02.tif", tmp_path / "img_B03.tif"]
    assert vis.nodata == 0.0 and vis.scale == 0.0001 and vis.warp_resampling == "bilinear"
    assert r.grid.extent == "intersection" and r.tiling.size == 120 and r.tiling.halo == 12


@pytest.mark.parametrize("patch,words", [
    ({"tilling": {}}, ["tilling", "allowed", "tiling"]),
    ({"modalities": {"vis": {"bands": ["B02"]}}}, ["modalities.vis.bands[0]", "file"]),
    ({"modalities": {"vis": {"file": "x", "bands": ["B1"], "resampling": "fancy"}}},
     ["fancy", "bilinear", "nearest"]),
    ({"modalities": {"vis": {"file": "x", "bands": ["B1"], "nodata": "zero"}}},
     ["modalities.vis.nodata", "float", "'zero'"]),
    ({"grid": {"extent": "everything"}}, ["grid.extent", "everything", "union"]),
    ({"tiling": {"size": "big"}}, ["tiling.size", "int"]),
    ({"labels": {"vector": "a.gpkg"}}, ["labels", "class_column"]),
    ({"labels": {"vector": "a.gpkg", "raster": "b.tif", "class_column": "c"}},
     ["exactly one"]),
    ({"modalities": {"vis": {"file": "x", "bands": ["B1", "B1"]}}}, ["B1", "twice"]),
    ({"labels": {"raster": "b.tif", "classes": ["a", "b"]}}, ["labels.classes", "values"]),
    ({"labels": {"raster": "b.tif", "layer": "x"}}, ["labels.layer", "raster", "remove"]),
    ({"name": "a/b"}, ["name", "'/'"]),
])
def test_bad_keys_are_named_with_the_fix(tmp_path, patch, words):
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, {**BASE, **patch}))
    msg = str(info.value)
    assert "recipe.yaml" in msg and "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_scene_placeholders_filled_and_missing_one_named(tmp_path):
    doc = {**BASE, "modalities": {"s1": {"file": "{s1}/{s1}_{band}.tif", "bands": ["VV"]}},
           "scenes": [{"id": "a", "s1": "S1A_X"}, {"id": "b", "s2": "S2"}]}
    r = load_recipe(write(tmp_path, doc))
    with pytest.raises(RecipeError, match=r"scenes\[1\].*\{s1\}.*'s1'"):
        r.scene_inputs()
    doc["scenes"] = doc["scenes"][:1]
    (scene,) = load_recipe(write(tmp_path, doc)).scene_inputs()
    assert scene.id == "a"
    assert scene.modalities[0].bands[0].path == tmp_path / "S1A_X" / "S1A_X_VV.tif"


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe file.*s2-landcover"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML at line 2"):
        load_recipe(bad)
    for text, words in (("", "is empty"), ("- a\n- b\n", "a list, not a mapping")):
        bad.write_text(text)
        with pytest.raises(RecipeError, match=words) as info:
            load_recipe(bad)
        assert str(info.value).count("bad.yaml") == 1 and "modalities" in str(info.value)


def test_bundled_recipes_load_by_name():
    assert {"s2-landcover", "s1s2-bigearthnet"} <= set(bundled_recipes())
    s2 = load_recipe("s2-landcover")
    assert [m.name for m in s2.modalities] == ["visible", "infrared", "multispectral"]
    assert s2.modalities[1].band_names == ("B08", "B11", "B12")
    assert s2.labels is not None and s2.labels.class_column == "fclass"
    assert s2.labels.classes is not None and len(s2.labels.classes) == 8
    assert s2.tiling.size % 6 == 0 and s2.tiling.halo % 6 == 0
    ben = load_recipe("s1s2-bigearthnet")
    assert len(ben.scenes) == 6 and all(isinstance(s["id"], str) for s in ben.scenes)
    assert ben.labels is not None and ben.labels.kind == "json-multilabel"


def test_numeric_band_names_are_names(tmp_path):
    doc = {**BASE, "modalities": {"tm": {"file": "L7_B{band}.tif", "bands": [10, 20, 30]},
                                  "pan": {"bands": [{"file": "p.tif", "name": 80}]}}}
    (scene,) = load_recipe(write(tmp_path, doc)).scene_inputs()
    tm, pan = scene.modalities
    assert [b.name for b in tm.bands] == ["10", "20", "30"]
    assert tm.bands[0].path == tmp_path / "L7_B10.tif"
    assert pan.bands[0].name == "80"
