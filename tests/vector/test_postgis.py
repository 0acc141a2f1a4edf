"""PostGIS output on a real PostgreSQL + PostGIS (tests/pgserver.py): the map read back
identical, one transaction per write (a SIGKILL half way changes nothing), existing tables
refused, replaced or appended, blocks replacing their own rows, passwords never shown."""

from __future__ import annotations

import hashlib
import logging
import signal
import subprocess
import sys
import time
import traceback
import warnings
from urllib.parse import quote

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from qgislayer import qgis_layer
from test_vectorize import NAMES, TRANSFORM, blobs, canonical, read_polys, write_classes

from geomm.cli import main
from geomm.vector.pgload import blocks_in, load_file, load_missing
from geomm.vector.postgis import PgTarget, mask
from geomm.vector.styles import STYLE_NAME
from geomm.vector.vectorize import VectorizeError, vectorize
from tests.pgserver import PASSWORD

SECRETS = (PASSWORD, "s3cr%25t%20pw%40Zq9", "Zq9")
"""The password, percent-quoted as in the URLs, and a piece of it: none may ever show."""
COLS = "class_id, class_name, area_m2, ST_AsBinary(geom), ST_SRID(geom)"


@pytest.fixture(scope="module")
def tif(tmp_path_factory):
    return write_classes(tmp_path_factory.mktemp("pg") / "c.tif", blobs(5, (60, 50)))


def rows(db, table: str, where: str = "") -> list[tuple]:
    with db.connect() as conn:
        return conn.execute(f"SELECT {COLS} FROM {table} {where} ORDER BY fid").fetchall()


def digest(db, table: str) -> str | None:
    """A checksum of the whole table (None when it does not exist)."""
    with db.connect() as conn:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
            return None
        got = conn.execute(f"SELECT {COLS} FROM {table} ORDER BY fid").fetchall()
    return hashlib.sha256(repr(got).encode()).hexdigest()


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for s in SECRETS:
            assert s not in text, f"password shown: {text[:300]}"


def test_the_map_reads_back_identical_with_srid_index_and_style(postgis, tif, tmp_path):
    ref = read_polys(vectorize(tif, tmp_path / "map.gpkg", window=16).path)
    summary = vectorize(tif, postgis.dsn(), layer="landcover", window=16)
    assert str(summary.path).endswith("/geomm table public.landcover")
    assert summary.n_polygons == len(ref) == 137
    got = rows(postgis, "landcover")
    assert {r[4] for r in got} == {32633}
    geoms = shapely.from_wkb([r[3] for r in got])
    # the same polygons, vertex for vertex, and the same attributes
    assert all(shapely.equals_exact(canonical(geoms), canonical(ref.geometry), tolerance=0))
    assert sorted((r[0], r[1], r[2], bytes(r[3])) for r in got) == sorted(
        zip(ref.class_id, ref.class_name, ref.area_m2, shapely.to_wkb(ref.geometry),
            strict=True))
    with postgis.connect() as conn:
        assert conn.execute("SELECT type, srid FROM geometry_columns WHERE f_table_name = "
                            "'landcover'").fetchone() == ("POLYGON", 32633)
        idx = dict(conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE "
                                "tablename = 'landcover'").fetchall())
        assert "USING gist (geom)" in idx["landcover_geom_idx"] and "landcover_pkey" in idx
        style = conn.execute("SELECT f_table_catalog, f_table_schema, f_geometry_column, "
                             "stylename, useasdefault, styleqml::text, stylesld::text FROM "
                             "public.layer_styles WHERE f_table_name = 'landcover'").fetchall()
    gpkg_style = pyogrio.read_dataframe(tmp_path / "map.gpkg", layer="layer_styles").iloc[0]
    assert len(style) == 1 and style[0][:5] == ("geomm", "public", "geom", STYLE_NAME, True)
    assert style[0][5] == gpkg_style["styleQML"]  # the same style as in the GeoPackage
    seen = qgis_layer(f"{postgis.keywords()} sslmode=disable table=\"public\".\"landcover\" "
                      "(geom)", "postgres", tmp_path)
    assert seen["valid"] and seen["count"] == 137 and seen["renderer"] == "categorizedSymbol"
    assert [c[1] for c in seen["categories"]] == NAMES


def test_existing_table_is_refused_replaced_or_appended(postgis, tif):
    dsn = postgis.dsn()
    vectorize(tif, dsn, layer="modes")
    first = rows(postgis, "modes")
    with pytest.raises(VectorizeError) as info:
        vectorize(tif, dsn, layer="modes")
    msg = str(info.value)
    assert "already exists" in msg and "--overwrite" in msg and "--append" in msg
    assert "public.modes" in msg and "\n" not in msg
    assert rows(postgis, "modes") == first
    vectorize(tif, dsn, layer="public.modes", overwrite=True)
    assert rows(postgis, "modes") == first  # replaced by the same map
    vectorize(tif, dsn, layer="modes", append=True)
    assert len(rows(postgis, "modes")) == 2 * len(first)
    with postgis.connect() as conn:
        names = {r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE relname "
                                            "LIKE 'modes%'")}
        n_styles = conn.execute("SELECT count(*) FROM public.layer_styles WHERE "
                                "f_table_name = 'modes'").fetchone()[0]
    assert names == {"modes", "modes_pkey", "modes_geom_idx", "modes_fid_seq"}
    assert n_styles == 1


