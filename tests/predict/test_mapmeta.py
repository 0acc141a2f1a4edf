"""Maps that describe themselves (issue 16): GDAL categories, colour table and attribute table
of classes.tif; the STAC Item's acquisition time, id per scene and run, raster:bands and
vector asset; a STAC Collection over a batch's Items."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
from synthetic import NAMES, cnn_bundle, write_band, write_recipe, write_scene

from geomm.classes import ClassTable
from geomm.errors import RecipeError
from geomm.modality import BandSpec, ModalitySpec
from geomm.predict._mapfiles import write_sidecars
from geomm.predict._stacitem import (
    Acquisition,
    acquisition,
    add_vector_asset,
    write_stac_collection,
)
from geomm.predict.cogout import write_class_pam
from geomm.predict.scene import PredictOptions, predict_recipe, predict_scene
from geomm.predict.sidecars import RASTER_EXT, SidecarError
from geomm.recipe import load_recipe
from tests.conftest import need_program, require_or_skip

TABLE = ClassTable.from_names(NAMES)
BUNDLE = SimpleNamespace(kind="cnn", meta=SimpleNamespace(recipe="synthetic"))


def _opts(**kw) -> PredictOptions:
    return PredictOptions(**{"device": "cpu", "threads": 1, "tile_size": 96, "halo": 12, **kw})


def _mods(scene) -> list[ModalitySpec]:
    return [ModalitySpec("optical", (BandSpec(scene["a"], "A"), BandSpec(scene["b"], "B"))),
            ModalitySpec("radar", (BandSpec(scene["r"], "VV"),))]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return cnn_bundle(tmp_path_factory.mktemp("b") / "cnn")


@pytest.fixture(scope="module")
def predicted(scene, bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("map") / "map"
    predict_scene(bundle, _mods(scene), out, options=_opts(), scene_id="tile-7")
    return out


def _item(folder: Path) -> dict:
    return json.loads((folder / "item.json").read_text())


# -- classes.tif: categories, colour table, attribute table --------------------------------

def test_categories_colour_table_and_rat_are_read_by_gdal(predicted):
    with rasterio.open(predicted / "classes.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"  # still a COG
        cmap = src.colormap(1)
        counts = np.bincount(src.read(1).ravel(), minlength=256)
    # as long as the class list, in the class colours (nodata 255 outside it: transparent)
    assert cmap == {i: (*TABLE.colours[i], 255) for i in range(len(NAMES))}
    band = ET.parse(predicted / "classes.tif.aux.xml").getroot().find("PAMRasterBand")
    assert [c.text for c in band.find("CategoryNames")] == list(NAMES)
    rat = band.find("GDALRasterAttributeTable")
    assert rat.get("tableType") == "thematic"
    assert [f.findtext("Name") for f in rat.findall("FieldDefn")] == [
        "Value", "Class", "Red", "Green", "Blue", "Alpha", "Count"]
    rows = [[f.text for f in r] for r in rat.findall("Row")]
    assert rows == [[str(i), n, *map(str, TABLE.colours[i]), "255", str(counts[i])]
                    for i, n in enumerate(NAMES)]
    assert _item(predicted)["properties"]["geomm:class_pixels"] == {
        n: int(counts[i]) for i, n in enumerate(NAMES)}


def test_debian_gdalinfo_lists_the_categories_and_the_rat(predicted):
    gdalinfo = need_program("/usr/bin/gdalinfo", "gdalinfo", package="gdal-bin",
                            why="the check that GDAL's own tool reads the categories")
    text = subprocess.run([gdalinfo, str(predicted / "classes.tif")], check=True,
                          capture_output=True, text=True).stdout
    cats = text.split("Categories:")[1].split("Metadata:")[0].split()
    assert cats == [w for i, n in enumerate(NAMES) for w in (f"{i}:", n)]
    assert f"Color Table (RGB with {len(NAMES)} entries)" in text
    assert '<GDALRasterAttributeTable tableType="thematic">' in text
    assert "LAYOUT=COG" in subprocess.run([gdalinfo, "-mdd", "IMAGE_STRUCTURE",
                                           str(predicted / "classes.tif")],
                                          check=True, capture_output=True, text=True).stdout


_QGIS = """
import json, sys
from qgis.core import QgsApplication, QgsRasterLayer
app = QgsApplication([], False)
app.initQgis()
layer = QgsRasterLayer(sys.argv[1], "classes")  # its default style, as QGIS opens it
r = layer.renderer()
print(json.dumps({"renderer": r.type(), "classes": [[c.value, c.label, c.color.name()]
                                                     for c in r.classes()]}))
