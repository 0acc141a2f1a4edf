"""`geomm evaluate`: the published worked example end to end, and every kind of bad input."""

from __future__ import annotations

import json
import warnings

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from _evaldata import (
    OLOFSSON_COUNTS,
    OLOFSSON_MAPPED_PX,
    T10,
    centre,
    olofsson_example,
    write_class_map,
    write_points,
)
from click.testing import CliRunner
from shapely.geometry import box

from geomm.assess.accuracy import AccuracyError, ReferenceWarning, UnknownClassError, assess
from geomm.cli import main
from geomm.errors import GeommError

NAMES = ("water", "forest", "crop")


@pytest.fixture(scope="module")
def olofsson(tmp_path_factory):
    return olofsson_example(tmp_path_factory.mktemp("olofsson"))


def test_olofsson_2014_example_end_to_end(olofsson, tmp_path):
    """Olofsson et al. (2014) section 5, Tables 8-9: `geomm evaluate` on a 30 m map with the
    example's mapped areas and 640 points realising its error matrix gives the published
    estimates to the published precision (ha to the hectare, accuracies to 0.01)."""
    map_tif, points = olofsson
    res = CliRunner().invoke(main, ["evaluate", str(map_tif), str(points), "--sampling",
                                    "stratified", "-o", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["error_matrix"]["counts"] == [list(r) for r in OLOFSSON_COUNTS]
    est = m["estimates"]["per_class"]
    published_ha = {"Deforestation": (21158, 6158), "Forest gain": (11686, 3756),
                    "Stable forest": (285770, 15510), "Stable non-forest": (581386, 16282)}
    for name, (area, ci) in published_ha.items():
        got = est[name]["area_ha"]
        assert (round(got["value"]), round(got["ci95"])) == (area, ci), name
    published_ua = {"Deforestation": (0.88, 0.07), "Forest gain": (0.73, 0.10),
                    "Stable forest": (0.93, 0.04), "Stable non-forest": (0.96, 0.02)}
    for name, (ua, ci) in published_ua.items():
        got = est[name]["users_accuracy"]
        assert (round(got["value"], 2), round(got["ci95"], 2)) == (ua, ci), name
    # producer's accuracies as published; the paper's intervals for forest gain (0.23) and
    # stable non-forest (0.01) are not what its eq. 7 gives (0.25, 0.02), see test below
    published_pa = {"Deforestation": (0.75, 0.21), "Forest gain": (0.85, None),
                    "Stable forest": (0.93, 0.03), "Stable non-forest": (0.96, None)}
    for name, (pa, ci) in published_pa.items():
        got = est[name]["producers_accuracy"]
        assert round(got["value"], 2) == pa, name
        if ci is not None:
            assert round(got["ci95"], 2) == ci, name
    oa = m["estimates"]["overall_accuracy"]
    assert (round(oa["value"], 2), round(oa["ci95"], 2)) == (0.95, 0.02)
    assert est["Deforestation"]["mapped_ha"] == pytest.approx(18000.0)


def test_olofsson_producers_intervals_follow_equation_7(olofsson):
    """The two PA intervals the paper prints differently, computed by hand from eq. 7."""
    a = assess(*olofsson)
    e = a.estimates
    assert e is not None
    n = np.array(OLOFSSON_COUNTS, float)
    big_n = np.array(OLOFSSON_MAPPED_PX, float)
    n_i = n.sum(axis=1)
    for j in (1, 3):
        ua, pa = e.users[j].value, e.producers[j].value
        n_hat = (big_n * n[:, j] / n_i).sum()
        others = sum(big_n[i] ** 2 * n[i, j] / n_i[i] * (1 - n[i, j] / n_i[i]) / (n_i[i] - 1)
                     for i in range(4) if i != j)
        var = (big_n[j] ** 2 * (1 - pa) ** 2 * ua * (1 - ua) / (n_i[j] - 1)
               + pa**2 * others) / n_hat**2
        assert e.producers[j].se == pytest.approx(np.sqrt(var))
    assert (round(e.producers[1].ci95, 2), round(e.producers[3].ci95, 2)) == (0.25, 0.02)


@pytest.fixture
def small(tmp_path):
    """A 60 x 60 map of three classes in bands, a nodata corner, and 30 labelled points."""
    classes = np.zeros((60, 60), np.uint8)
    classes[20:40] = 1
    classes[40:] = 2
    classes[:5, :5] = 255
    map_tif = write_class_map(tmp_path / "classes.tif", classes, NAMES)
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(5, 60, 30), rng.integers(0, 60, 30)
    truth = [NAMES[classes[r, c]] if i % 5 else NAMES[(classes[r, c] + 1) % 3]
             for i, (r, c) in enumerate(zip(rows, cols, strict=True))]
    xy = [centre(T10, int(r), int(c)) for r, c in zip(rows, cols, strict=True)]
    pts = write_points(tmp_path / "points.gpkg", xy, truth)
    return map_tif, pts, xy, truth, classes


def test_reference_in_another_crs_is_reprojected_to_the_same_matrix(small, tmp_path):
    map_tif, pts, xy, truth, _ = small
    gdf = gpd.read_file(pts).to_crs("EPSG:4326")
    gdf.to_file(tmp_path / "wgs84.gpkg", driver="GPKG")
    same = assess(map_tif, pts)
    with pytest.warns(ReferenceWarning, match="reprojected from EPSG:4326"):
        moved = assess(map_tif, tmp_path / "wgs84.gpkg")
    assert moved.error_matrix.tolist() == same.error_matrix.tolist()
    assert moved.error_matrix.sum() == 30
    assert moved.tally.reprojected_from == "EPSG:4326"


def test_points_outside_the_map_and_on_nodata_are_counted_and_reported(small, tmp_path):
    map_tif, _, xy, truth, _ = small
    far = [(400000.0, 5800000.0), (500000.0 + 605, 5800000.0 - 5)]  # west of it; just east
    nodata = [centre(T10, 1, 1)]
    pts = write_points(tmp_path / "p.gpkg", xy + far + nodata, truth + ["water"] * 3)
    with pytest.warns(ReferenceWarning) as caught:
        a = assess(map_tif, pts)
    assert [str(w.message) for w in caught] == [
        "2 reference points lie outside the map: not scored",
        "1 point falls on map nodata (no class): not scored"]
    assert (a.tally.outside_map, a.tally.on_nodata, a.error_matrix.sum()) == (2, 1, 30)
    res = CliRunner().invoke(main, ["evaluate", str(map_tif), str(pts), "-o",
                                    str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "geomm: warning: 2 reference points lie outside the map: not scored" in res.output
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert (m["reference"]["outside_map"], m["reference"]["on_nodata"]) == (2, 1)
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "2 reference points lie outside the map" in report
    assert "1 point falls on map nodata (no class): not scored" in report


def test_multipoints_count_each_point_and_empty_geometries_are_named(small, tmp_path):
    from shapely.geometry import MultiPoint, Point

    map_tif, pts, xy, truth, _ = small
    gdf = gpd.read_file(pts)
    pairs = gpd.GeoDataFrame(  # two features of two points each, one empty point
        {"reference": [truth[0], truth[2], "water"]},
        geometry=[MultiPoint([xy[0], xy[1]]), MultiPoint([xy[2], xy[3]]), Point()],
        crs=gdf.crs)
    both = gpd.GeoDataFrame(gpd.pd.concat([gdf.iloc[4:], pairs], ignore_index=True),
                            crs=gdf.crs)
    both.to_file(tmp_path / "multi.gpkg", driver="GPKG")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = assess(map_tif, tmp_path / "multi.gpkg")
    messages = [str(w.message) for w in caught]
    assert messages == ["1 feature is neither point nor polygon, or empty: not used"], messages
    assert a.tally.other_geometries == 1 and a.error_matrix.sum() == 26 + 4


def test_a_single_float_band_is_refused_as_neither_ids_nor_probabilities(small, tmp_path):
    map_tif, pts, *_ = small
    with rasterio.open(map_tif) as src:
        profile = {**src.profile, "dtype": "float32", "nodata": None}
        data = src.read(1).astype(np.float32)
    with rasterio.open(tmp_path / "float.tif", "w", **profile) as dst:
        dst.write(data, 1)
        dst.set_band_description(1, "classes")
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "float.tif"), str(pts), "-o",
                                    str(tmp_path / "rep")])
    assert res.exit_code == 1 and "one float32 band: neither class ids" in res.output
    assert not (tmp_path / "rep").exists()


def test_a_map_without_class_names_against_named_references_asks_for_the_bundle(small,
                                                                                tmp_path):
    map_tif, pts, *_ = small
    with rasterio.open(map_tif) as src:
        profile, data = src.profile, src.read(1)
    with rasterio.open(tmp_path / "plain.tif", "w", **profile) as dst:
        dst.write(data, 1)  # the ids without any names
    with pytest.raises(UnknownClassError, match="the map names no class: pass --bundle"):
        assess(tmp_path / "plain.tif", pts)


def test_a_class_the_map_does_not_know_is_an_error_naming_it(small, tmp_path):
    map_tif, _, xy, truth, _ = small
    pts = write_points(tmp_path / "p.gpkg", xy, truth[:-2] + ["urban", "urban"])
    with pytest.raises(UnknownClassError, match=r"'urban' \(2\) are not classes of the map "
                                                r"\(water, forest, crop\)"):
        assess(map_tif, pts)
    res = CliRunner().invoke(main, ["evaluate", str(map_tif), str(pts), "-o",
                                    str(tmp_path / "rep")])
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and "--unknown-classes" in res.output
    assert not (tmp_path / "rep").exists()


def test_unknown_classes_can_be_scored_as_extra_or_skipped(small, tmp_path):
    map_tif, _, xy, truth, _ = small
    pts = write_points(tmp_path / "p.gpkg", xy, truth[:-2] + ["urban", "urban"])
    with pytest.warns(ReferenceWarning, match="scored as extra classes"):
        extra = assess(map_tif, pts, unknown_classes="extra")
    assert extra.names == (*NAMES, "urban")
    assert extra.error_matrix[:, 3].sum() == 2 and extra.error_matrix[3].sum() == 0
    assert extra.error_matrix.sum() == 30 and extra.scores.recall[3] == 0.0
    with pytest.warns(ReferenceWarning, match="left out"):
        skip = assess(map_tif, pts, unknown_classes="skip")
    assert skip.error_matrix.sum() == 28 and skip.tally.unknown == {"urban": 2}


def test_class_names_match_ignoring_case_and_spaces(small, tmp_path):
    map_tif, pts, xy, truth, _ = small
    loose = write_points(tmp_path / "p.gpkg", xy, [f" {t.upper()} " for t in truth])
    assert assess(map_tif, loose).error_matrix.tolist() == \
        assess(map_tif, pts).error_matrix.tolist()


def test_empty_reference_file_is_a_one_line_error(small, tmp_path):
    map_tif, *_ = small
    empty = gpd.GeoDataFrame({"reference": []}, geometry=[], crs="EPSG:32633")
    empty.to_file(tmp_path / "empty.gpkg", driver="GPKG")
    res = CliRunner().invoke(main, ["evaluate", str(map_tif), str(tmp_path / "empty.gpkg"),
                                    "-o", str(tmp_path / "rep")])
    assert res.exit_code == 1
    assert res.output.startswith(f"geomm: error: {tmp_path / 'empty.gpkg'}: the reference "
                                 "file has no features")
    assert res.output.count("\n") == 1


def test_missing_column_lists_the_columns(small, tmp_path):
    map_tif, pts, *_ = small
    with pytest.raises(GeommError, match=r"no column 'landuse'; its columns are reference"):
        assess(map_tif, pts, column="landuse")


def test_unlabelled_points_are_counted_not_scored(small, tmp_path):
    map_tif, _, xy, truth, _ = small
    pts = write_points(tmp_path / "p.gpkg", xy, truth[:20] + [""] * 5 + [None] * 5)
    with pytest.warns(ReferenceWarning, match="10 reference points have no class in the"):
        a = assess(map_tif, pts)
    assert a.error_matrix.sum() == 20


def test_nothing_on_the_map_is_an_error(small, tmp_path):
    map_tif, *_ = small
    pts = write_points(tmp_path / "p.gpkg", [(0.0, 0.0)], ["water"])
    with pytest.raises(AccuracyError, match="no reference sample falls on a mapped pixel"):
        assess(map_tif, pts)


def test_polygons_score_every_pixel_they_cover(small, tmp_path):
    map_tif, *_ = small
    # a 10 x 10 px square of "forest" across the water/forest border (rows 15..24)
    x0, y0 = centre(T10, 15, 10)
    square = box(x0 - 5, y0 - 95, x0 + 95, y0 + 5)
    gdf = gpd.GeoDataFrame({"reference": ["forest", "water"]},
                           geometry=[square, box(0, 0, 1, 1)], crs="EPSG:32633")
    gdf.to_file(tmp_path / "poly.gpkg", driver="GPKG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReferenceWarning)
        a = assess(map_tif, tmp_path / "poly.gpkg")
    assert a.tally.kind == "polygons" and a.tally.outside_map == 1
    # map water (rows 15-19) x reference forest: 50 px; forest on forest: 50 px
    assert a.error_matrix[0, 1] == 50 and a.error_matrix[1, 1] == 50
    assert a.error_matrix.sum() == 100
    assert any("not a probability sample" in n for n in a.notes)


def test_label_raster_reference_on_another_grid(small, tmp_path):
    map_tif, *_, classes = small
    # reference raster at 20 m of the same area: codes 0..2 named in the other order
    ref = np.full((30, 30), 0, np.uint8)  # all "crop" in the names below
    ref[:10] = 2                            # rows 0-19 of the map: "water"
    from affine import Affine

    path = write_class_map(tmp_path / "ref.tif", ref, ("crop", "forest", "water"),
                           transform=Affine(20, 0, 500000, 0, -20, 5800000))
    with pytest.warns(ReferenceWarning, match="25 reference pixels fall on map nodata"):
        a = assess(map_tif, path)
    assert a.tally.kind == "raster"
    valid = classes != 255
    assert a.error_matrix.sum() == int(valid.sum())
    assert a.error_matrix[0, 0] == int(valid[:20].sum())  # water is water
    assert a.error_matrix[2, 2] == 20 * 60                 # crop rows 40..59
    assert a.error_matrix[1, 2] == 20 * 60                 # forest rows called crop


def test_a_probabilities_map_is_scored_by_its_argmax(small, tmp_path):
    map_tif, pts, _, _, classes = small
    probs = np.zeros((3, 60, 60), np.uint8)
    for k in range(3):
        probs[k] = np.where(classes == k, 200, 27)
    probs[:, classes == 255] = 0
    with rasterio.open(tmp_path / "probabilities.tif", "w", driver="GTiff", width=60,
                       height=60, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=T10) as dst:
        dst.write(probs)
        for i, n in enumerate(NAMES, 1):
            dst.set_band_description(i, n)
    a = assess(tmp_path / "probabilities.tif", pts)
    b = assess(map_tif, pts)
    assert a.map.kind == "probabilities" and a.map.names_from == "band descriptions"
    assert a.error_matrix.tolist() == b.error_matrix.tolist()
    assert a.mapped_px.tolist() == b.mapped_px.tolist() == \
        [int((classes == k).sum()) for k in range(3)]


def test_report_folder_is_not_overwritten_without_the_flag(small, tmp_path):
    map_tif, pts, *_ = small
    out = tmp_path / "rep"
    args = ["evaluate", str(map_tif), str(pts), "-o", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert CliRunner().invoke(main, [*args, "--overwrite"]).exit_code == 0


def test_probabilities_without_names_take_them_from_the_bundle(small, tmp_path):
    map_tif, pts, _, _, classes = small
    probs = np.stack([np.where(classes == k, 0.8, 0.1) for k in range(3)]).astype(np.float32)
    probs[:, classes == 255] = np.nan
    with rasterio.open(tmp_path / "p.tif", "w", driver="GTiff", width=60, height=60, count=3,
                       dtype="float32", crs="EPSG:32633", transform=T10) as dst:
        dst.write(probs)
    with pytest.raises(GeommError, match="3 bands without class names.*pass --bundle"):
        assess(tmp_path / "p.tif", pts)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text(json.dumps(
        {"classes": {"classes": [{"name": n} for n in NAMES]}}))
    a = assess(tmp_path / "p.tif", pts, bundle=bundle)
    assert a.names == NAMES and a.map.names_from == f"bundle {bundle}"
    assert a.error_matrix.tolist() == assess(map_tif, pts).error_matrix.tolist()


def test_simple_random_design_from_the_cli(small, tmp_path):
    map_tif, pts, *_ = small
    res = CliRunner().invoke(main, ["evaluate", str(map_tif), str(pts), "--sampling",
                                    "simple", "-o", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    counts = np.array(m["error_matrix"]["counts"])
    share = counts.sum(axis=0)[0] / counts.sum()
    assert m["estimates"]["design"] == "simple"
    assert m["estimates"]["per_class"]["water"]["area_px"]["value"] == pytest.approx(
        share * (60 * 60 - 25))


def test_geographic_map_gives_areas_in_pixels_only(tmp_path):
    from affine import Affine

    classes = np.zeros((40, 40), np.uint8)
    classes[20:] = 1
    t = Affine(0.0001, 0, 15.0, 0, -0.0001, 52.0)
    map_tif = write_class_map(tmp_path / "geo.tif", classes, ("a", "b"), transform=t,
                              crs="EPSG:4326")
    xy = [centre(t, r, c) for r in (2, 7, 25, 33) for c in (3, 9)]
    pts = write_points(tmp_path / "p.gpkg", xy, ["a"] * 4 + ["b"] * 3 + ["a"],
                       crs="EPSG:4326")
    a = assess(map_tif, pts)
    assert a.estimates is not None and a.estimates.area_ha is None
    assert a.estimates.area_px[0].value == pytest.approx(800 + 800 / 4)
    assert any("geographic (degrees)" in n for n in a.notes)
    assert a.to_dict()["estimates"]["per_class"]["a"]["area_ha"] is None


def test_evaluate_imports_no_torch_or_dask(small):
    import subprocess
    import sys

    map_tif, pts, *_ = small
    code = ("import sys\nfrom geomm.assess.accuracy import assess\n"
            f"assess({str(map_tif)!r}, {str(pts)!r})\n"
            "print(sorted(m for m in ('torch', 'torchgeo', 'lightning', 'dask', 'xarray') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_new_commands():
    out = CliRunner().invoke(main, ["--help"]).output
    assert "evaluate" in out and "sample-design" in out


def test_a_table_without_geometry_or_a_missing_file_is_a_clear_error(small, tmp_path):
    map_tif, *_ = small
    (tmp_path / "t.csv").write_text("reference,x\nwater,1\n")
    with pytest.raises(GeommError, match="t.csv: a table without geometries"):
        assess(map_tif, tmp_path / "t.csv")
    with pytest.raises(GeommError, match="nope.gpkg: no such reference file"):
        assess(map_tif, tmp_path / "nope.gpkg")


def test_label_raster_with_a_class_the_map_lacks(small, tmp_path):
    map_tif, *_, classes = small
    ref = np.where(classes == 255, 0, classes).astype(np.uint8)
    ref[50:, :] = 3                                  # "urban" where the map says crop
    path = write_class_map(tmp_path / "ref.tif", ref, (*NAMES, "urban", "unused"))
    with pytest.raises(UnknownClassError, match=r"'urban' \(600\)"):
        assess(map_tif, path)
    with pytest.warns(ReferenceWarning) as caught:
        a = assess(map_tif, path, unknown_classes="extra")
    assert any("'urban' (600); scored as extra" in str(w.message) for w in caught)
    assert a.names == (*NAMES, "urban")             # "unused" never occurs: no column
    assert a.error_matrix[2, 3] == 600 and a.error_matrix[2, 2] == 600


def test_label_raster_codes_its_class_table_does_not_name_are_not_dropped(small, tmp_path):
    map_tif, *_, classes = small
    ref = np.where(classes == 255, 0, classes).astype(np.uint8)
    ref[50:, :] = 7                                  # beyond its table's ids 0-2
    path = write_class_map(tmp_path / "ref.tif", ref, NAMES)
    with pytest.raises(UnknownClassError, match=r"'7' \(600\)"):
        assess(map_tif, path)
    with pytest.warns(ReferenceWarning, match=r"'7' \(600\); left out"):
        a = assess(map_tif, path, unknown_classes="skip")
    ref[50:, :] = 255                                # the same rows unlabelled
    unlabelled = assess(map_tif, write_class_map(tmp_path / "ref2.tif", ref, NAMES))
    np.testing.assert_array_equal(a.error_matrix, unlabelled.error_matrix)
