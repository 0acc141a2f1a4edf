"""Vectorizing a class raster: polygons are never cut by the windows, whatever their size."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio import features
from scipy import ndimage
from shapely.geometry import shape

from geomm.classes import ClassTable
from geomm.cli import main
from geomm.vector import vectorize as vmod
from geomm.vector.vectorize import VectorizeError, vectorize

TRANSFORM = Affine(10, 0, 500000, 0, -10, 5800000)
NAMES = ["water", "forest", "crop", "grass", "urban"]


def write_classes(path: Path, classes: np.ndarray, *, table: bool = True,
                  nodata: int | None = 255, crs: str = "EPSG:32633",
                  transform: Affine = TRANSFORM, band_tags: dict | None = None) -> Path:
    """A uint8 class GeoTIFF, with the GEOMM_CLASSES tag unless ``table`` is False."""
    arr = classes if classes.ndim == 3 else classes[None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                       count=arr.shape[0], dtype=arr.dtype, crs=crs, transform=transform,
                       nodata=nodata) as dst:
        dst.write(arr)
        if table:
            dst.update_tags(GEOMM_CLASSES=json.dumps(ClassTable.from_names(NAMES).to_dict()))
        if band_tags:
            dst.update_tags(1, **band_tags)
    return path


def blobs(seed: int, shape_: tuple[int, int], cell: int = 6, noise: float = 0.04,
          nodata: float = 0.02) -> np.ndarray:
    """Seeded blocky regions of 5 classes with speckle and nodata pixels."""
    rng = np.random.default_rng(seed)
    h, w = shape_
    coarse = rng.integers(0, 5, (h // cell + 1, w // cell + 1))
    out = np.kron(coarse, np.ones((cell, cell), dtype=np.int64))[:h, :w].astype(np.uint8)
    speck = rng.random(shape_) < noise
    out[speck] = rng.integers(0, 5, int(speck.sum()))
    out[rng.random(shape_) < nodata] = 255
    return out


def smooth_classes(seed: int, n: int) -> np.ndarray:
    """Seeded smooth regions (long staircase boundaries), 4 classes, a nodata corner."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal((n, n)), 6)
    out = np.digitize(field, np.quantile(field, [0.25, 0.5, 0.75])).astype(np.uint8)
    out[:10, :10] = 255
    return out


def read_polys(path: Path) -> gpd.GeoDataFrame:
    if path.suffix == ".parquet":
        return gpd.read_parquet(path)
    return gpd.read_file(path, layer="classes" if path.suffix == ".gpkg" else None)


def whole_array_shapes(classes: np.ndarray, nodata: int = 255) -> list[tuple[int, object]]:
    return [(int(v), shape(g)) for g, v in features.shapes(
        classes, mask=classes != nodata, connectivity=4, transform=TRANSFORM)]


def canonical(geoms) -> list:
    """Geometries normalized and sorted by area then centroid, for set comparison."""
    geoms = shapely.normalize(np.asarray(geoms, dtype=object))
    cx, cy = shapely.get_x(shapely.centroid(geoms)), shapely.get_y(shapely.centroid(geoms))
    order = np.lexsort((cy, cx, shapely.area(geoms)))
    return list(geoms[order])


def to_pixels(geom):
    inv = ~TRANSFORM
    return shapely.transform(geom, lambda xy: np.column_stack(
        [inv.c + xy[:, 0] * inv.a + xy[:, 1] * inv.b, inv.f + xy[:, 0] * inv.d + xy[:, 1] * inv.e]))


# --- polygons are not cut by the windows ----------------------------------------------------

def test_region_across_seams_is_one_polygon_equal_to_whole_array_shapes(tmp_path):
    classes = np.zeros((100, 100), np.uint8)
    classes[10:90, 20:24] = 1  # a ring of class 1 around a class-0 core, over 9 windows
    classes[10:90, 76:80] = 1
    classes[10:14, 20:80] = 1
    classes[86:90, 20:80] = 1
    classes[40:60, 40:60] = 2
    classes[45:47, 45:47] = 255  # a nodata hole in class 2
    tif = write_classes(tmp_path / "c.tif", classes)
    vectorize(tif, tmp_path / "out.gpkg", window=32)
    got = read_polys(tmp_path / "out.gpkg")
    ref = whole_array_shapes(classes)
    for k in (1, 2):
        mine = got[got.class_id == k].geometry.to_numpy()
        theirs = [g for v, g in ref if v == k]
        assert len(mine) == len(theirs) == 1
        assert mine[0].area == theirs[0].area
        assert mine[0].equals(theirs[0])
    ring = got[got.class_id == 1].geometry.iloc[0]
    assert len(ring.interiors) == 1 and ring.area == (classes == 1).sum() * 100


