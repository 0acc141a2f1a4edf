"""The files geomm writes beside a vector file (its QGIS style ``<name>.qml``, a shapefile's
parts, a driver's own side files) never replace a user's file without ``overwrite``: an
existing one is refused before anything is written, with one line naming it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_vectorize import blobs, read_polys, write_classes

from geomm.cli import main
from geomm.vector import vectorize as vmod
from geomm.vector.vectorize import VectorizeError, vectorize

MINE = b"<qgis><!-- my hand-made style --></qgis>\n"


@pytest.fixture
def tif(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny class raster in its own folder (so ``tmp_path`` holds only the outputs)."""
    return write_classes(tmp_path_factory.mktemp("raster") / "classes.tif", blobs(3, (24, 20)))


def _files(folder: Path) -> dict[str, bytes]:
    """Every file in ``folder`` (hidden ones too) and its bytes; a folder as ``b"<dir>"``."""
    return {p.name: b"<dir>" if p.is_dir() else p.read_bytes() for p in folder.iterdir()}


def _refused(call, *words: str) -> str:
    with pytest.raises(VectorizeError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    return msg


@pytest.mark.parametrize("name,driver", [("map.geojson", None), ("map.json", None),
                                         ("map.fgb", None), ("map.shp", None),
                                         ("map.parquet", None), ("map.seq", "FlatGeobuf"),
                                         ("map.data", "GeoParquet")])
def test_an_existing_style_beside_the_output_is_refused_up_front_and_kept(
        tif, tmp_path, monkeypatch, name, driver):
    out = tmp_path / name
    qml = out.with_suffix(".qml")
    qml.write_bytes(MINE)
    before = _files(out.parent)
    real_open = vmod._open

    def no_read(path):
        raise AssertionError("the raster was read before the refusal")

    monkeypatch.setattr(vmod, "_open", no_read)  # refused before any work, not after it
    _refused(lambda: vectorize(tif, out, driver=driver), str(qml), "--overwrite")
    assert _files(out.parent) == before  # the style kept, no output, no partial file
    monkeypatch.setattr(vmod, "_open", real_open)
    # --overwrite replaces it with geomm's style
    vectorize(tif, out, driver=driver, overwrite=True)
    assert out.exists() and 'attr="class_id"' in qml.read_text()
    assert not [p for p in out.parent.iterdir() if "partial" in p.name]


def test_cli_refuses_the_style_in_one_line_and_overwrite_replaces_it(tif, tmp_path):
    out, qml = tmp_path / "map.geojson", tmp_path / "map.qml"
    qml.write_bytes(MINE)
    res = CliRunner().invoke(main, ["vectorize", str(tif), "-o", str(out)])
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert str(qml) in res.stderr and "--overwrite" in res.stderr
    assert qml.read_bytes() == MINE and not out.exists()
    res = CliRunner().invoke(main, ["vectorize", str(tif), "-o", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert qml.read_bytes() != MINE and len(read_polys(out)) > 0


def test_a_geopackage_keeps_its_style_inside_and_leaves_a_qml_beside_it_alone(tif, tmp_path):
    qml = tmp_path / "map.qml"
    qml.write_bytes(MINE)
    for overwrite in (False, True):
        out = vectorize(tif, tmp_path / "map.gpkg", overwrite=overwrite).path
        assert qml.read_bytes() == MINE
        with sqlite3.connect(out) as db:
            assert db.execute("SELECT count(*) FROM layer_styles").fetchone()[0] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.gpkg", "map.qml"]


@pytest.mark.parametrize("part", ["map.dbf", "map.prj", "map.shp.xml", "map.qix"])
def test_a_shapefile_part_of_the_users_is_neither_replaced_nor_removed(tif, tmp_path, part):
    """A ``.dbf`` table (or an orphan ``.shp.xml``, ``.qix``) without ``map.shp``: writing the
    shapefile would replace it or remove it as a stale part of an older map."""
    (tmp_path / part).write_bytes(b"the user's own")
    before = _files(tmp_path)
    _refused(lambda: vectorize(tif, tmp_path / "map.shp"), str(tmp_path / part),
             "--overwrite")
    assert _files(tmp_path) == before
    vectorize(tif, tmp_path / "map.shp", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "map.cpg", "map.dbf", "map.prj", "map.qml", "map.shp", "map.shx"]


def test_a_driver_side_file_that_exists_is_refused_before_any_rename(tif, tmp_path):
    """MapInfo's ``.dat``/``.id``/``.map`` are known only once the driver made them: checked
    before the first rename, and nothing of the write is left."""
    (tmp_path / "m.dat").write_bytes(b"the user's own table")
    before = _files(tmp_path)
    _refused(lambda: vectorize(tif, tmp_path / "m.tab", driver="MapInfo File"),
             str(tmp_path / "m.dat"), "--overwrite")
    assert _files(tmp_path) == before
    vectorize(tif, tmp_path / "m.tab", driver="MapInfo File", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.dat", "m.id", "m.map", "m.qml",
                                                          "m.tab"]


def test_a_folder_where_a_side_file_goes_is_refused_even_with_overwrite(tif, tmp_path):
    """Else the rename over it fails half way through a shapefile's parts."""
    (tmp_path / "map.qml").mkdir()
    for overwrite in (False, True):
        _refused(lambda overwrite=overwrite: vectorize(tif, tmp_path / "map.shp",
                                                       overwrite=overwrite),
                 str(tmp_path / "map.qml"), "folder")
        assert _files(tmp_path) == {"map.qml": b"<dir>"}


def test_an_output_named_like_its_style_is_refused(tif, tmp_path):
    """``x.qml`` (GeoJSON by ``--driver``) would get the style written over the polygons."""
    _refused(lambda: vectorize(tif, tmp_path / "x.qml", driver="GeoJSON"), "x.qml", "suffix")
    assert list(tmp_path.iterdir()) == []


def test_an_output_without_suffix_takes_no_file_of_the_users_for_its_own(tif, tmp_path):
    """The side files of ``mapfile`` are found by the stem of its temporary name: that stem is
    its own, not ``.mapfile`` (which is also the user's ``.mapfile.txt``)."""
    (tmp_path / ".mapfile.txt").write_bytes(b"the user's own")
    out = tmp_path / "mapfile"
    vectorize(tif, out, driver="GeoJSON")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mapfile.txt", "mapfile",
                                                          "mapfile.qml"]
    assert (tmp_path / ".mapfile.txt").read_bytes() == b"the user's own"
    assert len(read_polys(out)) > 0 and 'attr="class_id"' in (tmp_path / "mapfile.qml").read_text()


def test_a_failed_overwrite_leaves_the_old_style_as_it_was(tif, tmp_path, monkeypatch):
    out, qml = tmp_path / "map.fgb", tmp_path / "map.qml"
    vectorize(tif, out)
    before = _files(tmp_path)

    def failing(*args):
        raise OSError("disk on fire")

    monkeypatch.setattr(vmod, "_read", failing)
    with pytest.raises(OSError, match="disk on fire"):
        vectorize(tif, out, overwrite=True)
    assert _files(tmp_path) == before and qml.exists()



def test_the_class_raster_itself_is_never_the_output(tif):
    before = tif.read_bytes()
    _refused(lambda: vectorize(tif, tif, driver="GPKG", overwrite=True), "classes.tif",
             "is the class raster being vectorised")
    assert tif.read_bytes() == before


def test_a_geopackage_of_another_name_is_said_once_in_geomms_words(tif, tmp_path):
    result = CliRunner().invoke(main, ["vectorize", str(tif), "-o", str(tmp_path / "p.data"),
                                       "--driver", "GPKG"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"geomm: warning: {tmp_path / 'p.data'}: a GeoPackage is named .gpkg by its "
        "specification (QGIS and GDAL open it by content all the same)"]
