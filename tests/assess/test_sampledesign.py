"""`geomm sample-design`: allocation arithmetic, where the points land, and the round trip."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from _evaldata import T10, write_class_map
from click.testing import CliRunner

from geomm.assess.sampledesign import allocate, sample_design
from geomm.cli import main
from geomm.errors import GeommError

NAMES = ("water", "forest", "crop", "urban")


@pytest.mark.parametrize(("allocation", "ua", "floor", "want"), [
    ("proportional", None, 0, [6, 3, 1, 0]),
    ("equal", None, 0, [4, 3, 3, 0]),
    ("neyman", [0.9, 0.5, 0.5, 0.5], 0, [5, 4, 1, 0]),   # W*S = 180, 150, 50
    ("proportional", None, 3, [4, 3, 3, 0]),
])
def test_allocation(allocation, ua, floor, want):
    got = allocate(np.array([600, 300, 100, 0]), 10, allocation,
                   expected_ua=None if ua is None else np.array(ua), min_per_class=floor)
    assert got.tolist() == want


def test_minimum_that_cannot_fit_is_an_error():
    with pytest.raises(GeommError, match="needs 15 points, more than -n 10"):
        allocate(np.array([5, 5, 5]), 10, min_per_class=5)


@pytest.fixture
def map_tif(tmp_path):
    classes = np.zeros((80, 100), np.uint8)
    classes[:, 40:] = 1
    classes[50:, :] = 2
    classes[:20, :20] = 255            # nodata
    classes[70:72, 0:2] = 3            # urban: 4 pixels only
    return write_class_map(tmp_path / "classes.tif", classes, NAMES), classes


def test_points_sit_on_pixel_centres_of_their_map_class(map_tif, tmp_path):
    path, classes = map_tif
    d = sample_design(path, 200, tmp_path / "pts.gpkg", seed=1)
    pts = gpd.read_file(tmp_path / "pts.gpkg", layer="samples")
    assert list(pts.columns) == ["point_id", "map_class_id", "map_class", "reference",
                                 "geometry"]
    assert pts["point_id"].tolist() == list(range(1, 201))
    assert (pts["reference"].fillna("") == "").all()
    col, row = ~T10 @ (pts.geometry.x.to_numpy(), pts.geometry.y.to_numpy())
    assert np.allclose(col % 1, 0.5) and np.allclose(row % 1, 0.5)
    r, c = row.astype(int), col.astype(int)
    assert (classes[r, c] == pts["map_class_id"].to_numpy()).all()   # never nodata
    assert pts["map_class"].tolist() == [NAMES[k] for k in pts["map_class_id"]]
    assert len(set(zip(r, c, strict=True))) == 200                  # no pixel twice
    counts = np.bincount(pts["map_class_id"], minlength=4).tolist()
    assert counts == list(d.drawn) == list(d.allocated)
    mapped = [int((classes == k).sum()) for k in range(4)]
    assert list(d.mapped_px) == mapped
    assert counts == allocate(np.array(mapped), 200).tolist()
    assert pts.crs.to_epsg() == 32633


def test_seed_gives_the_same_points_and_another_seed_others(map_tif, tmp_path):
    path, _ = map_tif
    xy = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        sample_design(path, 40, tmp_path / f"{name}.gpkg", seed=seed, allocation="equal")
        g = gpd.read_file(tmp_path / f"{name}.gpkg")
        xy.append(sorted(zip(g.geometry.x, g.geometry.y, strict=True)))
    assert xy[0] == xy[1] and xy[0] != xy[2]


def test_a_class_smaller_than_its_allocation_gives_all_its_pixels(map_tif, tmp_path):
    path, _ = map_tif
    d = sample_design(path, 40, tmp_path / "pts.gpkg", allocation="equal")
    assert d.allocated[3] == 10 and d.drawn[3] == 4 and sum(d.drawn) == 34
    assert any("'urban' has only 4 pixels for 10 allocated points" in n for n in d.notes)


def test_cli_neyman_with_expected_accuracies_and_no_overwrite(map_tif, tmp_path):
    path, _ = map_tif
    out = tmp_path / "pts.gpkg"
    args = ["sample-design", str(path), "-n", "60", "--allocation", "neyman",
            "--expected-ua", "water=0.6", "--expected-ua", "crop=0.95", "-o", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "expected user's accuracy 0.8 assumed for forest, urban" in res.output
    assert "60 points (neyman allocation, seed 0)" in res.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "pass --overwrite" in again.output
    bad = CliRunner().invoke(main, [*args[:-2], "--expected-ua", "lake=0.5", "-o",
                                    str(tmp_path / "x.gpkg")])
    assert bad.exit_code == 1 and "'lake'" in bad.output


def test_labelled_sample_round_trip_through_evaluate(map_tif, tmp_path):
    """Points drawn, labelled in 'QGIS' (here: the map is right except on 10 points), then
    evaluated: the error matrix is what was labelled."""
    path, classes = map_tif
    out = tmp_path / "pts.gpkg"
    sample_design(path, 120, out, allocation="equal", seed=3)
    pts = gpd.read_file(out)
    wrong = pts.index[:10]
    pts["reference"] = pts["map_class"]
    pts.loc[wrong, "reference"] = [("water" if m != "water" else "crop")
                                   for m in pts.loc[wrong, "map_class"]]
    pts.to_file(out, layer="samples", driver="GPKG")
    res = CliRunner().invoke(main, ["evaluate", str(path), str(out), "-o",
                                    str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    counts = np.array(m["error_matrix"]["counts"])
    assert counts.sum() == len(pts) and np.trace(counts) == len(pts) - 10
    with rasterio.open(path) as src:
        assert m["map"]["pixel_area_m2"] == abs(src.transform.a * src.transform.e)


def test_a_class_left_without_points_is_named_and_evaluate_says_why_no_areas(map_tif,
                                                                              tmp_path):
    path, _ = map_tif
    out = tmp_path / "pts.gpkg"
    d = sample_design(path, 20, out)  # proportional: the 4-pixel class gets none
    assert d.drawn[3] == 0
    assert any("mapped classes 'urban' get fewer than 2 points" in n for n in d.notes)
    pts = gpd.read_file(out)
    pts["reference"] = pts["map_class"]
    pts.to_file(out, layer="samples", driver="GPKG")
    res = CliRunner().invoke(main, ["evaluate", str(path), str(out), "-o",
                                    str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "geomm: warning: no area estimates: map classes 'urban'" in res.output


def test_a_design_evaluated_against_another_map_is_named(map_tif, tmp_path):
    path, classes = map_tif
    out = tmp_path / "pts.gpkg"
    sample_design(path, 60, out, allocation="equal", min_per_class=2, seed=2)
    pts = gpd.read_file(out)
    pts["reference"] = pts["map_class"]
    pts.to_file(out, layer="samples", driver="GPKG")
    other = classes.copy()
    other[:, 70:] = 2  # part of forest is crop in this map
    other_tif = write_class_map(tmp_path / "other.tif", other, NAMES)
    with rasterio.open(other_tif) as src:
        rows, cols = rasterio.transform.rowcol(src.transform, pts.geometry.x, pts.geometry.y)
    moved = int(sum(other[r, c] != classes[r, c] for r, c in zip(rows, cols, strict=True)))
    assert moved > 0
    res = CliRunner().invoke(main, ["evaluate", str(other_tif), str(out), "-o",
                                    str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert f"{moved} design point" in res.output and "than the one it was drawn from" in \
        res.output
    same = CliRunner().invoke(main, ["evaluate", str(path), str(out), "-o",
                                     str(tmp_path / "rep2")])
    assert "drawn from" not in same.output