def test_window_size_does_not_change_the_polygons(tmp_path):
    classes = blobs(7, (120, 110))
    tif = write_classes(tmp_path / "c.tif", classes)
    small = read_polys(vectorize(tif, tmp_path / "w32.parquet", window=32).path)
    big = read_polys(vectorize(tif, tmp_path / "w1024.parquet", window=1024).path)
    assert len(small) == len(big) > 100
    # vertex for vertex the same, not merely the same shapes
    assert all(shapely.equals_exact(canonical(small.geometry), canonical(big.geometry)))
    ref = canonical([g for _, g in whole_array_shapes(classes)])
    assert all(shapely.equals(canonical(small.geometry), ref))
    for k in range(5):
        assert small[small.class_id == k].area_m2.sum() == (classes == k).sum() * 100.0
    assert (small.geometry.geom_type == "Polygon").all() and small.geometry.is_valid.all()
    # neighbours carry the same vertices along shared edges: a coverage GEOS can simplify
    assert shapely.coverage_is_valid(small.geometry.to_numpy())


def test_a_straight_edge_gets_a_vertex_where_two_neighbours_meet(tmp_path):
    classes = np.zeros((20, 20), np.uint8)
    classes[10:, :7] = 1
    classes[10:, 7:] = 2  # class 0's bottom edge runs straight past the 1 | 2 junction
    tif = write_classes(tmp_path / "c.tif", classes, nodata=None)
    got = read_polys(vectorize(tif, tmp_path / "o.gpkg", window=8).path)
    top = to_pixels(got[got.class_id == 0].geometry.iloc[0])
    assert [7.0, 10.0] in shapely.get_coordinates(top).tolist()
    assert len(shapely.get_coordinates(top)) == 6  # 4 corners, the junction, closing
    assert shapely.coverage_is_valid(got.geometry.to_numpy())


@settings(deadline=None, max_examples=25)
@given(height=st.integers(1, 40), width=st.integers(1, 40), window=st.integers(1, 17),
       seed=st.integers(0, 10_000), n_classes=st.integers(1, 4))
def test_any_window_gives_the_whole_array_polygons(height, width, window, seed, n_classes):
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, n_classes, (height, width)).astype(np.uint8)
    classes = np.where(rng.random((height, width)) < 0.1, 255, classes).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        tif = write_classes(Path(tmp) / "c.tif", classes)
        got = read_polys(vectorize(tif, Path(tmp) / "o.parquet", window=window).path)
    ref = whole_array_shapes(classes)
    assert len(got) == len(ref)
    if ref:
        assert all(shapely.equals(canonical(got.geometry), canonical([g for _, g in ref])))
        assert sorted(got.class_id) == sorted(v for v, _ in ref)


def test_no_polygon_edge_on_a_seam_unless_the_class_changes_there(tmp_path):
    classes = blobs(3, (100, 100), cell=9)
    classes[:, 64] = 4  # a class edge that does lie on the seam x = 64
    classes[:, 63] = 2
    tif = write_classes(tmp_path / "c.tif", classes)
    got = read_polys(vectorize(tif, tmp_path / "o.gpkg", window=32).path)
    padded = np.pad(classes.astype(int), 1, constant_values=-1)  # outside: no class

    def cls(row, col):
        value = padded[row + 1, col + 1]
        return -1 if value == 255 else value

    seam_segments = 0
    for geom in got.geometry:
        for ring in shapely.get_rings(to_pixels(geom)):
            xy = np.rint(shapely.get_coordinates(ring)).astype(int)
            for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:], strict=True):
                if x0 == x1 and x0 % 32 == 0 and 0 < x0 < 100:
                    for y in range(min(y0, y1), max(y0, y1)):
                        seam_segments += 1
                        assert cls(y, x0 - 1) != cls(y, x0), (x0, y)
                if y0 == y1 and y0 % 32 == 0 and 0 < y0 < 100:
                    for x in range(min(x0, x1), max(x0, x1)):
                        seam_segments += 1
                        assert cls(y0 - 1, x) != cls(y0, x), (x, y0)
    assert seam_segments > 100  # the class edge at x = 64 at least


