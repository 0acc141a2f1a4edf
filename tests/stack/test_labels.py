"""Labels on the base grid: burned polygons, class-code rasters, class tables."""

from __future__ import annotations

import json
import warnings

import dask.array as da
import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.features import rasterize
from shapely import Polygon, box

from geomm.classes import ClassTable
from geomm.errors import CRSMissingError, LabelError, LabelWarning
from geomm.stack.grid import GridSpec
from geomm.stack.labels import burn_raster_labels, burn_vector_labels, label_counts

UTM = CRS.from_epsg(32633)
LEFT, TOP, RES = 500_000.0, 5_000_000.0, 10.0
GRID = GridSpec(UTM, RES, (LEFT, TOP - 64 * RES, LEFT + 64 * RES, TOP))  # 64 x 64 px
TO_WGS84 = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform


def px_box(c0: int, r0: int, c1: int, r1: int) -> Polygon:
    """Polygon covering base pixels cols [c0, c1) x rows [r0, r1), in UTM."""
    return box(LEFT + c0 * RES, TOP - r1 * RES, LEFT + c1 * RES, TOP - r0 * RES)


def write_wgs84(path, geoms, classes, column="cls"):
    """Write UTM polygons to a GeoPackage in EPSG:4326 (so the burn must reproject)."""
    lonlat = [None if g is None else shapely.transform(g, TO_WGS84, interleaved=False)
              for g in geoms]
    gpd.GeoDataFrame({column: classes}, geometry=lonlat, crs="EPSG:4326").to_file(path)
    return path


GEOMS = [px_box(4, 4, 40, 40), px_box(10, 10, 20, 20), px_box(30, 44, 60, 60),
         px_box(44.6, 4.6, 47.4, 20.4)]


@pytest.fixture
def polygons(tmp_path):
    """water: big square; forest: small square inside it; urban: crosses tile borders;
    road: edges 0.4 px inside pixel boundaries (only pixels whose centre it covers count)."""
    return write_wgs84(tmp_path / "labels.gpkg", GEOMS, ["water", "forest", "urban", "road"])


def test_wgs84_polygons_land_on_the_right_utm_pixels(polygons):
    res = burn_vector_labels(polygons, "cls", GRID, tile_size=16)
    lab = res.labels.values
    assert res.classes.names == ("forest", "road", "urban", "water")  # sorted by default
    assert lab[30, 30] == res.classes.id_of("water")
    assert lab[50, 45] == res.classes.id_of("urban")
    assert lab[2, 2] == 255 and lab[62, 10] == 255  # outside every polygon
    # pixel-exact edges: the water square covers cols/rows 4..39, nothing more
    assert lab[4, 4] == lab[39, 39] == res.classes.id_of("water")
    assert lab[3, 20] == lab[40, 20] == 255
    # road: cols 45-46, rows 5-19 have their centre inside; the cut pixels around do not
    road = np.argwhere(lab == res.classes.id_of("road"))
    assert road.min(0).tolist() == [5, 45] and road.max(0).tolist() == [19, 46]
    assert len(road) == 30
    assert res.report.burned == 4 and res.report.outside_grid == 0


def test_smaller_polygon_inside_larger_keeps_its_class(polygons):
    res = burn_vector_labels(polygons, "cls", GRID, tile_size=16)
    inner = res.labels.values[10:20, 10:20]
    assert (inner == res.classes.id_of("forest")).all()
    assert label_counts(res.labels, res.classes) == {
        "forest": 100, "road": 30, "urban": 30 * 16, "water": 36 * 36 - 100}


def test_burn_is_lazy_chunked_and_seamless(polygons):
    res = burn_vector_labels(polygons, "cls", GRID, tile_size=16)
    assert isinstance(res.labels.data, da.Array)
    assert res.labels.data.chunks == ((16,) * 4, (16,) * 4)
    assert res.labels.dtype == np.uint8
    assert res.labels.rio.crs == UTM and res.labels.rio.transform() == GRID.transform
    # chunk-by-chunk burning equals one whole-grid burn (no seams at tile borders)
    ids = [res.classes.id_of(c) for c in ("water", "forest", "urban", "road")]
    whole = rasterize(zip(GEOMS, ids, strict=True), out_shape=GRID.shape,
                      transform=GRID.transform, fill=255, dtype=np.uint8)
    np.testing.assert_array_equal(res.labels.values, whole)


