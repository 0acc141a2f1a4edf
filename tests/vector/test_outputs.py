"""Vector files of every format, the GeoPackage version GDAL 3.6 reads without a warning, and
the QGIS style inside the GeoPackage (checked in real QGIS)."""

from __future__ import annotations

import sqlite3
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pyogrio
import pytest
import shapely
from click.testing import CliRunner
from qgislayer import qgis_layer
from test_vectorize import NAMES, blobs, canonical, read_polys, write_classes

from geomm.classes import ClassTable
from geomm.cli import main
from geomm.vector import vectorize as vmod
from geomm.vector.styles import STYLE_NAME
from geomm.vector.vectorize import VectorizeError, vectorize
from tests.conftest import need_program

COLOURS = {i: ClassTable.from_names(NAMES).hex_colour(i) for i in range(len(NAMES))}


@pytest.fixture(scope="module")
def tif(tmp_path_factory):
    return write_classes(tmp_path_factory.mktemp("fmt") / "c.tif", blobs(5, (60, 50)))


@pytest.mark.parametrize("name,driver", [("o.fgb", None), ("o.shp", None),
                                         ("o.geojson", None), ("o.seq", "FlatGeobuf"),
                                         ("o.parquet", None), ("o.data", "geoparquet")])
def test_every_format_holds_the_same_polygons_and_crs(tif, tmp_path, name, driver):
    ref = read_polys(vectorize(tif, tmp_path / "ref.gpkg", window=16).path)
    summary = vectorize(tif, tmp_path / name, window=16, driver=driver)
    assert summary.path == tmp_path / name
    if summary.path.suffix in (".parquet", ".data"):
        import geopandas as gpd

        got = gpd.read_parquet(summary.path)
    else:
        got = pyogrio.read_dataframe(summary.path)
    assert list(got.columns) == ["class_id", "class_name", "area_m2", "geometry"]
    assert got.crs.to_epsg() == 32633 and (got.geometry.geom_type == "Polygon").all()
    assert all(shapely.equals_exact(canonical(got.geometry), canonical(ref.geometry)))
    assert sorted(zip(got.class_id, got.class_name, got.area_m2, strict=True)) == sorted(
        zip(ref.class_id, ref.class_name, ref.area_m2, strict=True))
    assert not [p.name for p in tmp_path.iterdir() if ".partial" in p.name]
    # the QGIS style beside it (QGIS loads <name>.qml as the layer's default style)
    qml = (tmp_path / name).with_suffix(".qml").read_text()
    assert 'attr="class_id"' in qml and all(f'label="{n}"' in qml for n in NAMES)


def test_shapefile_overwrite_replaces_every_part_and_a_failure_leaves_none(tif, tmp_path,
                                                                           monkeypatch):
    out = tmp_path / "map.shp"
    vectorize(tif, out)
    (tmp_path / "map.qix").write_bytes(b"stale index of the old map")
    with pytest.raises(VectorizeError, match="already exists"):
        vectorize(tif, out)
    vectorize(tif, out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir() if p.stem == "map") == [
        "map.cpg", "map.dbf", "map.prj", "map.qml", "map.shp", "map.shx"]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real = vmod._read

    def failing(src, rows, cols, no_class):
        if rows[0] > 20:
            raise OSError("disk on fire")
        return real(src, rows, cols, no_class)

    monkeypatch.setattr(vmod, "_CHUNK", 5)
    monkeypatch.setattr(vmod, "_read", failing)
    with pytest.raises(OSError, match="disk on fire"):
        vectorize(tif, out, overwrite=True, window=16)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_bad_driver_and_append_to_a_file_are_one_line_errors(tif, tmp_path):
    for call, words in ((lambda: vectorize(tif, tmp_path / "o.x", driver="NoSuchDriver"),
                         ["NoSuchDriver", "GPKG", "FlatGeobuf"]),
                        (lambda: vectorize(tif, tmp_path / "o.gpkg", append=True),
                         ["PostGIS", "overwrite"]),
                        (lambda: vectorize(tif, tmp_path / "o.gpkg", append=True,
                                           overwrite=True), ["exclude"])):
        with pytest.raises(VectorizeError) as info:
            call()
        assert "\n" not in str(info.value) and all(w in str(info.value) for w in words)
    assert list(tmp_path.iterdir()) == []


