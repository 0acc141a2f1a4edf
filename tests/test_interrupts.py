"""Ctrl-C (SIGINT) in the middle of ``geomm stack`` and ``geomm train``: exit 130 with one
stderr line, nothing new left on disk (no work folder, no logs folder), an existing output
intact, and no noise of cut-short writers."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import H, W, cnn_bundle, write_band, write_recipe, write_scene

INTERRUPTED = "geomm: interrupted (no partial output is kept)"


def _listing(folder: Path) -> dict[str, str | None]:
    """Every path under ``folder`` with its file's digest (None for a folder)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else None for p in sorted(folder.rglob("*"))}


def _interrupt(args: list[str], cwd: Path, started: Callable[[], bool],
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``geomm ARGS``; send SIGINT once ``started()`` is true; wait for the exit."""
    proc = subprocess.Popen([sys.executable, "-m", "geomm.cli", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + timeout
        while not started():
            assert proc.poll() is None, f"ended before it was interrupted: {proc.communicate()}"
            assert time.monotonic() < end, "the command did not start working in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _files(folders: Iterable[Path], at_most: int) -> int:
    """How many files are under ``folders`` (counting stops at ``at_most``)."""
    n = 0
    for folder in folders:
        for _, _, names in os.walk(folder):
            n += len(names)
            if n >= at_most:
                return n
    return n


def _labelled_scene(folder: Path, h: int = H, w: int = W) -> Path:
    """:func:`write_scene` with three raster classes, and its recipe."""
    y, x = np.mgrid[0:h, 0:w]
    write_scene(folder, h, w)
    write_band(folder / "L.tif", (1 + (x > w // 2) + (y > h // 2)).astype(np.uint8), 10,
               nodata=0)
    recipe = write_recipe(folder)
    recipe.write_text(recipe.read_text() + "labels:\n  raster: L.tif\n"
                      "  values: {1: crop, 2: forest, 3: water}\n")
    return recipe


def _check_one_line(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 130, done.stderr[-2000:]
    assert "Task was destroyed" not in done.stderr
    assert "Event loop is closed" not in done.stderr
    assert done.stderr.strip().splitlines() == [INTERRUPTED], done.stderr[-2000:]


@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
def test_ctrl_c_in_stack_leaves_no_work_folder(tmp_path, existing):
    rng = np.random.default_rng(0)
    h = w = 1200  # noise compresses badly: the writes take a few seconds
    recipe = _labelled_scene(tmp_path, h, w)
    for band in ("A", "B"):
        write_band(tmp_path / f"{band}.tif", rng.integers(1, 5000, (h, w)).astype(np.uint16), 10)
    out = tmp_path / "st"
    args = ["stack", str(recipe), "--out", str(out), "--workers", "2"]
    if existing:  # a store of other inputs (another tiling), which --overwrite would replace
        from geomm.recipe import load_recipe
        from geomm.stack.build import stack

        other = tmp_path / "other.yaml"
        other.write_text(recipe.read_text() + "tiling: {size: 96, halo: 4}\n")
        stack(load_recipe(other), out=out)
        args.append("--overwrite")
    recipe.write_text(recipe.read_text() + "tiling: {size: 40, halo: 4}\n")  # many chunks
    before = _listing(tmp_path)

    def writing() -> bool:  # the writers are at work: chunks come into the work folder
        return _files(tmp_path.glob(".st.tmp-*"), 100) >= 100

    done = _interrupt(args, tmp_path, writing)
    _check_one_line(done)
    time.sleep(0.5)  # a writer still at work would recreate the work folder meanwhile
    assert _listing(tmp_path) == before  # the old store (if any) as it was; nothing new


def test_ctrl_c_in_training_leaves_no_bundle_or_logs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the store goes to tiles/<name> there
    recipe = _labelled_scene(tmp_path)
    out = tmp_path / "model"
    cnn_bundle(out)  # a bundle that --overwrite would replace
    from geomm.recipe import load_recipe
    from geomm.stack.build import stack

    stack(load_recipe(recipe))  # the store too: the run goes straight to training
    before = _listing(tmp_path)
    logs = tmp_path / "model-logs"
    done = _interrupt(["train", str(recipe), "--out", str(out), "--overwrite",
                       "--block-size", "500", "--max-epochs", "50", "--steps-per-epoch", "50",
                       "--patch-size", "24", "--members", "1", "--width", "8",
                       "--workers", "1"], tmp_path, logs.exists)
    _check_one_line(done)
    assert not logs.exists()
    assert _listing(tmp_path) == before  # the old bundle as it was; nothing new