def test_class_ids_follow_given_order_and_unknown_classes_are_skipped(polygons):
    with pytest.warns(LabelWarning, match="road.*urban"):
        res = burn_vector_labels(polygons, "cls", GRID, classes=["water", "forest"],
                                 tile_size=32)
    lab = res.labels.values
    assert res.classes.names == ("water", "forest")
    assert lab[30, 30] == 0 and lab[15, 15] == 1
    assert lab[50, 45] == 255  # urban is not a requested class
    assert res.report.unknown_class == 2 and res.report.unknown_values == ("road", "urban")
    assert res.report.burned == 2


def test_bowtie_is_repaired_and_counted_outside_polygon_counted(tmp_path):
    x0, y0 = LEFT + 200, TOP - 400  # bow-tie over cols 20..40, rows 20..40
    bowtie = Polygon([(x0, y0), (x0 + 200, y0 + 200), (x0 + 200, y0), (x0, y0 + 200)])
    far = px_box(200, 200, 210, 210)  # 2 km south-east of the grid
    small = px_box(21, 28, 24, 32)  # inside the bow-tie's left lobe
    path = write_wgs84(tmp_path / "bad.gpkg", [bowtie, far, None, small], ["a", "b", "a", "b"])
    with pytest.warns(LabelWarning, match="repaired") as rec:
        res = burn_vector_labels(path, "cls", GRID, tile_size=64)
    assert "outside the grid" in str(rec[0].message)
    rep = res.report
    assert (rep.read, rep.repaired, rep.outside_grid, rep.dropped_empty, rep.burned) == \
        (4, 1, 1, 1, 2)
    lab = res.labels.values
    a = res.classes.id_of("a")
    # both lobes of the bow-tie are burned, its empty top/bottom wedges are not
    assert lab[30, 26] == a and lab[30, 38] == a
    # the repaired bow-tie has its true area, so the small square inside it still wins
    # (unrepaired, its area is 0 and it would be drawn last, over the square)
    assert (lab[28:32, 21:24] == res.classes.id_of("b")).all()
    assert lab[21, 30] == 255 and lab[38, 30] == 255
    assert any("repaired" in m for m in rep.messages())


def test_missing_class_column_names_it_and_the_existing_columns(polygons):
    with pytest.raises(LabelError) as exc:
        burn_vector_labels(polygons, "landcover", GRID, tile_size=16)
    msg = str(exc.value)
    assert "'landcover'" in msg and "'cls'" in msg and "labels.gpkg" in msg


def test_vector_without_crs_is_refused_with_a_fix(tmp_path):
    path = tmp_path / "nocrs.shp"
    with warnings.catch_warnings():  # pyogrio warns that the file will have no CRS
        warnings.simplefilter("ignore", UserWarning)
        gpd.GeoDataFrame({"cls": ["a"]}, geometry=[px_box(0, 0, 5, 5)]).to_file(path)
    with pytest.raises(CRSMissingError, match=r"nocrs\.shp.*-a_srs"):
        burn_vector_labels(path, "cls", GRID, tile_size=16)


def test_a_file_with_several_layers_needs_the_layer_named(tmp_path):
    path = tmp_path / "two.gpkg"
    gpd.GeoDataFrame({"cls": ["road"]}, geometry=[px_box(0, 0, 5, 5)], crs=UTM).to_file(
        path, layer="aaa_roads")
    gpd.GeoDataFrame({"cls": ["forest"]}, geometry=[px_box(10, 10, 20, 20)], crs=UTM).to_file(
        path, layer="landcover")
    with pytest.raises(LabelError, match=r"two\.gpkg: the file has 2 layers.*aaa_roads, "
                                         r"landcover.*labels\.layer"):
        burn_vector_labels(path, "cls", GRID, tile_size=16)
    res = burn_vector_labels(path, "cls", GRID, tile_size=16, layer="landcover")
    assert res.classes.names == ("forest",) and (res.labels.values[10:20, 10:20] == 0).all()