def test_geopackage_is_version_1_2_and_gdal_3_6_ogrinfo_gives_no_warning(tif, tmp_path):
    ogrinfo = need_program("ogrinfo", why="GDAL's ogrinfo reads the GeoPackage",
                           package="gdal-bin")
    out = vectorize(tif, tmp_path / "map.gpkg").path
    with sqlite3.connect(out) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # 'GPKG'
        assert db.execute("PRAGMA user_version").fetchone()[0] == 10200
    proc = subprocess.run([ogrinfo, "-so", str(out), "classes"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout + proc.stderr
    assert "Warning" not in text and "partially supported" not in text, text
    assert "Feature Count: 137" in proc.stdout and "Geometry: Polygon" in proc.stdout
    version = subprocess.run([ogrinfo, "--version"], capture_output=True, text=True).stdout
    assert version.startswith("GDAL ")


def _check_style(row, layer="classes"):
    """The QML and SLD colour ``class_id`` 0-4 in the class table's colours."""
    qml, sld = row["styleQML"], row["styleSLD"]
    assert qml.startswith("<!DOCTYPE qgis")
    root = ET.fromstring(qml.split("\n", 1)[1])
    renderer = root.find("renderer-v2")
    assert renderer.get("type") == "categorizedSymbol" and renderer.get("attr") == "class_id"
    cats = [(c.get("value"), c.get("label")) for c in renderer.iter("category")]
    assert cats == [(str(i), n) for i, n in enumerate(NAMES)]
    fills = [s.find("layer/Option/Option[@name='color']").get("value")
             for s in renderer.iter("symbol")]
    assert fills == [",".join(str(int(COLOURS[i][k:k + 2], 16)) for k in (1, 3, 5)) + ",255"
                     for i in range(5)]
    ns = {"se": "http://www.opengis.net/se", "ogc": "http://www.opengis.net/ogc"}
    rules = ET.fromstring(sld).findall(".//se:Rule", ns)
    assert [r.find("se:Name", ns).text for r in rules] == NAMES
    assert [r.find(".//ogc:Literal", ns).text for r in rules] == [str(i) for i in range(5)]
    assert [r.find(".//se:Fill/se:SvgParameter", ns).text for r in rules] == [
        COLOURS[i] for i in range(5)]
    assert ET.fromstring(sld).find(".//{http://www.opengis.net/se}Name").text == layer


def test_geopackage_carries_its_qgis_style_and_opens_styled_in_qgis(tif, tmp_path):
    out = vectorize(tif, tmp_path / "map.gpkg").path
    assert [tuple(x) for x in pyogrio.list_layers(out)] == [("classes", "Polygon"),
                                                            ("layer_styles", None)]
    with sqlite3.connect(out) as db:
        db.row_factory = sqlite3.Row
        # the query QGIS makes for a GeoPackage layer's default style
        rows = db.execute("SELECT * FROM layer_styles WHERE f_table_catalog = '' AND "
                          "f_table_schema = '' AND f_table_name = 'classes' AND "
                          "f_geometry_column = 'geom' AND useAsDefault").fetchall()
    assert len(rows) == 1 and rows[0]["styleName"] == STYLE_NAME
    _check_style(rows[0])
    seen = qgis_layer(str(out), "ogr", tmp_path)
    assert seen["sublayers"] == ["classes"]  # QGIS opens it at once, no layer to pick
    assert seen["valid"] and seen["count"] == 137 and seen["renderer"] == "categorizedSymbol"
    assert seen["attr"] == "class_id"
    assert seen["categories"] == [[str(i), n, COLOURS[i]] for i, n in enumerate(NAMES)]


def test_classes_named_by_band_tags_get_legend_colours_and_a_custom_layer(tmp_path):
    classes = np.zeros((10, 10), np.uint8)
    classes[:, 5:] = 7
    tif = write_classes(tmp_path / "c.tif", classes, table=False,
                        band_tags={"class_7": "water"})
    out = tmp_path / "m.gpkg"
    res = CliRunner().invoke(main, ["vectorize", str(tif), "-o", str(out), "--layer", "lc"])
    assert res.exit_code == 0, res.output
    assert [str(n) for n, _ in pyogrio.list_layers(out)] == ["lc", "layer_styles"]
    row = pyogrio.read_dataframe(out, layer="layer_styles").iloc[0]
    assert row["f_table_name"] == "lc"
    cats = [(c.get("value"), c.get("label")) for c in
            ET.fromstring(row["styleQML"].split("\n", 1)[1]).iter("category")]
    assert cats == [("0", "0"), ("7", "water")]
    assert "#0064c8" in row["styleSLD"]  # water is blue


def test_multi_file_and_folder_formats_by_driver(tif, tmp_path):
    tab = vectorize(tif, tmp_path / "m.tab", driver="MapInfo File").path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.dat", "m.id", "m.map", "m.qml",
                                                          "m.tab"]
    assert pyogrio.read_info(tab)["features"] == 137
    # m.gdb's style would be m.qml too: refused (m.tab's is kept), another name is written
    with pytest.raises(VectorizeError, match="m.qml already exists"):
        vectorize(tif, tmp_path / "m.gdb", driver="OpenFileGDB")
    left = tmp_path / ".g.gdb.geomm-partial-0123abcd.gdb"  # what a killed writer left
    left.mkdir()
    (left / "a00000001.gdbtable").write_bytes(b"half")
    gdb = vectorize(tif, tmp_path / "g.gdb", driver="OpenFileGDB").path
    assert gdb.is_dir() and pyogrio.read_info(gdb, layer="classes")["features"] == 137
    assert not [p.name for p in tmp_path.iterdir() if "partial" in p.name]