"""


def test_qgis_shows_the_class_names_and_colours_without_a_qml(predicted, tmp_path):
    """Real QGIS (Debian's python3-qgis, offscreen) on classes.tif with its .aux.xml only."""
    found = subprocess.run(["/usr/bin/python3", "-c", "import qgis.core"], capture_output=True)
    if found.returncode != 0:
        require_or_skip("python3-qgis is not installed (apt-get install python3-qgis) - the "
                        "check of what QGIS shows")
    for n in ("classes.tif", "classes.tif.aux.xml"):
        shutil.copy(predicted / n, tmp_path / n)
    out = subprocess.run(["/usr/bin/python3", "-c", _QGIS, str(tmp_path / "classes.tif")],
                         capture_output=True, text=True, timeout=120, check=True,
                         env={"QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path),
                              "PATH": "/usr/bin:/bin"})
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"renderer": "paletted", "classes": [
        [float(i), n, "#{:02x}{:02x}{:02x}".format(*TABLE.colours[i])]
        for i, n in enumerate(NAMES)]}


def test_large_counts_use_a_real_column(tmp_path):
    xml = write_class_pam(tmp_path / "x.tif", ["a", "b"], [(1, 2, 3), (4, 5, 6)],
                          [3, 2**33]).read_text()
    assert "<F>8589934592</F>" in xml
    count = ET.fromstring(xml).find(".//FieldDefn[@index='6']")
    assert count.findtext("Type") == "1" and count.findtext("Usage") == "1"


# -- STAC Item: id, acquisition, raster:bands, vector ---------------------------------------

def test_item_id_is_the_scene_and_a_run_token(predicted):
    item = _item(predicted)
    props = item["properties"]
    assert item["id"] == f"tile-7-{props['geomm:run']}" and props["geomm:scene"] == "tile-7"
    assert len(props["geomm:run"]) == 8
    record = json.loads((predicted / "geomm-predict.json").read_text())
    assert record["item_id"] == item["id"] and record["run_id"] == props["geomm:run"]
    # the assets' files are all there
    for asset in item["assets"].values():
        assert (predicted / asset["href"]).is_file(), asset["href"]


def test_two_runs_get_two_ids(predicted, tmp_path):
    ids = set()
    for name in ("a", "b"):
        folder = tmp_path / name
        shutil.copytree(predicted, folder)
        write_sidecars(folder, TABLE, scene_id="tile-7", bundle=BUNDLE,
                       counts=np.ones(3), probabilities=True)
        ids.add(_item(folder)["id"])
    assert len(ids) == 2 and all(i.startswith("tile-7-") for i in ids)


def test_datetime_is_never_the_time_of_writing(predicted):
    props = _item(predicted)["properties"]  # synthetic files: nothing says when
    assert props["geomm:datetime_source"] == "unknown" and props["datetime"] is None
    assert props["start_datetime"] == "1970-01-01T00:00:00Z"
    assert props["end_datetime"] <= props["created"]  # acquired before the map was made


