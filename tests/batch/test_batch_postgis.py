"""geomm batch into one PostGIS table (a real PostgreSQL + PostGIS, tests/pgserver.py): every
scene's polygons land once, also when a run is SIGKILLed half way and resumed, when a block is
recomputed or when its rows went missing; a grid job's mosaic lands as one block; the table of
a new job is refused unless appended to; no password in the manifest."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyogrio
import pytest
from batchcase import OPTS

from geomm.batch.jobs import grid_job, scenes_job
from geomm.batch.runner import MANIFEST, BatchError, BatchOptions, run_batch
from geomm.recipe import load_recipe
from geomm.vector.vectorize import VectorizeError
from tests.conftest import require_or_skip
from tests.pgserver import PASSWORD, missing_postgis, start_postgis

SCENES = ("north", "south", "east")


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    reason = missing_postgis()
    if reason:
        require_or_skip(reason)
    server = start_postgis(tmp_path_factory.mktemp("batch-pg"))
    try:
        yield server
    finally:
        server.stop()


def _scenes(job, root: Path) -> Path:
    src = job["root"] / "scene"
    lines = ["scenes:"]
    for sid in SCENES:
        (root / sid).mkdir(parents=True, exist_ok=True)
        for n in ("A.tif", "B.tif", "VV.tif"):
            shutil.copy(src / n, root / sid / n)
        lines += [f"  - id: {sid}", "    modalities:",
                  f"      optical: [{sid}/A.tif, {sid}/B.tif]", f"      radar: {sid}/VV.tif"]
    (root / "scenes.yaml").write_text("\n".join(lines) + "\n")
    return root / "scenes.yaml"


def _table(pg, table: str) -> tuple[dict[str, int], int]:
    """Rows per block, and rows that repeat another row of their block."""
    with pg.connect() as conn:
        counts = dict(conn.execute(f"SELECT block_id, count(*) FROM {table} GROUP BY 1"))
        dupes = conn.execute(f"SELECT count(*) - count(DISTINCT (block_id, class_id, "
                             f"ST_AsBinary(geom))) FROM {table}").fetchone()[0]
    return counts, dupes


def _features(out: Path, blocks=SCENES) -> dict[str, int]:
    return {b: pyogrio.read_info(out / b / "map.gpkg", layer="classes")["features"]
            for b in blocks}


_KILLED = """
import sys
from geomm.batch.jobs import scenes_job
from geomm.batch.runner import BatchOptions, run_batch
from geomm.predict.scene import PredictOptions
from geomm.recipe import load_recipe

recipe, scenes, bundle, out, dsn = sys.argv[1:]
run_batch(scenes_job(load_recipe(recipe), scenes), bundle, out,
          predict=PredictOptions(tile_size=96, halo=16, threads=1, device="cpu"),
          options=BatchOptions(in_process=True, progress=False, vector_out=dsn,
                               vector_table="scenes"))
"""


def test_scene_blocks_land_once_in_one_table_when_killed_and_resumed(job, pg, tmp_path):
    scenes, out = _scenes(job, tmp_path / "in"), tmp_path / "out"
    args = [str(job["recipe"]), str(scenes), str(job["bundle"]), str(out), pg.dsn()]
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    t0 = time.monotonic()
    with pg.connect(autocommit=True) as conn:
        while conn.execute("SELECT to_regclass('scenes')").fetchone()[0] is None or \
                conn.execute("SELECT count(DISTINCT block_id) FROM scenes").fetchone()[0] < 1:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() - t0 < 120
            time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # a block's rows are in, the job is not finished
    proc.wait()
    landed, dupes = _table(pg, "scenes")
    assert 1 <= len(landed) < 3 and dupes == 0

    options = BatchOptions(in_process=True, progress=False, vector_out=pg.dsn(),
                           vector_table="public.scenes")

    def run():
        return run_batch(scenes_job(load_recipe(job["recipe"]), scenes), job["bundle"], out,
                         predict=OPTS, options=options, echo=lambda s: None)

    res = run()  # resumed: the same table, no refusal
    assert res.ok and set(res.computed) | set(res.reused) == set(SCENES)
    assert _table(pg, "scenes") == (_features(out), 0)
    # a block whose rows were written but whose folder was never renamed in: recomputed,
    # its rows replaced
    shutil.rmtree(out / "south")
    assert run().computed == ["south"] and _table(pg, "scenes") == (_features(out), 0)
    # a block done but missing from the table: copied in from its map, nothing recomputed
    with pg.connect() as conn:
        conn.execute("DELETE FROM scenes WHERE block_id = 'east'")
    assert run().computed == [] and _table(pg, "scenes") == (_features(out), 0)
    doc = (out / MANIFEST).read_text()
    assert json.loads(doc)["vector_table"].endswith("postgres:***@127.0.0.1:"
                                                    f"{pg.port}/geomm table public.scenes")
    assert PASSWORD not in doc and "Zq9" not in doc
    # a new job is refused the table (one line), unless it appends
    with pytest.raises(VectorizeError) as info:
        run_batch(scenes_job(load_recipe(job["recipe"]), scenes), job["bundle"],
                  tmp_path / "other", predict=OPTS, options=options, echo=lambda s: None)
    assert "already exists" in str(info.value) and "--append" in str(info.value)
    assert "Zq9" not in str(info.value) and not (tmp_path / "other").exists()


def test_a_grid_job_lands_its_mosaic_once(job, pg, tmp_path):
    out = tmp_path / "grid"
    options = BatchOptions(in_process=True, progress=False, vector_out=pg.dsn(),
                           vector_table="grid")

    def run():
        return run_batch(grid_job(load_recipe(job["recipe"]), 192), job["bundle"], out,
                         predict=OPTS, options=options, echo=lambda s: None)

    assert run().ok
    n = pyogrio.read_info(out / "map.gpkg", layer="classes")["features"]
    assert _table(pg, "grid") == ({"mosaic": n}, 0)
    assert run().computed == [] and _table(pg, "grid") == ({"mosaic": n}, 0)
    with pg.connect() as conn:
        conn.execute("DELETE FROM grid")
        styled = conn.execute("SELECT count(*) FROM public.layer_styles WHERE f_table_name = "
                              "'grid'").fetchone()[0]
    assert styled == 1  # the map.gpkg's QGIS style came along
    assert run().computed == [] and _table(pg, "grid") == ({"mosaic": n}, 0)


def test_vector_out_file_names_and_bad_ones(job, tmp_path):
    scenes = _scenes(job, tmp_path / "in")
    res = run_batch(scenes_job(load_recipe(job["recipe"]), scenes), job["bundle"],
                    tmp_path / "fgb", predict=OPTS, echo=lambda s: None,
                    options=BatchOptions(in_process=True, progress=False,
                                         vector_out="map.fgb"))
    assert res.ok and all((tmp_path / "fgb" / s / "map.fgb").is_file() for s in SCENES)
    assert not any((tmp_path / "fgb" / s / "map.gpkg").exists() for s in SCENES)
    for bad in ("sub/map.gpkg", "map.shp", "map.xyz", "classes.fgb"):  # its .qml: the map's
        with pytest.raises((BatchError, VectorizeError)) as info:
            run_batch(scenes_job(load_recipe(job["recipe"]), scenes), job["bundle"],
                      tmp_path / "bad", predict=OPTS, echo=lambda s: None,
                      options=BatchOptions(in_process=True, vector_out=bad))
        assert bad in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "bad").exists()