def test_schema_by_name_or_pg_string_and_another_crs_appended(postgis, tmp_path):
    with postgis.connect() as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS landuse")
    classes = np.zeros((20, 20), np.uint8)
    classes[:, 10:] = 1
    tif = write_classes(tmp_path / "a.tif", classes)
    vectorize(tif, "PG:" + postgis.keywords() + " active_schema=landuse", layer="lc")
    other = write_classes(tmp_path / "b.tif", classes, crs="EPSG:32632",
                          transform=TRANSFORM * TRANSFORM.translation(-40000, 0))
    vectorize(other, postgis.dsn(), layer="landuse.lc", append=True)
    got = rows(postgis, "landuse.lc")
    assert len(got) == 4 and {r[4] for r in got} == {32633}  # transformed into the table's
    assert [r[2] for r in got] == [20000.0] * 4
    with pytest.raises(VectorizeError, match="schema 'nowhere' does not exist"):
        vectorize(tif, postgis.dsn(), layer="nowhere.lc")


@pytest.mark.parametrize("mode", ["create", "overwrite", "append"])
def test_a_failure_half_way_leaves_the_table_as_it_was(postgis, tmp_path, monkeypatch, mode):
    from geomm.vector import vectorize as vmod

    tif = write_classes(tmp_path / "c.tif", blobs(2, (64, 64)))
    table = f"failed_{mode}"
    if mode != "create":
        vectorize(tif, postgis.dsn(), layer=table)
    before = digest(postgis, table)
    monkeypatch.setattr(vmod, "_CHUNK", 5)  # some chunks are copied before the failure
    real, calls = vmod._read, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 6:
            raise rasterio.errors.RasterioIOError("disk on fire")
        return real(*args)

    monkeypatch.setattr(vmod, "_read", failing)
    with pytest.raises(VectorizeError, match="disk on fire") as info:
        vectorize(tif, postgis.dsn(), layer=table, window=16, overwrite=mode == "overwrite",
                  append=mode == "append")
    assert str(tif) in str(info.value) and len(calls) == 6
    assert digest(postgis, table) == before


def test_a_crs_without_epsg_code_gets_its_own_srid(postgis, tmp_path):
    classes = np.zeros((10, 10), np.uint8)
    crs = "+proj=tmerc +lat_0=0 +lon_0=13.1 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80 +units=m"
    tif = write_classes(tmp_path / "c.tif", classes, crs=crs)
    vectorize(tif, postgis.dsn(), layer="custom")
    srid = {r[4] for r in rows(postgis, "custom")}
    with postgis.connect() as conn:
        auth = conn.execute("SELECT auth_name FROM spatial_ref_sys WHERE srid = %s",
                            (min(srid),)).fetchone()
    assert len(srid) == 1 and min(srid) >= 940000 and auth == ("geomm",)


_KILLED = """
import sys, time
from pathlib import Path
from urllib.parse import quote
import geomm.vector.vectorize as v
from geomm.cli import main

progress = Path(sys.argv[1])
v._CHUNK = 40
real = v._run


def slow(*args, **kw):  # hand over a chunk, then wait: the test kills the write meanwhile
    for i, chunk in enumerate(real(*args, **kw), 1):
        yield chunk
        progress.write_text(str(i))
        time.sleep(0.1)


v._run = slow
main(sys.argv[2:])
"""


@pytest.mark.parametrize("mode", ["create", "overwrite", "append"])
def test_a_write_killed_half_way_leaves_the_table_as_it_was(postgis, tmp_path, mode):
    big = write_classes(tmp_path / "big.tif", blobs(3, (200, 200)))
    table = f"killed_{mode}"
    if mode != "create":
        vectorize(big, postgis.dsn(), layer=table, window=64)
    before = digest(postgis, table)
    progress = tmp_path / "progress"
    flag = {"create": [], "overwrite": ["--overwrite"], "append": ["--append"]}[mode]
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(progress), "vectorize",
                             str(big), "-o", postgis.dsn(), "--table", table, "--window", "16",
                             *flag],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    with postgis.connect(autocommit=True) as conn:
        def copied() -> int:  # rows the server has received from the COPY so far
            return conn.execute("SELECT COALESCE(MAX(tuples_processed), 0) FROM "
                                "pg_stat_progress_copy").fetchone()[0]

        while not (progress.exists() and int(progress.read_text() or 0) >= 5
                   and copied() > 0):
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() - t0 < 60
            time.sleep(0.02)
        assert copied() < 1800  # half way: rows sent, the write not finished
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for _ in range(200):  # the server sees the dead client and rolls back
            if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            "'geomm'").fetchone()[0] == 0:
                break
            time.sleep(0.05)
        leftovers = conn.execute("SELECT relname FROM pg_class WHERE relname LIKE %s",
                                 (f"{table}_geomm_%",)).fetchall()
    assert digest(postgis, table) == before and leftovers == []
    vectorize(big, postgis.dsn(), layer=table, overwrite=mode != "create", window=64)
    assert digest(postgis, table) is not None  # and no lock is left behind