def test_reads_are_window_sized(tmp_path, monkeypatch):
    tif = write_classes(tmp_path / "c.tif", blobs(1, (100, 90)))
    shapes_read = []
    real = vmod._read

    def spy(src, rows, cols, no_class):
        out = real(src, rows, cols, no_class)
        shapes_read.append(out.shape)
        return out

    monkeypatch.setattr(vmod, "_read", spy)
    vectorize(tif, tmp_path / "o.parquet", window=32)
    assert len(shapes_read) == 4 * 3
    assert max(max(s) for s in shapes_read) == 32 + 2  # the window and a 1-pixel ring


# --- attributes, names, nodata, formats -------------------------------------------------------

def test_nodata_makes_no_polygons_and_names_come_from_the_tag(tmp_path):
    classes = np.full((40, 40), 255, np.uint8)
    classes[5:15, 5:15] = 0
    classes[20:30, 20:35] = 3
    tif = write_classes(tmp_path / "c.tif", classes)
    summary = vectorize(tif, tmp_path / "o.gpkg", window=16)
    got = read_polys(summary.path)
    assert sorted(got.class_name) == ["grass", "water"]
    assert got.union_all().area == 250 * 100
    assert summary.n_polygons == 2
    assert [(c.class_id, c.name, c.n_polygons, c.area_m2) for c in summary.classes] == [
        (0, "water", 1, 10000.0), (3, "grass", 1, 15000.0)]
    assert "water 1" in summary.describe() and summary.seconds > 0


def test_ignore_value_of_the_table_makes_no_polygons(tmp_path):
    classes = np.zeros((20, 20), np.uint8)
    classes[:, 10:] = 200
    table = ClassTable.from_names(NAMES, ignore_value=200)
    tif = write_classes(tmp_path / "c.tif", classes, nodata=None, table=False)
    with rasterio.open(tif, "r+") as dst:
        dst.update_tags(GEOMM_CLASSES=json.dumps(table.to_dict()))
    got = read_polys(vectorize(tif, tmp_path / "o.parquet").path)
    assert list(got.class_id) == [0] and got.area_m2.iloc[0] == 200 * 100


def test_names_fall_back_to_band_tags_then_to_the_id(tmp_path):
    classes = np.zeros((10, 10), np.uint8)
    classes[:, 5:] = 7
    tif = write_classes(tmp_path / "c.tif", classes, table=False,
                        band_tags={"class_7": "orchard"})
    got = read_polys(vectorize(tif, tmp_path / "o.gpkg").path)
    assert dict(zip(got.class_id, got.class_name, strict=True)) == {0: "0", 7: "orchard"}


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet"])
def test_output_reads_back_with_geopandas_and_gdal(tmp_path, suffix):
    classes = blobs(5, (60, 50))
    tif = write_classes(tmp_path / "c.tif", classes)
    out = vectorize(tif, tmp_path / f"o{suffix}", window=16).path
    frame = read_polys(out)
    assert list(frame.columns) == ["class_id", "class_name", "area_m2", "geometry"]
    assert str(frame.class_id.dtype) == "int32" and str(frame.area_m2.dtype) == "float64"
    assert frame.crs.to_epsg() == 32633
    assert (frame.geometry.geom_type == "Polygon").all()
    np.testing.assert_allclose(frame.area_m2, frame.geometry.area)
    assert frame.area_m2.sum() == (classes != 255).sum() * 100
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        geo = json.loads(pq.read_schema(out).metadata[b"geo"])
        assert geo["primary_column"] == "geometry"
        assert geo["columns"]["geometry"]["encoding"] == "WKB"
        assert geo["columns"]["geometry"]["geometry_types"] == ["Polygon"]
        if "Parquet" not in pyogrio.list_drivers():
            pytest.skip("this GDAL has no Parquet driver; geopandas read-back checked only")
    via_gdal = pyogrio.read_dataframe(out, layer="classes" if suffix == ".gpkg" else None)
    assert len(via_gdal) == len(frame) and via_gdal.crs.to_epsg() == 32633
    assert sorted(via_gdal.class_name) == sorted(frame.class_name)
    if suffix == ".gpkg":
        assert pyogrio.list_layers(out)[0][0] == "classes"


