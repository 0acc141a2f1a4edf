"""SIGKILL at the renames of ``predict --overwrite`` and ``stack --overwrite`` (an LD_PRELOAD
rename wrapper, tests/killpoints.py): every kind of rename, the first and the last of each
run of alike ones (files finished in the private work folder, moves into the output);
afterwards the output is the old complete set or the new one (once the next look has
finished an interrupted commit), and a rerun succeeds."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from geomm._outputs import recover
from geomm.stack.store import read_manifest
from tests.killpoints import commit_points, renames, run, sampled
from tests.synthetic import cnn_bundle, write_recipe, write_scene

ROOT = Path(__file__).resolve().parents[1]


def _geomm(args: list[str], *, inject: int | None = None) -> subprocess.CompletedProcess:
    return run(args, ROOT, kill_at=inject)


def _digest(folder: Path, names: list[str]) -> dict[str, str | None]:
    """The rasters' hashes and the run record's bundle (item.json and the record hold the
    time of the run, so they differ between two runs of one bundle)."""
    out: dict[str, str | None] = {
        n: (hashlib.sha256((folder / n).read_bytes()).hexdigest() if (folder / n).is_file()
            else None) for n in names}
    record = folder / "geomm-predict.json"
    out["record of"] = json.loads(record.read_text())["bundle"] if record.is_file() else None
    out["item.json"] = "present" if (folder / "item.json").is_file() else None
    return out


def test_predict_killed_at_its_renames(tmp_path):
    bands = write_scene(tmp_path / "in")
    old_bundle = cnn_bundle(tmp_path / "b1", seed=1)
    new_bundle = cnn_bundle(tmp_path / "b2", seed=2)
    out = tmp_path / "out"
    names = ["classes.tif", "probabilities.tif", "confidence.tif"]

    def args(bundle: Path) -> list[str]:
        return ["predict", str(bundle), "--modality", f"optical={bands['a']},{bands['b']}",
                "--modality", f"radar={bands['r']}", "-o", str(out), "--overwrite"]

    assert _geomm(args(old_bundle)).returncode == 0
    digests = {old_bundle: _digest(out, names)}
    assert _geomm(args(new_bundle)).returncode == 0
    digests[new_bundle] = _digest(out, names)
    assert digests[old_bundle] != digests[new_bundle]
    every = renames(args(new_bundle), ROOT, tmp_path / "renames.log")
    points = commit_points(every)
    assert sum("/.geomm-work-" in src and Path(dst).name in names for _, src, dst in every) \
        == len(names)
    n = len(every)
    before = new_bundle  # the complete set in the folder now
    for when in points:
        target = old_bundle if before == new_bundle else new_bundle  # alternate the runs
        killed = _geomm(args(target), inject=when)
        assert killed.returncode != 0, f"rename {when} of {n} was not reached"
        recover(out)  # what the next run into the folder does first
        got = _digest(out, names)
        assert got in (digests[before], digests[target]), \
            f"killed at rename {when} of {n}: a mix of two runs"
        rerun = _geomm(args(target))
        assert rerun.returncode == 0, rerun.stderr
        assert _digest(out, names) == digests[target]
        assert not list(out.glob(".geomm-work-*")) and not (out / ".geomm-commit").exists()
        before = target


def test_stack_killed_at_its_renames(tmp_path):
    write_scene(tmp_path)
    recipe = write_recipe(tmp_path)
    out = tmp_path / "store"
    (tmp_path / "notes.txt").write_text("mine")
    first = _geomm(["stack", str(recipe), "-o", str(out)])
    assert first.returncode == 0, first.stderr
    (out / "notes.txt").write_text("mine")
    # a changed recipe makes --overwrite rebuild the store (an unchanged one is kept as is)
    recipe.write_text(recipe.read_text().replace("name: synthetic", "name: s0"))
    every = renames(["stack", str(recipe), "-o", str(out), "--overwrite"], ROOT,
                    tmp_path / "renames.log")
    # Zarr writes each chunk and metadata file under a temporary name inside the private
    # staging folder (51 renames here): the first and the last of those stand for them; every
    # rename that touches the store's own name or a user's file is a kill point
    points = sampled(every, lambda _, dst: "inside" if "/.store.tmp-" in dst else None)
    assert len(every) > len(points) >= 3, every
    for i, when in enumerate(points, 1):
        recipe.write_text(recipe.read_text().replace(f"name: s{i - 1}", f"name: s{i}"))
        killed = _geomm(["stack", str(recipe), "-o", str(out), "--overwrite"], inject=when)
        assert killed.returncode != 0, f"rename #{when} was not reached"
        got = read_manifest(out)
        assert got is not None, f"no complete store after rename #{when}"
        assert got.get("recipe") in (f"s{i - 1}", f"s{i}"), got.get("recipe")
        rerun = _geomm(["stack", str(recipe), "-o", str(out), "--overwrite"])
        assert rerun.returncode == 0, rerun.stderr
        assert read_manifest(out).get("recipe") == f"s{i}"
        assert (out / "notes.txt").is_file(), f"the user's file lost after rename #{when}: {every}"
        assert not list(tmp_path.glob(".store.*"))