def test_raster_bands_of_probabilities_and_confidence(predicted, scene, bundle, tmp_path):
    item = _item(predicted)
    assert RASTER_EXT in item["stac_extensions"]
    a = item["assets"]
    assert a["confidence"]["raster:bands"] == [
        {"data_type": "uint8", "nodata": 0, "scale": 1 / 255, "offset": 0.0}]
    # uint8 probabilities have no nodata value: invalid pixels are 0 in every band
    assert a["probabilities"]["raster:bands"] == [
        {"data_type": "uint8", "scale": 1 / 255, "offset": 0.0}] * 3
    assert a["classes"]["raster:bands"] == [{"data_type": "uint8", "nodata": 255}]
    f32 = tmp_path / "f32"
    predict_scene(bundle, _mods(scene), f32, options=_opts(probabilities="float32"))
    assert _item(f32)["assets"]["probabilities"]["raster:bands"] == [
        {"data_type": "float32", "nodata": "nan", "scale": 1.0, "offset": 0.0}] * 3
    # the same entries when read back from the files (as a batch mosaic does)
    write_sidecars(f32, TABLE, scene_id="x", bundle=BUNDLE, counts=np.ones(3),
                   probabilities=True)
    assert _item(f32)["assets"]["probabilities"]["raster:bands"][0]["nodata"] == "nan"
    assert _item(f32)["assets"]["confidence"] == a["confidence"]


def test_vector_map_is_an_asset(predicted, tmp_path):
    folder = tmp_path / "v"
    shutil.copytree(predicted, folder)
    with pytest.raises(SidecarError, match="map.gpkg: no such vector map"):
        add_vector_asset(folder)
    (folder / "map.gpkg").write_bytes(b"")
    add_vector_asset(folder)
    vector = _item(folder)["assets"]["vector"]
    assert vector == {"href": "./map.gpkg", "type": "application/geopackage+sqlite3",
                      "title": "Land-cover polygons", "roles": ["data"]}
    write_sidecars(folder, TABLE, scene_id="x", bundle=BUNDLE, counts=np.ones(3),
                   probabilities=True, vector="map.gpkg")
    assert _item(folder)["assets"]["vector"] == vector
    (folder / "map.fgb").write_bytes(b"")
    add_vector_asset(folder, "map.fgb")
    assert _item(folder)["assets"]["vector"]["type"] == "application/vnd.flatgeobuf"


# -- where the acquisition time comes from ---------------------------------------------------

def _band(path: Path, **tags: str) -> Path:
    write_band(path, np.ones((4, 4), np.uint16), 10)
    if tags:
        with rasterio.open(path, "r+") as dst:
            dst.update_tags(**tags)
    return path


def test_time_from_file_metadata_then_name_then_tiff_datetime(tmp_path):
    named = _band(tmp_path / "T33UUU_20170216T102101_B02.tif",
                  TIFFTAG_DATETIME="2019:01:01 00:00:00")
    acq = acquisition([ModalitySpec("v", (BandSpec(named, "B02"),))])
    assert acq.properties() == {"datetime": "2017-02-16T10:21:01Z",
                                "geomm:datetime_source": "file-name"}
    tagged = _band(tmp_path / "x.tif", ACQUISITIONDATETIME="2018-05-04 10:11:12",
                   TIFFTAG_DATETIME="2019:01:01 00:00:00")
    plain = _band(tmp_path / "y.tif", TIFFTAG_DATETIME="2019:01:01 00:00:00")
    acq = acquisition([ModalitySpec("v", (BandSpec(tagged, "a"), BandSpec(plain, "b"),
                                          BandSpec(named, "c")))])
    assert acq.properties() == {  # three dates: a range, no single datetime
        "datetime": None, "start_datetime": "2017-02-16T10:21:01Z",
        "end_datetime": "2019-01-01T00:00:00Z",
        "geomm:datetime_source": "file-metadata+file-name"}


def test_time_from_the_stac_items_of_a_composite():
    notes = {"stac_items": "a, b", "start_datetime": "2021-06-03T10:00:00Z",
             "end_datetime": "2021-06-28T10:00:00Z"}
    mod = ModalitySpec("s2", (BandSpec("/nowhere/B02.tif", "B02"),), extra=notes)
    assert acquisition([mod]).properties() == {
        "datetime": None, "start_datetime": "2021-06-03T10:00:00Z",
        "end_datetime": "2021-06-28T10:00:00Z", "geomm:datetime_source": "stac"}
    one = ModalitySpec("s2", mod.bands, extra={**notes, "end_datetime": notes["start_datetime"]})
    assert acquisition([one]).properties()["datetime"] == "2021-06-03T10:00:00Z"