def test_empty_raster_writes_an_empty_layer(tmp_path):
    tif = write_classes(tmp_path / "c.tif", np.full((8, 8), 255, np.uint8))
    for suffix in (".gpkg", ".parquet"):
        summary = vectorize(tif, tmp_path / f"o{suffix}")
        assert summary.n_polygons == 0 and len(read_polys(summary.path)) == 0


def test_geographic_crs_areas_are_square_metres(tmp_path):
    transform = Affine(0.001, 0, 15.0, 0, -0.001, 50.0)  # ~72 m x 111 m pixels at 50 N
    classes = np.zeros((30, 30), np.uint8)
    classes[:, 15:] = 1
    tif = write_classes(tmp_path / "c.tif", classes, crs="EPSG:4326", transform=transform)
    got = read_polys(vectorize(tif, tmp_path / "o.gpkg", window=8).path)
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    for geom, area in zip(got.geometry, got.area_m2, strict=True):
        exact = abs(geod.geometry_area_perimeter(geom)[0])
        assert area == pytest.approx(exact, rel=2e-3)
    assert got.area_m2.sum() > 1e6  # square metres, not square degrees


# --- sieve and simplify ----------------------------------------------------------------------

def test_sieve_matches_rasterio_where_each_small_region_has_one_neighbour(tmp_path):
    classes = np.zeros((64, 64), np.uint8)
    classes[:, 40:] = 3
    for i, (r, c) in enumerate([(5, 5), (20, 30), (50, 10), (10, 50), (40, 55), (30, 8)]):
        classes[r:r + 1 + i % 2, c:c + 1 + i % 3] = 1 + i % 2  # islands of 1 to 6 pixels
    classes[50:54, 50:54] = 2  # 16 pixels: kept
    tif = write_classes(tmp_path / "c.tif", classes, nodata=None)
    for window in (8, 1024):
        got = read_polys(vectorize(tif, tmp_path / f"o{window}.parquet", min_area=700,
                                   window=window).path)
        assert got.area_m2.min() >= 700
        expected = features.sieve(classes, size=7, connectivity=4)
        ref = [shape(g) for g, _ in features.shapes(expected, connectivity=4,
                                                    transform=TRANSFORM)]
        assert all(shapely.equals(canonical(got.geometry), canonical(ref)))


@pytest.mark.parametrize("passes", [1, 2])
def test_sieve_halo_is_enough_for_the_farthest_decision(tmp_path, monkeypatch, passes):
    # One pass decides a 4-pixel region at the seam x = 16 from a large neighbour first
    # seen 8 (= 2 * 5 - 2) pixels past the seam: the class-3 piece left of the seam must get
    # the vertices where the sieved region meets it, whatever the window.
    monkeypatch.setattr(vmod, "SIEVE_PASSES", passes)
    classes = np.full((24, 32), 255, np.uint8)
    classes[:, :15] = 0
    classes[2:9, 15] = 3
    classes[5, 16:20] = 1  # small: ties between 3 (left) and 2 (right) go to 2
    classes[5, 20:25] = 2  # large, but only from its 5th pixel on
    classes[5:20, 24] = 2
    tif = write_classes(tmp_path / "c.tif", classes)
    outs = [read_polys(vectorize(tif, tmp_path / f"o{w}.gpkg", min_area=450, window=w).path)
            for w in (16, 1024)]
    assert sorted(outs[1].area_m2[outs[1].class_id == 2]) == [(4 + 5 + 14) * 100.0]
    assert all(shapely.equals_exact(canonical(outs[0].geometry), canonical(outs[1].geometry)))
    assert shapely.coverage_is_valid(outs[0].geometry.to_numpy())


