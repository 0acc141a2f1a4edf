"""The bad-input corpus for the learning and job commands (``train``, ``crossval``,
``batch``): each case is one ``geomm: error:`` line naming the file, key or option at fault,
exit 1, no traceback, no output left behind and no file of the user's changed."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from shapely.geometry import box

from geomm.cli import main
from tests.synthetic import X0, Y0, H, W, cnn_bundle, write_band
from tests.test_badinput import _hashes, _labelled, _one_line, _truncate

Setup = Callable[[Path], list[str]]
"""Spoils the case folder and returns the command's arguments."""


def _recipe(root: Path) -> Path:
    y, x = np.mgrid[0:H, 0:W]
    return _labelled(root, 1 + (x > W // 2))


def _edit_labels(old: str, new: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        r = root / "recipe.yaml"
        r.write_text(r.read_text().replace(old, new))
    return edit


QUICK = ["--max-epochs", "1", "--steps-per-epoch", "1", "--block-size", "500"]
"""A run that would train in seconds: blocks of 50 px, so the scene holds 30."""


def _train(spoil: Callable[[Path], object], *extra: str) -> Setup:
    def setup(root: Path) -> list[str]:
        recipe = _recipe(root)
        spoil(root)
        return ["train", str(recipe), "--out", str(root / "out" / "model"), *QUICK, *extra]
    return setup


def _crossval(spoil: Callable[[Path], object], *extra: str) -> Setup:
    def setup(root: Path) -> list[str]:
        recipe = _recipe(root)
        spoil(root)
        return ["crossval", str(recipe), *QUICK, "--baseline", "none", *extra]
    return setup


def _user_folder(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("mine")


def _grid_file(root: Path, crs: str | None, far: bool = False) -> Path:
    x0 = X0 + (1e6 if far else 0)
    g = gpd.GeoDataFrame({"id": ["a"]}, geometry=[box(x0, Y0 - 1000, x0 + 1000, Y0)], crs=crs)
    with warnings.catch_warnings():  # pyogrio's "no CRS" warning is the case itself
        warnings.simplefilter("ignore", UserWarning)
        g.to_file(root / "grid.gpkg")
    return root / "grid.gpkg"


def _batch(spoil: Callable[[Path], list[str]]) -> Setup:
    """``spoil`` gets the case folder (with a recipe and a bundle) and returns the arguments
    after ``batch RECIPE``: the good ones are ``--bundle bundle --grid 96 -o out``."""
    def setup(root: Path) -> list[str]:
        recipe = _recipe(root)
        cnn_bundle(root / "bundle")
        return ["batch", str(recipe), "--no-cluster", "--quiet", "--tile-size", "96",
                "--halo", "16", "--threads", "1", *spoil(root)]
    return setup


GOOD = ["--bundle", "bundle", "--grid", "96", "-o", "out"]


def _args(root: Path, *args: str) -> list[str]:
    return [str(root / a) if a in ("bundle", "out", "scenes.yaml", "grid.gpkg") else a
            for a in args]


def _scenes(text: str) -> Callable[[Path], list[str]]:
    def spoil(root: Path) -> list[str]:
        (root / "scenes.yaml").write_text(text)
        return _args(root, "--bundle", "bundle", "--scenes", "scenes.yaml", "-o", "out")
    return spoil


def _bundle_json(edit: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    def spoil(root: Path) -> list[str]:
        p = root / "bundle" / "bundle.json"
        doc = json.loads(p.read_text())
        edit(doc)
        p.write_text(json.dumps(doc))
        return _args(root, *GOOD)
    return spoil


def _weights_flipped(root: Path) -> list[str]:
    p = root / "bundle" / "weights.safetensors"
    data = bytearray(p.read_bytes())
    data[-5] ^= 0xFF
    p.write_bytes(bytes(data))
    return _args(root, *GOOD)


def _rescaled(root: Path) -> list[str]:
    """The optical bands as reflectance 0-1 (the model was trained on 0-10000)."""
    for name in ("A", "B"):
        with rasterio.open(root / f"{name}.tif") as src:
            arr = src.read(1).astype(np.float32) * np.float32(1e-4)
        write_band(root / f"{name}.tif", arr, 10)
    return _args(root, *GOOD)


def _on_scheduler(address: str) -> Setup:
    def setup(root: Path) -> list[str]:
        args = _batch(lambda r: _args(r, *GOOD))(root)
        return [a for a in args if a != "--no-cluster"] + ["--scheduler", address]
    return setup


CASES: dict[str, tuple[Setup, str]] = {
    # train
    "train: label raster missing": (_train(lambda r: (r / "L.tif").unlink()), "labels.raster"),
    "train: label raster truncated": (_train(lambda r: _truncate(r / "L.tif")), "L.tif"),
    "train: label raster is text": (_train(lambda r: (r / "L.tif").write_text("x")), "L.tif"),
    "train: label values absent": (_train(_edit_labels("{1: crop, 2: forest}",
                                                       "{7: crop, 8: forest}")), "no label"),
    "train: label polygons file is text": (
        _train(lambda r: ((r / "L.gpkg").write_text("not a gpkg"),
                          _edit_labels("raster: L.tif", "vector: L.gpkg\n  class_column: c")(r))),
        "L.gpkg"),
    "train: out is a file": (_train(lambda r: ((r / "out").mkdir(),
                                               (r / "out" / "model").write_text("mine"))),
                             "out/model exists and is not a geomm model bundle"),
    "train: out is a user folder": (_train(lambda r: _user_folder(r / "out" / "model")),
                                    "out/model exists and is not a geomm model bundle"),
    "train: block size larger than the scene": (_train(lambda r: None, "--block-size", "1e6"),
                                                "holds 1 blocks"),
    "train: fold beyond the folds": (_train(lambda r: None, "--fold", "9"),
                                     "--fold 9: the split has 5 folds"),
    # crossval
    "crossval: no labels in the recipe": (
        _crossval(_edit_labels("labels:\n  raster: L.tif\n  values: {1: crop, 2: forest}\n",
                               "")), "needs pixel labels"),
    "crossval: truncated band": (_crossval(lambda r: _truncate(r / "B.tif")), "B.tif"),
    "crossval: only-fold beyond the folds": (_crossval(lambda r: None, "--only-fold", "0",
                                                       "--only-fold", "7"),
                                             "--only-fold 7: the split has 5 folds"),
    "crossval: withhold an unknown modality": (_crossval(lambda r: None, "--withhold",
                                                         "lidar"), "lidar"),
    "crossval: out is a file": (_crossval(lambda r: (r / "out").write_text("mine"), "--out",
                                          "out"), "out: is a file"),
    "crossval: out holds a crossval.csv it did not write": (
        _crossval(lambda r: ((r / "out").mkdir(), (r / "out" / "crossval.csv").write_text("x")),
                  "--out", "out", "--overwrite"), "not even --overwrite"),
    "crossval: out holds results": (
        _crossval(lambda r: ((r / "out").mkdir(),
                             (r / "out" / "crossval.json").write_text("{}")), "--out", "out"),
        "pass --overwrite"),
    # batch
    "batch: bundle folder is empty": (_batch(lambda r: ((r / "empty").mkdir(), _args(
        r, "--bundle", "empty", "--grid", "96", "-o", "out"))[1]),
        "empty: not a geomm model bundle"),
    "batch: bundle.json damaged": (_batch(lambda r: ((r / "bundle" / "bundle.json").write_text(
        "{"), _args(r, *GOOD))[1]), "bundle.json"),
    "batch: bundle.json without classes": (_batch(_bundle_json(lambda d: d.pop("classes"))),
                                           "classes"),
    "batch: bundle weights tampered": (_batch(_weights_flipped), "weights"),
    "batch: bundle for another modality": (_batch(_bundle_json(
        lambda d: d["layers"][1].update(modality="lidar"))), "lidar"),
    "batch: inputs in other units than the model": (_batch(_rescaled), "other units"),
    "batch: out is a file": (_batch(lambda r: ((r / "out").write_text("mine"),
                                               _args(r, *GOOD))[1]), "out: is a file"),
    "batch: out is a user folder": (_batch(lambda r: (_user_folder(r / "out"),
                                                      _args(r, *GOOD))[1]),
                                    "not a geomm batch folder"),
    "batch: grid file is text": (_batch(lambda r: ((r / "grid.gpkg").write_text("x"), _args(
        r, "--bundle", "bundle", "--grid", "grid.gpkg", "-o", "out"))[1]), "grid.gpkg"),
    "batch: grid file without CRS": (_batch(lambda r: (_grid_file(r, None), _args(
        r, "--bundle", "bundle", "--grid", "grid.gpkg", "-o", "out"))[1]), "the grid has no CRS"),
    "batch: grid far from the scene": (_batch(lambda r: (_grid_file(r, "EPSG:32633", True),
                                                         _args(r, "--bundle", "bundle",
                                                               "--grid", "grid.gpkg",
                                                               "-o", "out"))[1]), "overlaps"),
    "batch: grid blocks too small": (_batch(lambda r: _args(r, "--bundle", "bundle", "--grid",
                                                            "8", "-o", "out")), "64 px"),
    "batch: scheduler not an address": (_on_scheduler("notanaddress"),
                                        "--scheduler 'notanaddress': not a Dask"),
    "batch: scheduler of another protocol": (_on_scheduler("http://127.0.0.1:8787"),
                                             "not a scheduler's protocol"),
    "batch: scenes file not YAML": (_batch(_scenes("scenes: [\n")), "scenes.yaml"),
    "batch: scenes file empty": (_batch(_scenes("")), "scenes.yaml"),
    "batch: scene without modalities": (_batch(_scenes("scenes:\n  - id: a\n")),
                                        "no 'modalities'"),
    "batch: scene id twice": (_batch(_scenes(
        "scenes:\n  - id: a\n    modalities: {optical: [A.tif, B.tif], radar: VV.tif}\n"
        "  - id: a\n    modalities: {optical: [A.tif, B.tif], radar: VV.tif}\n")), "twice"),
    "batch: scene id a path": (_batch(_scenes(
        "scenes:\n  - id: ../up\n    modalities: {optical: [A.tif, B.tif], radar: VV.tif}\n")),
        "folder name"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_job_commands_bad_input(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)  # stores go to tiles/<name> under the working folder
    setup, needle = CASES[case]
    args = setup(tmp_path)
    (tmp_path / "tiles").mkdir(exist_ok=True)
    before = _hashes(tmp_path)
    folders = {p for p in tmp_path.rglob("*") if p.is_dir()}
    user = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "out" in p.parts}
    result = CliRunner().invoke(main, args)
    made = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_dir()} - {
        p.relative_to(tmp_path) for p in folders}
    assert {p for p in made if p.parts[0] != "tiles"} == set(), made  # no empty folders left
    line = _one_line(result)
    assert needle in line, line
    after = {k: v for k, v in _hashes(tmp_path).items() if not k.startswith("tiles/")}
    assert after == {k: v for k, v in before.items() if not k.startswith("tiles/")}
    assert all(p.read_bytes() == data for p, data in user.items())
    out = tmp_path / "out"
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.is_dir() else []
    mine = {str(q.relative_to(out)) for p in user for q in (p, *p.parents) if out in q.parents}
    assert set(left) <= mine, left


NO_DATA_NEEDED = {
    "train --fold past --folds": (_train(lambda r: None, "--fold", "3", "--folds", "3"),
                                  "--fold 3"),
    "crossval --only-fold past --folds": (_crossval(lambda r: None, "--only-fold", "0",
                                                    "--only-fold", "5"), "--only-fold 5"),
    "train --device cuda without a GPU": (_train(lambda r: None, "--device", "cuda"),
                                          "--device cuda"),
    "crossval --device cuda without a GPU": (_crossval(lambda r: None, "--device", "cuda"),
                                             "--device cuda"),
}


@pytest.mark.parametrize("case", sorted(NO_DATA_NEEDED))
def test_what_the_options_alone_rule_out_is_refused_before_the_scene_is_stacked(
        tmp_path, monkeypatch, case):
    import torch

    if "cuda" in case and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    monkeypatch.chdir(tmp_path)
    setup, needle = NO_DATA_NEEDED[case]
    line = _one_line(CliRunner().invoke(main, setup(tmp_path)))
    assert needle in line, line
    assert not (tmp_path / "tiles").exists()  # refused before any stacking (or training)


@pytest.mark.parametrize("command", ["train", "batch", "crossval"])
def test_the_unspoiled_case_runs(tmp_path, monkeypatch, command):
    """The corpus's set-ups are good runs but for their one fault."""
    monkeypatch.chdir(tmp_path)
    setup = {"train": _train(lambda r: None), "batch": _batch(lambda r: _args(r, *GOOD)),
             "crossval": _crossval(lambda r: None, "--out", "out")}[command]
    result = CliRunner().invoke(main, setup(tmp_path))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / {"train": "model/bundle.json", "batch": "classes.tif",
                                "crossval": "crossval.json"}[command]).is_file()


def test_settings_of_the_cnn_given_to_a_baseline_are_named_as_ignored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _train(lambda r: None, "--classifier", "rf", "--patch-size", "7")(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.stderr.splitlines() if "settings of the CNN" in ln)
    assert line.startswith("geomm: warning: --max-epochs, --steps-per-epoch, --patch-size")
    assert line.endswith("the rf baseline ignores them")


def test_a_second_batch_run_into_the_same_folder_is_refused_at_once(tmp_path, monkeypatch):
    import subprocess
    import sys
    import time

    monkeypatch.chdir(tmp_path)
    args = _batch(lambda r: _args(r, *GOOD))(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from geomm._lock import output_lock\n"
        f"with output_lock(Path({str(tmp_path / 'out')!r}), 'geomm batch'):\n"
        "    print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        line = _one_line(CliRunner().invoke(main, args))
        assert "another geomm run is writing this output" in line and "geomm batch" in line
        assert time.perf_counter() - t0 < 30  # at once, not after computing the blocks
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "out").exists()


def test_a_first_manifest_a_kill_kept_from_its_rename_does_not_orphan_the_folder(tmp_path,
                                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _batch(lambda r: _args(r, *GOOD))(tmp_path)
    (tmp_path / "out").mkdir()
    left = tmp_path / "out" / ".geomm-batch.json.99999.tmp"
    left.write_text("{")  # a kill between writing the first manifest and its rename
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "classes.tif").is_file() and not left.exists()
