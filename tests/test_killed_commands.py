"""SIGKILL at the renames of ``vectorize``, ``sample-design``, ``evaluate``, ``train`` and
``batch`` (an LD_PRELOAD rename wrapper, tests/killpoints.py; ``predict`` and ``stack`` are in
test_killed_renames.py), every one or, where a run repeats one kind of rename, the first and
the last of the kind:
two runs A and B of a command alternate into one output; whichever rename the kill lands on,
the output is afterwards A's complete result or B's (once the next look has finished an
interrupted commit), and the rerun succeeds."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest

from geomm._outputs import recover
from tests._evaldata import write_class_map, write_points
from tests.killpoints import commit_points, renames, run
from tests.synthetic import H, W, cnn_bundle, write_band, write_recipe, write_scene

RENAMES = "rename,renameat,renameat2"
NAMES = ("crop", "forest", "water")


def _sha(p: Path) -> str | None:
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


def _features(p: Path) -> Any:
    """A vector file's content without GDAL's write times: its rows, sorted."""
    if not p.is_file():
        return None
    df = gpd.read_file(p)
    cols = [c for c in df.columns if c != "geometry"]
    return sorted((*(str(r[c]) for c in cols), r.geometry.wkb_hex)
                  for _, r in df.iterrows())


def _alternate(args: Callable[[str], list[str]], digest: Callable[[], Any], cwd: Path,
               settle: Callable[[], None] = lambda: None,
               pick: Callable[[list[tuple[int, str, str]]], list[int]] | None = None,
               then: Callable[[], None] = lambda: None) -> int:
    """Run A then B, then kill A/B (alternating) at each rename of a run (or those that
    ``pick`` chooses from its (N, source, target) renames); returns the count.
    After each kill the output is the previous run's or the killed run's (``digest``); after
    each rerun it is the rerun's, with no hidden work file left beside it."""
    digests = {}
    for v in ("a", "b"):
        done = run(args(v), cwd)
        assert done.returncode == 0, done.stderr
        digests[v] = digest()
    assert digests["a"] != digests["b"] and None not in (digests["a"], digests["b"])
    then()  # e.g. a user's file put into the output
    every = renames(args("a"), cwd, cwd / "renames.log")  # B's output replaced by A's
    points = [n for n, *_ in every] if pick is None else pick(every)
    assert points
    before = "a"
    for i, point in enumerate(points, 1):
        target = "b" if before == "a" else "a"
        killed = run(args(target), cwd, kill_at=point)
        where = f"rename {i} of {len(points)} (#{point} of the run)"
        assert killed.returncode != 0, f"{where} was not reached: {killed.stderr[-500:]}"
        settle()  # what the next run, or reader, does first
        assert digest() in (digests[before], digests[target]), \
            f"killed at {where}: neither run's complete output"
        rerun = run(args(target), cwd)
        assert rerun.returncode == 0, rerun.stderr
        assert digest() == digests[target]
        before = target
    return len(points)


@pytest.fixture
def maps(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    a = np.repeat(np.repeat(rng.integers(0, 3, (12, 16)), 8, 0), 8, 1)
    b = np.where(a == 2, 0, a)
    return {"a": write_class_map(tmp_path / "a.tif", a, NAMES),
            "b": write_class_map(tmp_path / "b.tif", b, NAMES)}


def test_vectorize_killed_at_every_rename(tmp_path, maps):
    out = tmp_path / "out" / "map.gpkg"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    n = _alternate(lambda v: ["vectorize", str(maps[v]), "-o", str(out), "--overwrite"],
                   lambda: _features(out), tmp_path, lambda: recover(out.parent))
    assert n >= 1 and (tmp_path / "out" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.parent.iterdir()) == ["map.gpkg", "notes.txt"]


def test_sample_design_killed_at_every_rename(tmp_path, maps):
    out = tmp_path / "out" / "points.gpkg"
    _alternate(lambda v: ["sample-design", str(maps["a"]), "-n", "30", "--seed",
                          "1" if v == "a" else "2", "-o", str(out), "--overwrite"],
               lambda: _features(out), tmp_path, lambda: recover(out.parent))
    assert sorted(p.name for p in out.parent.iterdir()) == ["points.gpkg"]


def test_evaluate_killed_at_its_renames(tmp_path, maps):
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, 96, 60), rng.integers(0, 128, 60)
    xy = [(500000 + 10 * c + 5, 5800000 - 10 * r - 5) for r, c in zip(rows, cols, strict=True)]
    ref = write_points(tmp_path / "ref.gpkg", xy, [NAMES[i] for i in rng.integers(0, 3, 60)])
    out = tmp_path / "report"

    def digest() -> Any:
        m = out / "metrics.json"
        if not m.is_file():
            return None
        doc = json.loads(m.read_text())
        return (json.dumps(doc.get("confusion_matrix", doc.get("matrix")), sort_keys=True),
                doc.get("map"), sorted(p.name for p in out.iterdir()
                                       if not p.name.startswith(".")))

    n = _alternate(lambda v: ["evaluate", str(maps[v]), str(ref), "--column", "reference",
                              "-o", str(out), "--overwrite"], digest, tmp_path,
                   lambda: recover(out), commit_points)
    assert n >= 4  # written in the work folder, the journal, the first and the last move
    assert not [p.name for p in out.iterdir() if p.name.startswith(".geomm-work")]