def test_sieve_does_not_depend_on_the_windows(tmp_path):
    classes = blobs(11, (90, 100), cell=5, noise=0.08)
    tif = write_classes(tmp_path / "c.tif", classes)
    plain = read_polys(vectorize(tif, tmp_path / "plain.parquet").path)
    outs = [read_polys(vectorize(tif, tmp_path / f"o{w}.parquet", min_area=450,
                                 window=w).path) for w in (16, 25, 1024)]
    assert len(outs[2]) < len(plain) / 2
    assert (plain.area_m2 < 450).sum() > (outs[2].area_m2 < 450).sum()
    for other in outs[:2]:
        assert all(shapely.equals_exact(canonical(other.geometry), canonical(outs[2].geometry)))
    assert outs[2].area_m2.sum() == plain.area_m2.sum()  # nodata never grows or shrinks


def _coverage_checks(frame, reference_area):
    geoms = frame.geometry.to_numpy()
    assert shapely.is_valid(geoms).all()
    assert (frame.geometry.geom_type == "Polygon").all()
    assert frame.area_m2.sum() == pytest.approx(reference_area, rel=1e-9)
    assert shapely.union_all(geoms).area == pytest.approx(reference_area, rel=1e-9)
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    other = left < right
    overlap = shapely.area(shapely.intersection(geoms[left[other]], geoms[right[other]]))
    assert overlap.max(initial=0) < 1e-6
    assert shapely.coverage_is_valid(geoms)


