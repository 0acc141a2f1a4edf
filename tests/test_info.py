"""Tests for ``geomm.info`` and the ``geomm info`` command, on tiny synthetic files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.errors import NotGeoreferencedWarning

from geomm.cli import main
from geomm.errors import NotGeodataError
from geomm.info import RasterInfo, VectorInfo, describe, format_info

# A 120 x 100 px grid at 10 m in UTM 33N whose top-left corner is (500000, 5000000).
WIDTH, HEIGHT, RES = 120, 100, 10.0
LEFT, TOP = 500_000.0, 5_000_000.0
BOUNDS = (LEFT, TOP - HEIGHT * RES, LEFT + WIDTH * RES, TOP)


def _pixels(count: int = 1, dtype: str = "uint16") -> np.ndarray:
    rng = np.random.default_rng(42)
    return rng.integers(1, 1000, (count, HEIGHT, WIDTH)).astype(dtype)


def _profile(**overrides: object) -> dict[str, object]:
    profile: dict[str, object] = {
        "width": WIDTH, "height": HEIGHT, "count": 1, "dtype": "uint16",
        "crs": "EPSG:32633", "transform": Affine(RES, 0.0, LEFT, 0.0, -RES, TOP),
    }
    profile.update(overrides)
    return profile


@pytest.fixture
def utm_tif(tmp_path: Path) -> Path:
    """Two-band striped GTiff in EPSG:32633 with band names and nodata 0."""
    path = tmp_path / "utm.tif"
    with rasterio.open(path, "w", driver="GTiff", nodata=0, **_profile(count=2)) as dst:
        dst.write(_pixels(2))
        dst.descriptions = ("B04", "B08")
    return path


@pytest.fixture
def no_crs_tif(tmp_path: Path) -> Path:
    path = tmp_path / "nocrs.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=32, height=24, count=1,
                           dtype="float32") as dst:
            dst.write(np.random.default_rng(0).random((1, 24, 32), dtype=np.float32))
    return path


@pytest.fixture
def cog_tif(tmp_path: Path) -> Path:
    path = tmp_path / "cog.tif"
    with rasterio.open(path, "w", driver="COG", **_profile()) as dst:
        dst.write(_pixels())
    return path


@pytest.fixture
def polygons_gpkg(tmp_path: Path) -> Path:
    """GeoPackage with three square fields, each with a class code and a name."""
    gpd = pytest.importorskip("geopandas")
    from shapely.geometry import box

    path = tmp_path / "fields.gpkg"
    gdf = gpd.GeoDataFrame(
        {"code": [1, 2, 3], "name": ["wheat", "forest", "water"]},
        geometry=[box(10.0, 45.0, 10.1, 45.1), box(10.2, 45.0, 10.3, 45.1),
                  box(10.4, 45.2, 10.5, 45.3)],
        crs="EPSG:4326",
    )
    gdf.to_file(path, layer="fields", driver="GPKG")
    return path


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("field notes: no coordinates here\n")
    return path


def test_raster_with_crs_reports_grid_bands_and_nodata(utm_tif: Path) -> None:
    info = describe(utm_tif)
    assert isinstance(info, RasterInfo)
    assert (info.driver, info.crs, info.epsg) == ("GTiff", "EPSG:32633", 32633)
    assert info.resolution == (RES, RES)
    assert (info.width, info.height, info.count) == (WIDTH, HEIGHT, 2)
    assert info.bounds == pytest.approx(BOUNDS)
    assert info.dtypes == ("uint16", "uint16")
    assert info.descriptions == ("B04", "B08")
    assert info.nodata == (0.0, 0.0)
    assert info.block_size[0] == WIDTH  # a strip spans the whole width
    assert info.overviews == ()


def test_raster_without_crs_is_still_described(no_crs_tif: Path) -> None:
    info = describe(no_crs_tif)
    assert isinstance(info, RasterInfo)
    assert info.crs is None and info.epsg is None
    assert (info.width, info.height, info.dtypes) == (32, 24, ("float32",))
    assert "not georeferenced" in format_info(info)
    assert not info.georeferenced  # no geotransform either: the bounds are pixel numbers
    assert "the bounds are pixel numbers, rows counted downwards" in format_info(info)


def test_a_geotiff_cut_short_is_refused_with_where_it_ends(cog_tif: Path, tmp_path: Path
                                                          ) -> None:
    assert describe(cog_tif).georeferenced
    cut = tmp_path / "cut.tif"
    data = cog_tif.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])  # an interrupted copy: GDAL opens it
    with pytest.raises(NotGeodataError, match=r"cut.tif: truncated \(band 1's last block ends "
                                              r"at byte \d+, the file has \d+\)"):
        describe(cut)


def test_cog_is_detected_and_plain_striped_tiff_is_not(cog_tif: Path, utm_tif: Path) -> None:
    cog, plain = describe(cog_tif), describe(utm_tif)
    assert isinstance(cog, RasterInfo) and isinstance(plain, RasterInfo)
    assert cog.is_cog is True
    assert plain.is_cog is False


def test_tiff_with_external_overviews_is_not_cog(tmp_path: Path) -> None:
    path = tmp_path / "tiled_ovr.tif"
    with rasterio.open(path, "w", driver="GTiff", tiled=True, blockxsize=16, blockysize=16,
                       **_profile()) as dst:
        dst.write(_pixels())
    with rasterio.Env(TIFF_USE_OVR=True), rasterio.open(path, "r+") as dst:
        dst.build_overviews([2, 4])  # TIFF_USE_OVR: GDAL writes them to tiled_ovr.tif.ovr
    assert (tmp_path / "tiled_ovr.tif.ovr").exists()
    info = describe(path)
    assert isinstance(info, RasterInfo)
    assert info.overviews == (2, 4)
    assert info.is_cog is False


def test_geopackage_is_described_as_vector(polygons_gpkg: Path) -> None:
    info = describe(polygons_gpkg)
    assert isinstance(info, VectorInfo)
    assert (info.driver, info.layer, info.layer_count) == ("GPKG", "fields", 1)
    assert (info.crs, info.epsg) == ("EPSG:4326", 4326)
    assert info.feature_count == 3
    assert info.geometry_types == ("Polygon",)
    assert info.fields == {"code": "int64", "name": "str"}
    assert info.bounds == pytest.approx((10.0, 45.0, 10.5, 45.3))


def test_custom_crs_without_epsg_is_named(tmp_path: Path) -> None:
    path = tmp_path / "laea.tif"
    laea = "+proj=laea +lat_0=52 +lon_0=10 +x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs"
    with rasterio.open(path, "w", driver="GTiff", **_profile(crs=laea)) as dst:
        dst.write(_pixels())
    info = describe(path)
    assert info.epsg is None
    assert info.crs is not None and "+proj=laea" in info.crs and "+lat_0=52" in info.crs


def test_second_layer_is_counted(polygons_gpkg: Path) -> None:
    gpd = pytest.importorskip("geopandas")
    from shapely.geometry import Point

    gpd.GeoDataFrame({"id": [1]}, geometry=[Point(10.0, 45.0)], crs="EPSG:4326").to_file(
        polygons_gpkg, layer="wells", driver="GPKG")
    info = describe(polygons_gpkg)
    assert isinstance(info, VectorInfo)
    assert (info.layer, info.layer_count, info.feature_count) == ("fields", 2, 3)
    assert "fields  (+1 more layer)" in format_info(info)


def test_mixed_geojson_lists_each_geometry_type(tmp_path: Path) -> None:
    path = tmp_path / "mixed.geojson"
    features = [
        {"type": "Point", "coordinates": [10.0, 45.0]},
        {"type": "LineString", "coordinates": [[10.0, 45.0], [10.1, 45.1]]},
        {"type": "Point", "coordinates": [10.2, 45.2]},
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": i}, "geometry": g}
        for i, g in enumerate(features)]}))
    info = describe(path)
    assert isinstance(info, VectorInfo)
    assert (info.driver, info.epsg, info.feature_count) == ("GeoJSON", 4326, 3)
    assert info.geometry_types == ("LineString", "Point")
    assert info.bounds == pytest.approx((10.0, 45.0, 10.2, 45.2))


def test_text_file_is_not_geodata(text_file: Path) -> None:
    with pytest.raises(NotGeodataError, match="not a raster or vector dataset") as err:
        describe(text_file)
    assert str(err.value).startswith(str(text_file))
    assert "\n" not in str(err.value)


def test_csv_without_geometry_is_not_geodata(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("plot,yield\n1,7.5\n2,8.1\n")
    with pytest.raises(NotGeodataError, match="no geometry column"):
        describe(path)


def test_missing_path_says_no_such_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.tif"
    with pytest.raises(NotGeodataError, match="no such file") as err:
        describe(missing)
    assert str(err.value) == f"{missing}: no such file"


def test_format_info_shows_what_a_gis_user_reads(utm_tif: Path, polygons_gpkg: Path) -> None:
    text = format_info(describe(utm_tif))
    assert text.splitlines()[0] == str(utm_tif)
    for expected in ("EPSG:32633", "120 x 100 px", "10 x 10", "B04", "B08", "uint16"):
        assert expected in text
    assert [line.split()[-1] for line in text.splitlines() if "COG" in line] == ["no"]
    vtext = format_info(describe(polygons_gpkg))
    for expected in ("GPKG", "EPSG:4326", "Polygon", "code (int64)", "name (str)"):
        assert expected in vtext
    assert [line.split()[-1] for line in vtext.splitlines() if "features" in line] == ["3"]


def test_cli_info_json_reports_epsg(utm_tif: Path) -> None:
    result = CliRunner().invoke(main, ["info", "--json", str(utm_tif)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["kind"], doc["epsg"], doc["resolution"]) == ("raster", 32633, [RES, RES])
    assert doc["nodata"] == [0.0, 0.0]


def test_cli_info_on_text_file_fails_with_one_line(text_file: Path) -> None:
    result = CliRunner().invoke(main, ["info", str(text_file)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("geomm: error:")
    assert str(text_file) in lines[0]


def test_cli_info_prints_every_path(utm_tif: Path, cog_tif: Path, polygons_gpkg: Path) -> None:
    paths = [str(utm_tif), str(cog_tif), str(polygons_gpkg)]
    result = CliRunner().invoke(main, ["info", *paths])
    assert result.exit_code == 0, result.output
    headers = [line for line in result.stdout.splitlines() if line in paths]
    assert headers == paths
    docs = json.loads(CliRunner().invoke(main, ["info", "--json", *paths]).stdout)
    assert [d["kind"] for d in docs] == ["raster", "raster", "vector"]
    assert [d["epsg"] for d in docs] == [32633, 32633, 4326]


def test_cli_info_describes_the_good_paths_and_names_each_bad_one(
        utm_tif: Path, text_file: Path, polygons_gpkg: Path, tmp_path: Path) -> None:
    gone = tmp_path / "gone.tif"
    paths = [str(utm_tif), str(text_file), str(polygons_gpkg), str(gone)]
    for extra in ([], ["--json"]):
        result = CliRunner().invoke(main, ["info", *extra, *paths])
        assert result.exit_code == 1
        errors = result.stderr.splitlines()
        assert len(errors) == 2 and all(e.startswith("geomm: error:") for e in errors)
        assert str(text_file) in errors[0] and str(gone) in errors[1]
        if extra:
            assert [d["kind"] for d in json.loads(result.stdout)] == ["raster", "vector"]
        else:
            assert [ln for ln in result.stdout.splitlines() if ln in paths] == paths[::2]


def test_an_empty_path_is_refused_not_read_as_the_current_folder() -> None:
    result = CliRunner().invoke(main, ["info", ""])
    assert result.exit_code == 1 and "an empty path" in result.stderr


def test_plain_tiled_geotiff_is_not_a_cog(make_raster):
    from geomm.info import describe

    arr = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    path = make_raster("tiled.tif", arr, tiled=True, blockxsize=16, blockysize=16)
    assert describe(path).is_cog is False


@pytest.mark.e2e
def test_info_on_the_real_sample_jp2_bands_and_osm_geopackage(s2_sample):
    infrared = s2_sample.scene.modalities["infrared"].bands
    b08, b11 = describe(infrared[0].path), describe(infrared[1].path)
    assert isinstance(b08, RasterInfo) and b08.driver == "JP2OpenJPEG"
    assert b08.epsg == 32633 and b08.crs == "EPSG:32633"
    assert b08.resolution == (10.0, 10.0) and (b08.width, b08.height) == (1536, 768)
    assert b11.resolution == (20.0, 20.0) and (b11.width, b11.height) == (768, 384)
    assert b08.bounds == pytest.approx((330000.0, 5814360.0, 345360.0, 5822040.0))
    assert b08.dtypes == ("uint16",) and b08.is_cog is False
    osm = describe(s2_sample.scene.labels.path)
    assert isinstance(osm, VectorInfo) and osm.driver == "GPKG"
    assert osm.epsg == 32633 and osm.feature_count == 604
    assert "fclass" in osm.fields and any("Polygon" in g for g in osm.geometry_types)
    res = CliRunner().invoke(main, ["info", str(infrared[1].path)])
    assert res.exit_code == 0 and "EPSG:32633" in res.output and "768 x 384" in res.output


def _gcp_only(path: Path) -> Path:
    from rasterio.control import GroundControlPoint

    gcps = [GroundControlPoint(row=r, col=c, x=500000.0 + 10 * c, y=5800000.0 - 10 * r)
            for r, c in [(0, 0), (0, 20), (20, 0), (20, 20)]]
    with rasterio.open(path, "w", driver="GTiff", width=20, height=20, count=1, dtype="uint8",
                       gcps=gcps, crs="EPSG:32633") as dst:
        dst.write(np.ones((1, 20, 20), np.uint8))
    return path


def test_raster_georeferenced_by_control_points_says_so(tmp_path: Path) -> None:
    info = describe(_gcp_only(tmp_path / "gcp.tif"))
    assert isinstance(info, RasterInfo) and info.gcps == 4 and info.gcp_crs == "EPSG:32633"
    text = format_info(info)
    assert "4 ground control points, no geotransform" in text and "gdalwarp" in text
    assert "EPSG:32633 (of its control points)" in text
    assert info.to_dict()["gcps"] == 4


def test_a_shapefile_without_its_index_says_which_part_is_missing(tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    shp = tmp_path / "fields.shp"
    gpd.GeoDataFrame({"c": [1]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:4326").to_file(shp)
    shp.with_suffix(".shx").unlink()
    with pytest.raises(NotGeodataError, match="fields.shp: a shapefile without its .shx index"):
        describe(shp)