def test_a_block_replaces_its_own_rows(postgis, tif, tmp_path):
    target = PgTarget.parse(postgis.dsn(), "blocks")
    maps = {"a.gpkg": None, "b.parquet": None, "c.fgb": None}
    for name in maps:
        vectorize(tif, tmp_path / name, window=16)
    for name in maps:
        load_file(target, tmp_path / name, name[0])
    load_file(target, tmp_path / "a.gpkg", "a")  # again: replaces, no duplicate
    assert blocks_in(target) == {"a", "b", "c"}
    with postgis.connect() as conn:
        counts = dict(conn.execute("SELECT block_id, count(*) FROM blocks GROUP BY block_id"))
        dupes = conn.execute("SELECT count(*) - count(DISTINCT (block_id, ST_AsBinary(geom))) "
                             "FROM blocks").fetchone()[0]
        styled = conn.execute("SELECT count(*) FROM public.layer_styles WHERE f_table_name = "
                              "'blocks'").fetchone()[0]
    assert counts == {"a": 137, "b": 137, "c": 137} and dupes == 0 and styled == 1
    with postgis.connect() as conn:
        conn.execute("DELETE FROM blocks WHERE block_id = 'b'")
    assert load_missing(target, {k[0]: tmp_path / k for k in maps}) == ["b"]
    assert blocks_in(target) == {"a", "b", "c"}


def test_passwords_are_never_shown(postgis, tif, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    texts = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for out in (postgis.dsn(password="wrong " + PASSWORD), "PG:" + postgis.keywords(
                password="wrong " + PASSWORD), postgis.dsn(dbname="nodb"),
                "PG:" + postgis.keywords() + " nonsense"):
            with pytest.raises(VectorizeError) as info:
                vectorize(tif, out, layer="pw")
            texts += [str(info.value), repr(info.value),
                      "".join(traceback.format_exception(info.value))]
        assert "password authentication failed" in texts[0] and "***" in texts[0]
        ok = CliRunner().invoke(main, ["vectorize", str(tif), "-o", postgis.dsn(),
                                       "--table", "pw"])
        again = CliRunner().invoke(main, ["vectorize", str(tif), "-o", postgis.dsn(),
                                          "--table", "pw"])
        debug = CliRunner().invoke(main, ["--debug", "vectorize", str(tif), "-o",
                                          postgis.dsn(), "--table", "pw"])
    assert ok.exit_code == 0 and again.exit_code == 1 and debug.exit_code != 0, ok.output
    assert "postgres:***@127.0.0.1" in ok.output and "already exists" in again.stderr
    target = PgTarget.parse(postgis.dsn(), "pw")
    texts += [ok.output, again.output, again.stderr, repr(target), str(target), f"{target!r}",
              "".join(traceback.format_exception(debug.exception)), caplog.text,
              " ".join(str(w.message) for w in caught),
              mask(f"x postgresql://u:{quote(PASSWORD, safe='')}@h/db y password='{PASSWORD}'")]
    assert_no_secret(*texts)
    assert mask("postgresql://u:p@h/db?password=q&sslmode=disable") == \
        "postgresql://u:***@h/db?password=***&sslmode=disable"


def test_without_psycopg_the_error_names_the_extra(tif, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    with pytest.raises(VectorizeError) as info:
        vectorize(tif, f"postgresql://u:{PASSWORD}@localhost/db")
    assert "pip install 'geomm[postgis]'" in str(info.value)
    assert_no_secret(str(info.value))


def test_an_unreachable_server_or_a_malformed_url_is_one_line(tif):
    t0 = time.monotonic()
    with pytest.raises(VectorizeError) as info:
        vectorize(tif, f"postgresql://me:{quote(PASSWORD, safe='')}@127.0.0.1:1/db")
    assert time.monotonic() - t0 < 20 and "cannot connect" in str(info.value)
    assert "\n" not in str(info.value) and "me:***@127.0.0.1:1/db" in str(info.value)
    with pytest.raises(VectorizeError) as bad:  # the password not percent-quoted
        vectorize(tif, f"postgresql://me:{PASSWORD}@127.0.0.1:1/db")
    assert "not a PostgreSQL connection string" in str(bad.value)
    assert "me:***@127.0.0.1:1/db" in str(bad.value)
    assert_no_secret(str(info.value), str(bad.value))