def test_a_layer_without_features_says_so(tmp_path):
    path = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"cls": []}, geometry=[], crs=UTM).to_file(path)
    with pytest.raises(LabelError, match=r"empty\.gpkg: the file has no features"):
        burn_vector_labels(path, "cls", GRID, tile_size=16)


def test_class_names_differing_in_case_or_spaces_are_one_class(tmp_path):
    path = write_wgs84(tmp_path / "case.gpkg", [px_box(0, 0, 10, 10), px_box(10, 0, 20, 10),
                                                px_box(20, 0, 30, 10), px_box(0, 20, 10, 30),
                                                px_box(10, 20, 20, 30)],
                       ["water", "Water", "water ", " forest", "forest"])
    with pytest.warns(LabelWarning, match=r"'Water', 'water', 'water ' read as 'water'"):
        res = burn_vector_labels(path, "cls", GRID, tile_size=16)
    assert res.classes.names == ("forest", "water")
    assert label_counts(res.labels, res.classes) == {"forest": 200, "water": 300}
    given = burn_vector_labels(path, "cls", GRID, tile_size=16, classes=["WATER", "Forest"])
    assert label_counts(given.labels, given.classes) == {"WATER": 300, "Forest": 200}


def test_points_and_lines_are_burned_with_a_note(tmp_path):
    geoms = [px_box(0, 0, 10, 10), shapely.Point(LEFT + 305, TOP - 305),
             shapely.LineString([(LEFT + 405, TOP - 5), (LEFT + 405, TOP - 155)])]
    path = tmp_path / "mixed.gpkg"
    gpd.GeoDataFrame({"cls": ["a", "b", "c"]}, geometry=geoms, crs=UTM).to_file(path)
    with pytest.warns(LabelWarning, match="2 features are points or lines"):
        res = burn_vector_labels(path, "cls", GRID, tile_size=16)
    assert label_counts(res.labels, res.classes) == {"a": 100, "b": 1, "c": 16}


def test_class_table_json_round_trip():
    table = ClassTable.from_names(["water", "forest", "urban"],
                                  ["#0000ff", (0, 128, 0), "#808080"], ignore_value=200)
    doc = json.loads(json.dumps(table.to_dict()))
    back = ClassTable.from_dict(doc)
    assert back == table
    assert back.colours[1] == (0, 128, 0) and back.id_of("urban") == 2
    assert back.ignore_value == 200
    assert doc["classes"][0] == {"id": 0, "name": "water", "colour": "#0000ff"}


def test_class_table_default_palette_is_fixed_and_distinct():
    a, b = ClassTable.from_names([f"c{i}" for i in range(30)]), ClassTable.from_names(
        [f"k{i}" for i in range(30)])
    assert a.colours == b.colours and len(set(a.colours)) == 30
    assert a.hex_colour(0) == "#1f77b4"


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"names": ["a", "b", "a"]}, "'a'"),
    ({"names": [f"c{i}" for i in range(256)]}, "256 classes"),
    ({"names": ["a", "b"], "colours": ["#00ff00", "green"]}, "'b'.*'green'"),
    ({"names": ["a", "b"], "colours": ["#00ff00", (0, 300, 0)]}, "'b'"),
    ({"names": ["a", "b"], "ignore_value": 1}, "'b'"),
])
def test_class_table_rejects_bad_entries_naming_them(kwargs, needle):
    with pytest.raises(LabelError, match=needle):
        ClassTable.from_names(**kwargs)


