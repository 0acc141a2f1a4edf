"""geomm batch: blocks on a real Dask cluster (LocalCluster, TCP on loopback) equal a
single-process run; worker and client kills; a corrupt input; resume and invalidation."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest
import rasterio
from batchcase import (
    OPTS,
    RASTERS,
    SH,
    SW,
    TILING,
    blocks_done,
    cli,
    grid_args,
    read,
    same,
    wait_for,
)
from synthetic import cnn_bundle

from geomm.batch._blockrun import read_record
from geomm.batch.jobs import BatchJobError, grid_job, scenes_job
from geomm.batch.runner import MANIFEST, BatchError, BatchOptions, run_batch
from geomm.errors import GeommWarning
from geomm.predict.scene import predict_scene
from geomm.recipe import load_recipe


def test_single_process_mosaic_is_a_complete_map_close_to_one_predict(job, single):
    whole = predict_scene(job["bundle"], load_recipe(job["recipe"]).scene_inputs()[0].modalities,
                          job["root"] / "whole", options=OPTS)
    assert whole.shape == (SH, SW)
    mos, one = read(single), read(job["root"] / "whole")
    assert (mos["classes.tif"] != 255).all()
    # block edges are like tile seams: the model sees `halo` px of context across them
    assert (mos["classes.tif"] == one["classes.tif"]).mean() >= 0.995
    with rasterio.open(single / "classes.tif") as src:
        assert src.colormap(1) and "GEOMM_CLASSES" in src.tags()
        assert src.transform == rasterio.open(job["root"] / "whole" / "classes.tif").transform
    for n in ("classes.qml", "item.json", "quicklook.png", "map.gpkg"):
        assert (single / n).stat().st_size > 0
    doc = json.loads((single / MANIFEST).read_text())
    assert {b["status"] for b in doc["blocks"].values()} == {"done"} and len(doc["blocks"]) == 12


def test_local_cluster_of_two_processes_equals_the_single_process_run(job, single, tmp_path):
    out = tmp_path / "cluster"
    proc = cli(*grid_args(job, out, "--workers", "2"))
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log
    # worker processes talking TCP on the loopback interface
    assert "local Dask cluster of 2 worker(s) x 1 thread(s) at tcp://127.0.0.1:" in log
    assert "dashboard http" in log
    same(read(out), read(single))
    workers = {b["worker"] for b in json.loads((out / MANIFEST).read_text())["blocks"].values()}
    assert len(workers) == 2  # both processes took blocks


def test_a_killed_worker_does_not_change_the_outputs(job, single, tmp_path):
    out = tmp_path / "kill-worker"
    proc = cli(*grid_args(job, out, "--workers", "2"))
    wait_for(lambda: blocks_done(out) >= 2, proc)
    workers = [c for c in psutil.Process(proc.pid).children(recursive=True)
               if "spawn_main" in " ".join(c.cmdline())]
    assert len(workers) == 2
    done_at_kill = blocks_done(out)
    os.kill(workers[0].pid, signal.SIGKILL)
    log, _ = proc.communicate(timeout=300)
    assert done_at_kill < 12 and proc.returncode == 0, log
    same(read(out), read(single))


def test_a_killed_client_resumes_without_recomputing_finished_blocks(job, single, tmp_path):
    out = tmp_path / "kill-client"
    proc = cli(*grid_args(job, out, "--workers", "2"))
    wait_for(lambda: blocks_done(out) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)
    # nothing under a final name that is not finished: no mosaic yet, every block complete
    assert not any((out / n).exists() for n in (*RASTERS, "map.gpkg"))
    finished = {p.name: (p / "classes.tif").stat().st_ino for p in (out / "blocks").iterdir()}
    assert all(read_record(out / "blocks" / b) is not None for b in finished)
    assert 3 <= len(finished) < 12
    rerun = cli(*grid_args(job, out, "--workers", "2"))
    log, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log
    assert f"{len(finished)} already done" in log
    doc = json.loads((out / MANIFEST).read_text())
    for b, ino in finished.items():  # the very same files, recorded as made by the first run
        assert (out / "blocks" / b / "classes.tif").stat().st_ino == ino
        assert doc["blocks"][b]["run"] == 1
    assert sum(b["run"] == 2 for b in doc["blocks"].values()) == 12 - len(finished)
    same(read(out), read(single))
    assert not (out / ".partial").exists() or not any((out / ".partial").iterdir())


def _scenes(job, root: Path, corrupt: str | None = None) -> Path:
    src = job["root"] / "scene"
    lines = ["scenes:"]
    for sid in ("north", "south", "east"):
        d = root / sid
        d.mkdir(parents=True, exist_ok=True)
        for n in ("A.tif", "B.tif", "VV.tif"):
            shutil.copy(src / n, d / n)
        lines += [f"  - id: {sid}", "    modalities:",
                  f"      optical: [{sid}/A.tif, {sid}/B.tif]", f"      radar: {sid}/VV.tif"]
    if corrupt:
        data = (root / corrupt / "B.tif").read_bytes()
        (root / corrupt / "B.tif").write_bytes(data[:200] + b"\0garbage" * 64)
    (root / "scenes.yaml").write_text("\n".join(lines) + "\n")
    return root / "scenes.yaml"


def test_one_corrupt_scene_fails_alone_and_is_named(job, tmp_path):
    scenes = _scenes(job, tmp_path / "in", corrupt="south")
    out = tmp_path / "scenes-out"
    proc = cli("batch", str(job["recipe"]), "--bundle", str(job["bundle"]), "--scenes",
                str(scenes), "-o", str(out), "--workers", "2", "--retries", "1", *TILING)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, log
    bad = str(tmp_path / "in" / "south" / "B.tif")
    assert "FAILED south" in log and bad in log and "1 of 3 blocks failed" in log
    # one line of geomm's per failed block: no worker traceback, no exception repr
    assert "Compute Failed" not in log and "Traceback" not in log, log
    assert re.search(r"FAILED south: [A-Za-z]+Error: [^(']", log), log
    doc = json.loads((out / MANIFEST).read_text())
    assert doc["blocks"]["south"]["status"] == "failed" and bad in doc["blocks"]["south"]["error"]
    assert not (out / "south").exists()
    mods = load_recipe(job["recipe"]).scene_inputs()[0].modalities
    ref = predict_scene(job["bundle"], mods, tmp_path / "ref", options=OPTS)
    for sid in ("north", "east"):
        assert doc["blocks"][sid]["status"] == "done"
        same(read(out / sid), read(ref.out_dir))
        assert (out / sid / "map.gpkg").exists() and (out / sid / "item.json").exists()


def test_changed_input_or_bundle_recomputes_only_what_it_affects(job, tmp_path):
    scenes = _scenes(job, tmp_path / "in")
    rec, out = load_recipe(job["recipe"]), tmp_path / "out"
    opts = BatchOptions(in_process=True, progress=False, vector=False)

    def run(bundle=job["bundle"]):
        return run_batch(scenes_job(rec, scenes), bundle, out, predict=OPTS, options=opts,
                         echo=lambda s: None)

    assert sorted(run().computed) == ["east", "north", "south"]
    again = run()
    assert again.computed == [] and sorted(again.reused) == ["east", "north", "south"]
    a = tmp_path / "in" / "east" / "A.tif"
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))
    assert run().computed == ["east"]
    other = cnn_bundle(tmp_path / "other", seed=3)
    assert sorted(run(other).computed) == ["east", "north", "south"]


def test_grid_file_in_another_crs_and_bad_inputs(job, tmp_path):
    import geopandas as gpd
    from shapely.geometry import box
    from synthetic import X0, Y0

    g = gpd.GeoDataFrame({"id": ["west", "east"]},
                         geometry=[box(X0, Y0 - SH * 10, X0 + 1920, Y0),
                                   box(X0 + 1920, Y0 - SH * 10, X0 + SW * 10, Y0)],
                         crs="EPSG:32633").to_crs("EPSG:4326")
    g.to_file(tmp_path / "grid.gpkg")
    j = grid_job(load_recipe(job["recipe"]), tmp_path / "grid.gpkg")
    assert [b.id for b in j.blocks] == ["west", "east"]
    assert [(b.region.col, b.region.width) for b in j.blocks] == [(0, 192), (192, 192)]
    assert all(b.region.row == 0 and b.region.height == SH for b in j.blocks)
    gpd.GeoDataFrame({"id": ["west", "east", "away"]},  # far from the scene: named, no block
                     geometry=[*g.geometry, box(0, 0, 1, 1)], crs=g.crs).to_file(
        tmp_path / "grid3.gpkg")
    with pytest.warns(GeommWarning, match=r"grid3.gpkg: 1 of its polygons lie outside the "
                                          r"scene and get no block \(away\)"):
        j3 = grid_job(load_recipe(job["recipe"]), tmp_path / "grid3.gpkg")
    assert [b.id for b in j3.blocks] == ["west", "east"]
    far = gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs="EPSG:4326")
    far.to_file(tmp_path / "far.gpkg")
    with pytest.raises(BatchJobError, match="none of its 1 polygons overlaps"):
        grid_job(load_recipe(job["recipe"]), tmp_path / "far.gpkg")
    (tmp_path / "scenes.yaml").write_text("scenes:\n  - id: a\n    files: x.tif\n")
    with pytest.raises(BatchJobError, match=r"scenes\[0\]: expected the keys"):
        scenes_job(load_recipe(job["recipe"]), tmp_path / "scenes.yaml")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(BatchError, match="not a geomm batch folder"):
        run_batch(j, job["bundle"], mine, predict=OPTS,
                  options=BatchOptions(in_process=True, progress=False))
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_an_existing_cluster_given_by_its_address(job, single, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        out = tmp_path / "external"
        res = run_batch(grid_job(load_recipe(job["recipe"]), 96), job["bundle"], out,
                        predict=OPTS, echo=lambda s: None,
                        options=BatchOptions(scheduler=cluster.scheduler_address,
                                             progress=False))
    assert res.ok and len(res.computed) == 12 and cluster.scheduler_address in res.where
    same(read(out), read(single))
    doc = json.loads((out / MANIFEST).read_text())
    entry = doc["blocks"]["r000c000"]
    assert [Path(p).name for p, _, _ in entry["inputs"]] == ["A.tif", "B.tif", "VV.tif"]
    assert all(size > 0 for _, size, _ in entry["inputs"])
    assert set(entry["outputs"]) >= {"classes.tif", "probabilities.tif", "confidence.tif"}


def test_an_unreachable_scheduler_is_one_error_within_seconds(job, tmp_path):
    import socket
    import time

    from geomm.batch.runner import SCHEDULER_TIMEOUT_S

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    with pytest.raises(BatchError, match=rf"cannot reach the Dask scheduler at "
                                         rf"tcp://127.0.0.1:{port}"):
        run_batch(grid_job(load_recipe(job["recipe"]), 96), job["bundle"], tmp_path / "o",
                  predict=OPTS, echo=lambda s: None,
                  options=BatchOptions(scheduler=f"tcp://127.0.0.1:{port}", progress=False))
    assert time.perf_counter() - t0 < SCHEDULER_TIMEOUT_S + 15
    assert not (tmp_path / "o").exists()  # the job never started: nothing left behind