def test_unknown_is_a_range_up_to_now():
    before = datetime.now(UTC).replace(microsecond=0)
    acq = acquisition([ModalitySpec("v", (BandSpec("/nowhere/a.tif", "a"),))])
    assert acq.source == "unknown" and acq.start == datetime(1970, 1, 1, tzinfo=UTC)
    assert before <= acq.end <= datetime.now(UTC)


@pytest.mark.parametrize(("value", "expected"), [
    ("2017-02-16", ("2017-02-16T00:00:00Z", "2017-02-16T23:59:59Z")),  # a day
    ("2017-02-16T10:21:01Z", ("2017-02-16T10:21:01Z",) * 2),
    ("2021-06-01/2021-08-31", ("2021-06-01T00:00:00Z", "2021-08-31T23:59:59Z")),
    ("[2021-06-01T10:00:00+02:00, 2021-06-02]", ("2021-06-01T08:00:00Z",
                                                  "2021-06-02T23:59:59Z")),
])
def test_recipe_acquired_key(tmp_path, value, expected):
    scene = write_scene(tmp_path)
    path = write_recipe(tmp_path)
    path.write_text(path.read_text() + f"acquired: {value}\n")
    recipe = load_recipe(path)
    acq = acquisition([], recipe=recipe)
    assert acq.source == "recipe"
    props = acq.properties()
    got = (props["datetime"],) * 2 if props["datetime"] else (props["start_datetime"],
                                                              props["end_datetime"])
    assert got == expected
    assert scene  # the files exist (the recipe is valid)