def test_label_raster_20m_is_upsampled_by_nearest_on_10m_grid(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.choice(np.array([0, 1, 2, 7], np.uint8), size=(32, 32))  # 0 = nodata
    path = tmp_path / "labels20.tif"
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=1, dtype="uint8",
                       crs=UTM, transform=Affine(20, 0, LEFT, 0, -20, TOP), nodata=0) as dst:
        dst.write(codes, 1)
    res = burn_raster_labels(path, GRID, values={1: "water", 2: "forest"}, tile_size=32)
    assert isinstance(res.labels.data, da.Array)
    assert res.labels.data.chunks == ((32, 32), (32, 32))
    lab = res.labels.values
    assert lab.shape == (64, 64) and res.classes.names == ("water", "forest")
    blocks = lab.reshape(32, 2, 32, 2)
    assert (blocks == blocks[:, :1, :, :1]).all()  # each 20 m pixel -> 2x2 identical ids
    expected = np.select([codes == 1, codes == 2], [0, 1], 255)
    np.testing.assert_array_equal(blocks[:, 0, :, 0], expected)  # 7 and nodata -> ignore
    assert (codes == 7).any() and (codes == 0).any()
    counts = label_counts(res.labels, res.classes)
    assert counts == {"water": 4 * int((codes == 1).sum()), "forest": 4 * int((codes == 2).sum())}


def test_label_raster_default_values_are_its_codes(tmp_path):
    codes = np.array([[3, 3, 9, 9], [5, 5, 0, 0]] * 2, np.uint8)
    path = tmp_path / "codes.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8",
                       crs=UTM, transform=Affine(10, 0, LEFT, 0, -10, TOP), nodata=0) as dst:
        dst.write(codes, 1)
    grid = GridSpec(UTM, RES, (LEFT, TOP - 40, LEFT + 40, TOP))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelWarning)
        res = burn_raster_labels(path, grid, tile_size=4)
    assert res.classes.names == ("3", "5", "9")  # nodata 0 is not a class
    np.testing.assert_array_equal(res.labels.values[:2], [[0, 0, 2, 2], [1, 1, 255, 255]])


def test_label_raster_smaller_than_grid_leaves_the_rest_unlabelled(tmp_path):
    codes = np.array([[0, 1], [1, 0]], np.uint8)  # no nodata: 0 is a real class here
    path = tmp_path / "part.tif"
    with rasterio.open(path, "w", driver="GTiff", width=2, height=2, count=1, dtype="uint8",
                       crs=UTM, transform=Affine(10, 0, LEFT, 0, -10, TOP)) as dst:
        dst.write(codes, 1)
    grid = GridSpec(UTM, RES, (LEFT - 20, TOP - 40, LEFT + 20, TOP))  # raster in its middle
    res = burn_raster_labels(path, grid, values={0: "bare", 1: "crop"}, tile_size=4)
    lab = res.labels.values
    np.testing.assert_array_equal(lab[:2, 2:], codes)  # bare -> 0, crop -> 1
    assert (lab[2:] == 255).all() and (lab[:, :2] == 255).all()


def test_label_raster_ignore_value_is_unlabelled_without_a_nodata_tag(tmp_path):
    codes = np.array([[10, 10, 20, 255], [30, 255, 20, 10]] * 2, np.uint8)  # 255: unlabelled
    path = tmp_path / "codes255.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8",
                       crs=UTM, transform=Affine(10, 0, LEFT, 0, -10, TOP)) as dst:
        dst.write(codes, 1)
    grid = GridSpec(UTM, RES, (LEFT, TOP - 40, LEFT + 40, TOP))
    res = burn_raster_labels(path, grid, tile_size=4)
    assert res.classes.names == ("10", "20", "30")  # 255, the ignore value, is no class
    np.testing.assert_array_equal(res.labels.values[:2], [[0, 0, 1, 255], [2, 255, 1, 0]])


def test_label_raster_codes_missing_from_values_are_noted(tmp_path):
    codes = np.array([[1, 2, 3, 4]] * 4, np.uint8)
    path = tmp_path / "codes.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8",
                       crs=UTM, transform=Affine(10, 0, LEFT, 0, -10, TOP)) as dst:
        dst.write(codes, 1)
    grid = GridSpec(UTM, RES, (LEFT, TOP - 40, LEFT + 40, TOP))
    res = burn_raster_labels(path, grid, values={1: "crop", 2: "forest"}, tile_size=4)
    assert (res.labels.values[:, 2:] == 255).all()
    notes = " ".join(res.report.messages())
    assert "codes 3, 4 are not in `labels.values`" in notes and str(path) in notes
    full = burn_raster_labels(path, grid, values={1: "a", 2: "b", 3: "c", 4: "d"}, tile_size=4)
    assert "not in `labels.values`" not in " ".join(full.report.messages())