@pytest.mark.parametrize("chunk", [100_000, 7])
def test_simplify_keeps_a_valid_coverage(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(vmod, "_CHUNK", chunk)  # 7: many chunks, shared edges between them
    classes = smooth_classes(2, 128)
    tif = write_classes(tmp_path / "c.tif", classes)
    plain = read_polys(vectorize(tif, tmp_path / "plain.gpkg", window=40).path)
    simple = read_polys(vectorize(tif, tmp_path / "simple.gpkg", simplify=25,
                                  window=40).path)
    assert len(simple) == len(plain)
    _coverage_checks(plain, (classes != 255).sum() * 100)
    _coverage_checks(simple, (classes != 255).sum() * 100)
    n_plain = shapely.get_num_coordinates(plain.geometry.to_numpy()).sum()
    n_simple = shapely.get_num_coordinates(simple.geometry.to_numpy()).sum()
    assert n_simple < 0.8 * n_plain
    np.testing.assert_allclose(simple.area_m2, simple.geometry.area)


# --- bad inputs ------------------------------------------------------------------------------

def _one_line_error(call) -> str:
    with pytest.raises(VectorizeError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


def test_wrong_suffix(tmp_path):
    tif = write_classes(tmp_path / "c.tif", np.zeros((4, 4), np.uint8))
    msg = _one_line_error(lambda: vectorize(tif, tmp_path / "o.xyz"))
    assert "o.xyz" in msg and ".gpkg" in msg and ".parquet" in msg and "--driver" in msg
    assert not (tmp_path / "o.xyz").exists()


def test_existing_output_is_refused_and_left_untouched(tmp_path):
    tif = write_classes(tmp_path / "c.tif", np.zeros((4, 4), np.uint8))
    out = tmp_path / "o.gpkg"
    out.write_bytes(b"precious")
    msg = _one_line_error(lambda: vectorize(tif, out))
    assert str(out) in msg and "overwrite" in msg
    assert out.read_bytes() == b"precious"
    vectorize(tif, out, overwrite=True)
    assert len(read_polys(out)) == 1


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize("kind", ["multiband", "float", "missing", "not a raster", "no crs"])
def test_bad_raster_is_a_one_line_error_and_leaves_nothing(tmp_path, kind):
    tif = tmp_path / "c.tif"
    if kind == "multiband":
        write_classes(tif, np.zeros((2, 4, 4), np.uint8))
    elif kind == "float":
        write_classes(tif, np.zeros((4, 4), np.float32), nodata=None)
    elif kind == "not a raster":
        tif.write_text("hello")
    elif kind == "no crs":
        with rasterio.open(tif, "w", driver="GTiff", width=4, height=4, count=1,
                           dtype="uint8") as dst:
            dst.write(np.zeros((1, 4, 4), np.uint8))
    msg = _one_line_error(lambda: vectorize(tif, tmp_path / "o.gpkg"))
    assert str(tif) in msg
    expected = {"multiband": "2 bands", "float": "float32", "missing": "no such file",
                "not a raster": "cannot open", "no crs": "no CRS"}[kind]
    assert expected in msg
    assert not (tmp_path / "o.gpkg").exists() and _leftovers(tmp_path) == []


def test_bad_options_are_refused(tmp_path):
    tif = write_classes(tmp_path / "c.tif", np.zeros((4, 4), np.uint8))
    for kw in ({"window": 0}, {"min_area": -1.0}, {"simplify": float("nan")}):
        msg = _one_line_error(lambda kw=kw: vectorize(tif, tmp_path / "o.gpkg", **kw))
        assert next(iter(kw)) in msg
    msg = _one_line_error(lambda: vectorize(tif, tmp_path / "nowhere" / "o.gpkg"))
    assert "does not exist" in msg


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet"])
@pytest.mark.parametrize("error", [OSError, rasterio.errors.RasterioIOError])
def test_failure_midway_leaves_no_partial_file(tmp_path, monkeypatch, suffix, error):
    monkeypatch.setattr(vmod, "_CHUNK", 5)  # some chunks are written before the failure
    tif = write_classes(tmp_path / "c.tif", blobs(2, (64, 64)))
    real, calls = vmod._read, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise error("disk on fire")
        return real(*args)

    monkeypatch.setattr(vmod, "_read", failing)
    # a read error becomes a one-line VectorizeError; anything else goes through as it is
    expected = VectorizeError if error is not OSError else OSError
    with pytest.raises(expected, match="disk on fire") as info:
        vectorize(tif, tmp_path / f"o{suffix}", window=16)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif"]


# --- command line ----------------------------------------------------------------------------

def test_cli_vectorize_prints_one_line(tmp_path):
    tif = write_classes(tmp_path / "c.tif", blobs(4, (50, 50)))
    out = tmp_path / "o.parquet"
    res = CliRunner().invoke(main, ["vectorize", str(tif), "-o", str(out), "--window", "16",
                                    "--min-area", "300", "--simplify", "10"])
    assert res.exit_code == 0, res.output
    assert res.output.count("\n") == 1 and "polygons" in res.output and str(out) in res.output
    assert read_polys(out).area_m2.min() >= 300
    again = CliRunner().invoke(main, ["vectorize", str(tif), "-o", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.stderr
    assert again.stderr.strip().count("\n") == 0 and "Traceback" not in again.stderr
    assert CliRunner().invoke(main, ["vectorize", str(tif), "-o", str(out),
                                     "--overwrite"]).exit_code == 0


def test_cli_vectorize_does_not_import_torch(tmp_path):
    tif = write_classes(tmp_path / "c.tif", np.zeros((8, 8), np.uint8))
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from geomm.cli import main\n"
        f"r = CliRunner().invoke(main, ['vectorize', {str(tif)!r}, '-o', "
        f"{str(tmp_path / 'o.gpkg')!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in ('torch', 'torchgeo', 'lightning') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_a_minimum_area_near_the_rasters_own_reads_no_context_past_it(tmp_path, monkeypatch):
    from geomm.vector import vectorize as vmod

    classes = blobs(5, (90, 100), cell=9, noise=0.05)
    tif = write_classes(tmp_path / "c.tif", classes)
    reads: list[tuple[int, int]] = []
    real = vmod._read

    def counted(src, rows, cols, no_class):
        reads.append((rows[1] - rows[0], cols[1] - cols[0]))
        return real(src, rows, cols, no_class)

    monkeypatch.setattr(vmod, "_read", counted)
    # 3 000 px (a third of the raster): a sieve halo of ~6 000 px, capped at the raster's side
    outs = [read_polys(vectorize(tif, tmp_path / f"o{w}.parquet", min_area=3e5,
                                 window=w).path) for w in (16, 1024)]
    assert max(max(r) for r in reads) <= 1024 + 2 * 101
    assert all(shapely.equals_exact(canonical(outs[0].geometry), canonical(outs[1].geometry)))
