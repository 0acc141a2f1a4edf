"""The batch tests' shared case: a synthetic scene, a tiny CNN bundle, the grid job run in one
process (the reference every other run must equal), and helpers to drive ``geomm batch``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from synthetic import cnn_bundle, write_recipe, write_scene

from geomm.batch._blockrun import read_record
from geomm.batch.jobs import grid_job
from geomm.batch.runner import BatchOptions, run_batch
from geomm.predict.scene import PredictOptions
from geomm.recipe import load_recipe

SH, SW = 288, 384  # scene, base pixels
RASTERS = ("classes.tif", "probabilities.tif", "confidence.tif")
TILING = ["--tile-size", "96", "--halo", "16", "--threads", "1", "--quiet"]
OPTS = PredictOptions(tile_size=96, halo=16, threads=1, device="cpu")


def make_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    write_scene(root / "scene", SH, SW)
    return {"recipe": write_recipe(root / "scene"), "bundle": cnn_bundle(root / "cnn"),
            "root": root}


def cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).with_name("geomm")), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def grid_args(job, out: Path, *extra: str) -> list[str]:
    return ["batch", str(job["recipe"]), "--bundle", str(job["bundle"]), "--grid", "96",
            "-o", str(out), *TILING, *extra]


def read(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for n in RASTERS:
        with rasterio.open(folder / n) as src:
            out[n] = src.read()
    return out


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for n in RASTERS:
        assert a[n].shape == b[n].shape and np.array_equal(a[n], b[n]), n


def run_single(job):
    """The grid job (12 blocks of 96 px) run in one process, no Dask."""
    out = job["root"] / "single"
    said: list[str] = []
    res = run_batch(grid_job(load_recipe(job["recipe"]), 96), job["bundle"], out,
                    predict=OPTS, options=BatchOptions(in_process=True, progress=False),
                    echo=said.append)
    assert res.ok and len(res.computed) == 12 and res.final
    assert not [s for s in said if "no mosaic" in s], said  # it made one: say nothing else
    return out


def blocks_done(out: Path) -> int:
    return sum(read_record(p) is not None for p in (out / "blocks").glob("*")) \
        if (out / "blocks").exists() else 0


def wait_for(cond, proc, timeout=240.0) -> None:
    t0 = time.monotonic()
    while not cond():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() - t0 < timeout
        time.sleep(0.05)