@pytest.mark.parametrize(("text", "match"), [
    ("acquired: last tuesday\n", "acquired: 'last tuesday' is not a date or time; write e.g."),
    ("acquired: 2021-08-31/2021-06-01\n", "acquired: '2021-08-31/2021-06-01' ends before it "
                                          "starts"),
    ("scenes:\n  - {id: a, acquired: 17}\n", r"scenes\[0\].acquired: 17 is not a date"),
])
def test_bad_acquired_is_refused_in_one_line(tmp_path, text, match):
    path = write_recipe(tmp_path)
    path.write_text(path.read_text() + text)
    with pytest.raises(RecipeError, match=match) as err:
        load_recipe(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_predict_recipe_dates_each_scene_and_shares_the_run(scene, bundle, tmp_path):
    folder = scene["a"].parent
    recipe = tmp_path / "r.yaml"
    recipe.write_text(write_recipe(tmp_path).read_text().replace("data_root: .",
                                                                 f"data_root: {folder}")
                      + "acquired: 2017-02-16\nscenes:\n"
                        "  - {id: east, acquired: 2018-03-01T09:00:00Z}\n  - {id: west}\n")
    predict_recipe(bundle, load_recipe(recipe), tmp_path / "out", options=_opts())
    east, west = _item(tmp_path / "out" / "east"), _item(tmp_path / "out" / "west")
    assert east["properties"]["datetime"] == "2018-03-01T09:00:00Z"
    assert west["properties"]["start_datetime"] == "2017-02-16T00:00:00Z"
    assert {east["properties"]["geomm:datetime_source"],
            west["properties"]["geomm:datetime_source"]} == {"recipe"}
    run = east["properties"]["geomm:run"]
    assert (east["id"], west["id"]) == (f"east-{run}", f"west-{run}")


def test_predict_scene_takes_a_given_acquisition(scene, bundle, tmp_path):
    when = Acquisition("recipe", datetime(2020, 7, 1, 10, tzinfo=UTC),
                       datetime(2020, 7, 1, 10, tzinfo=UTC))
    predict_scene(bundle, _mods(scene), tmp_path / "m", options=_opts(), acquired=when,
                  run_id="run00001", scene_id="s")
    item = _item(tmp_path / "m")
    assert item["id"] == "s-run00001"
    assert item["properties"]["datetime"] == "2020-07-01T10:00:00Z"


# -- STAC Collection -------------------------------------------------------------------------

def test_collection_links_the_items_with_their_extent(predicted, tmp_path):
    root = tmp_path / "batch"
    for sid, when in (("s1", "2017-02-16T10:21:01Z"), ("s2", None), ("s3", "2018-01-05T09:00:00Z")):
        shutil.copytree(predicted, root / sid)
        item = _item(root / sid)
        item["id"] = sid
        if when is not None:
            item["properties"].update({"datetime": when, "geomm:datetime_source": "file-name"})
            for k in ("start_datetime", "end_datetime"):
                item["properties"].pop(k)
        (root / sid / "item.json").write_text(json.dumps(item))
    before = {p: p.read_bytes() for p in root.glob("*/item.json")}
    path = write_stac_collection(root, description="Three tiles.")
    col = json.loads(path.read_text())
    assert path == root / "collection.json"
    assert (col["type"], col["stac_version"], col["id"]) == ("Collection", "1.1.0", "batch")
    assert col["description"] == "Three tiles." and col["license"] == "other"
    items = [ln for ln in col["links"] if ln["rel"] == "item"]
    assert [(ln["href"], ln["title"]) for ln in items] == [
        ("./s1/item.json", "s1"), ("./s2/item.json", "s2"), ("./s3/item.json", "s3")]
    assert {"rel": "root", "href": "./collection.json", "type": "application/json",
            "title": "batch"} in col["links"]
    assert col["extent"]["spatial"]["bbox"] == [_item(predicted)["bbox"]]
    # the unknown acquisition of s2 is left out of the temporal extent
    assert col["extent"]["temporal"]["interval"] == [["2017-02-16T10:21:01Z",
                                                      "2018-01-05T09:00:00Z"]]
    assert col["summaries"]["geomm:model"] == ["synthetic"]
    assert {p: p.read_bytes() for p in root.glob("*/item.json")} == before  # unchanged

    import pystac

    c = pystac.Collection.from_file(str(path))
    assert len(list(c.get_items())) == 3


def test_collection_of_a_mosaic_and_of_nothing(predicted, tmp_path):
    root = tmp_path / "mosaic"
    shutil.copytree(predicted, root)
    col = json.loads(write_stac_collection(root, collection_id="m").read_text())
    assert [ln["href"] for ln in col["links"] if ln["rel"] == "item"] == ["./item.json"]
    assert col["extent"]["temporal"]["interval"] == [[None, None]]
    with pytest.raises(SidecarError, match="no item.json in it or its sub-folders"):
        write_stac_collection(tmp_path / "empty")


def test_a_stac_composite_notes_its_items_range(tmp_path, monkeypatch):
    import yaml

    from geomm.sources import resolve
    from tests.sources.stacdata import item, item_collection, make_scene, write_tif

    monkeypatch.setenv("GEOMM_CACHE", str(tmp_path / "cache"))
    items = []
    for i, day in enumerate(("2021-06-11", "2021-06-01", "2021-06-21")):
        sc = make_scene(seed=i)
        items.append(item(f"d{i}", f"{day}T10:00:00Z",
                          {"red": write_tif(tmp_path / f"d{i}.tif", sc.red, sc.transform(10))}))
    catalog = item_collection(tmp_path / "items.json", items)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({
        "name": "dated", "tiling": {"size": 48, "halo": 6}, "stac": {"catalog": str(catalog)},
        "modalities": {"optical": {"stac": {"collection": "synthetic-s2",
                                            "assets": {"red": "red"}, "composite": "median"}}}}))
    resolved = resolve(load_recipe(path))
    [mod] = resolved.modalities
    assert (mod.extra["start_datetime"], mod.extra["end_datetime"]) == (
        "2021-06-01T10:00:00Z", "2021-06-21T10:00:00Z")
    [s] = resolved.scene_inputs()
    assert acquisition(s.modalities, recipe=resolved).properties() == {
        "datetime": None, "start_datetime": "2021-06-01T10:00:00Z",
        "end_datetime": "2021-06-21T10:00:00Z", "geomm:datetime_source": "stac"}