def test_train_killed_at_every_rename(tmp_path):
    y, x = np.mgrid[0:H, 0:W]
    write_scene(tmp_path)
    write_band(tmp_path / "L.tif", (1 + (x > W // 2) + (y > H // 2)).astype(np.uint8), 10,
               nodata=0)
    recipe = write_recipe(tmp_path)
    recipe.write_text(recipe.read_text() + "labels:\n  raster: L.tif\n"
                      "  values: {1: crop, 2: forest, 3: water}\n")
    out = tmp_path / "model"

    def args(v: str) -> list[str]:
        return ["train", str(recipe), "--classifier", "rf", "--block-size", "500", "--seed",
                "1" if v == "a" else "2", "--out", str(out), "--overwrite"]

    def digest() -> Any:
        from geomm.model.bundle import load_bundle

        if not (out / "bundle.json").is_file():
            return None
        b = load_bundle(out)  # a complete bundle, its weights as bundle.json records
        from safetensors.numpy import load_file

        # the arrays, not the file: safetensors writes its header's keys in a random order
        arrays = load_file(out / "weights.safetensors")
        content = hashlib.sha256()
        for k in sorted(arrays):
            content.update(k.encode() + arrays[k].tobytes())
        return content.hexdigest(), b.meta.split.get("seed")

    _alternate(args, digest, tmp_path, then=lambda: (out / "notes.txt").write_text("mine"))
    assert (out / "notes.txt").read_text() == "mine"  # carried into every new bundle
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".model.")
                and "lock" not in p.name]


def test_batch_killed_at_every_rename(tmp_path):
    """Every rename of the job's own: block folders swapped into place, the manifest, and
    the mosaic's first commit rename. (The renames of each block's prediction happen inside
    its private folder under ``.partial/``; the mosaic commits like ``predict``: both are
    killed at every rename in test_killed_renames.py.)"""
    write_scene(tmp_path / "scene")
    recipe = write_recipe(tmp_path / "scene")
    bundles = {"a": cnn_bundle(tmp_path / "ba", seed=1), "b": cnn_bundle(tmp_path / "bb", seed=2)}
    out = tmp_path / "job"
    rasters = ("classes.tif", "probabilities.tif", "confidence.tif")
    mosaic_commits: list[str] = []

    def keep(src: str, dst: str) -> bool:
        if "/.partial/" in src and "/.partial/" in dst:
            return False
        if "/.geomm-work-" in src:  # the mosaic's commit: the first of its renames
            mosaic_commits.append(dst)
            return len(mosaic_commits) == 1
        return True

    def digest() -> Any:
        if not all((out / n).is_file() for n in rasters):
            return None
        return tuple(_sha(out / n) for n in rasters)

    n = _alternate(lambda v: ["batch", str(recipe), "--bundle", str(bundles[v]), "--grid",
                              "204", "-o", str(out), "--no-cluster", "--no-vector", "--quiet",
                              "--tile-size", "96", "--halo", "16", "--threads", "1"],
                   digest, tmp_path, lambda: recover(out),
                   lambda rows: [n for n, src, dst in rows if keep(src, dst)])
    assert n >= 5 and mosaic_commits
    doc = json.loads((out / "geomm-batch.json").read_text())
    assert {b["status"] for b in doc["blocks"].values()} == {"done"} and len(doc["blocks"]) == 2