@pytest.mark.parametrize("count", [3, 4])
def test_probability_bands_are_not_read_as_a_colour_image(tmp_path, count):
    # 3 or 4 byte bands default to RGB(A) in GeoTIFF: a 4-class map's last probability band
    # would become an alpha channel in a GIS
    from rasterio.transform import from_origin

    from geomm.predict.cogout import RasterLayout, StreamedRaster

    out = StreamedRaster(tmp_path / "p.tif", tmp_path, height=600, width=600, crs="EPSG:32633",
                         transform=from_origin(0, 600, 1, 1),
                         layout=RasterLayout(count, "uint8", None, "average", "ZSTD", 1,
                                             scale=1 / 255))
    out.write(np.full((count, 600, 600), 60, np.uint8), 0, 0)
    out.finish()
    with rasterio.open(tmp_path / "p.tif") as src:
        assert [c.name for c in src.colorinterp] == ["gray"] + ["undefined"] * (count - 1)
        assert src.overviews(1) == [2]


def test_uint8_probabilities_mask_what_was_not_predicted(tmp_path):
    # 0-255 are all probabilities: the pixels not predicted are in a mask band, which the
    # overviews carry too, and they are left out of the overviews' averages
    from rasterio.transform import from_origin

    from geomm.predict.cogout import RasterLayout, StreamedRaster

    h, w = 1100, 1000
    valid = np.ones((h, w), bool)
    valid[:301, :301] = False
    data = np.where(valid, 100, 0).astype(np.uint8)[None].repeat(3, axis=0)
    out = StreamedRaster(tmp_path / "p.tif", tmp_path, height=h, width=w, crs="EPSG:32633",
                         transform=from_origin(0, h, 1, 1), layout=RasterLayout(
                             3, "uint8", None, "average", "ZSTD", 1, scale=1 / 255, mask=True))
    for r0 in range(0, h, 256):
        out.write(data[:, r0:r0 + 256], r0, 0, valid[r0:r0 + 256])
        out.rows_complete(min(h, r0 + 256))
    out.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.tif"]
    with rasterio.open(tmp_path / "p.tif") as src:
        assert src.mask_flag_enums[0] == [rasterio.enums.MaskFlags.per_dataset]
        np.testing.assert_array_equal(src.dataset_mask() > 0, valid)
        shape = (src.height // 4 + 1, src.width // 4 + 1)
        ov, mask = src.read(1, out_shape=shape), src.dataset_mask(out_shape=shape)
        assert (mask == 0).sum() == 75 * 75 and set(np.unique(ov[mask > 0])) == {100}
    with pytest.raises(ValueError, match="valid"):
        StreamedRaster(tmp_path / "q.tif", tmp_path, height=8, width=8, crs="EPSG:32633",
                       transform=from_origin(0, 8, 1, 1), layout=RasterLayout(
                           1, "uint8", None, "average", mask=True)).write(
            np.zeros((1, 8, 8), np.uint8), 0, 0)


def test_class_names_tag_is_one_csv_row_even_with_commas():
    import csv

    names = ["bâti, dense", "eau douce", 'say "hi"', "farm"]
    tags, band_tags, cmap = ClassTable.from_names(names).raster_tags()
    assert next(csv.reader([tags["CLASS_NAMES"]])) == names
    assert json.loads(tags["GEOMM_CLASSES"])["classes"][0]["name"] == "bâti, dense"
    assert band_tags["class_0"] == "bâti, dense" and cmap[255] == (0, 0, 0, 0)
    plain = ClassTable.from_names(["farm", "forest"]).raster_tags()[0]
    assert plain["CLASS_NAMES"] == "farm,forest"  # plain names as before
