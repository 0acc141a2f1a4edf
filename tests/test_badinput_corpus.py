"""The bad-input corpus across commands: broken files, wrong kinds of file, outputs that
cannot be written (under a file, on a full disk). Every case: exit 1, exactly one
``geomm: error:`` line, no traceback, no output left, and no file of the user's changed."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner

from geomm.cli import main
from tests._evaldata import T10, centre, write_class_map, write_points
from tests.conftest import REQUIRE_TOOLS
from tests.synthetic import cnn_bundle, write_scene

NAMES = ("crop", "forest", "water")


def _class_map(path: Path) -> Path:
    y, x = np.mgrid[0:96, 0:128]
    return write_class_map(path, ((x // 40 + y // 40) % 3).astype(np.uint8), NAMES)


def _points(path: Path) -> Path:
    rng = np.random.default_rng(0)
    rc = rng.integers(0, 96, (40, 2))
    return write_points(path, [centre(T10, int(r), int(c)) for r, c in rc],
                        [NAMES[int(r + c) % 3] for r, c in rc])


# --- broken raster files: (name, make(path) -> path) --------------------------------------
def _zero(p: Path) -> Path:
    p.write_bytes(b"")
    return p


def _text(p: Path) -> Path:
    p.write_text("this is not a raster\n")
    return p


def _truncated(p: Path) -> Path:
    _class_map(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _no_crs(p: Path) -> Path:
    with rasterio.open(p, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8",
                       transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(np.ones((1, 64, 64), np.uint8))
    return p


def _float(p: Path) -> Path:
    with rasterio.open(p, "w", driver="GTiff", width=64, height=64, count=1, dtype="float32",
                       crs="EPSG:32633", transform=T10) as dst:
        dst.write(np.random.default_rng(0).random((1, 64, 64), dtype=np.float32))
    return p


def _three_bands(p: Path) -> Path:
    with rasterio.open(p, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=T10) as dst:
        dst.write(np.ones((3, 64, 64), np.uint8))
    return p


def _missing(p: Path) -> Path:
    return p


def _folder(p: Path) -> Path:
    p.mkdir()
    return p


BAD_MAPS: dict[str, Callable[[Path], Path]] = {
    "zero-byte": _zero, "text": _text, "truncated": _truncated, "no CRS": _no_crs,
    "float values": _float, "three bands": _three_bands, "missing": _missing,
    "a folder": _folder,
}


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.output


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "out" not in p.parts}


def _check(tmp_path: Path, args: list[str], outputs: list[Path], *, named: str = "") -> str:
    before = _hashes(tmp_path)
    code, output = _run(args)
    lines = [ln for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("geomm: error: ")]
    usage = code == 2 and any(ln.startswith("Error: ") for ln in lines)  # click's own checks
    assert (code == 1 and len(errors) == 1) or usage, output
    assert "Traceback" not in output, output
    if named:
        assert named in output, output
    for out in outputs:
        assert not out.exists() or not any(out.iterdir() if out.is_dir() else [out]), out
    assert _hashes(tmp_path) == before
    return output


MAP_COMMANDS: dict[str, Callable[[Path, Path], tuple[list[str], list[Path]]]] = {
    "vectorize": lambda m, t: (["vectorize", str(m), "-o", str(t / "out.gpkg")],
                               [t / "out.gpkg"]),
    "sample-design": lambda m, t: (["sample-design", str(m), "-n", "20", "-o",
                                    str(t / "out.gpkg")], [t / "out.gpkg"]),
    "evaluate": lambda m, t: (["evaluate", str(m), str(_points(t / "ref.gpkg")), "-o",
                               str(t / "out")], [t / "out"]),
}


@pytest.mark.parametrize("bad", sorted(BAD_MAPS))
@pytest.mark.parametrize("command", sorted(MAP_COMMANDS))
def test_a_bad_class_map(tmp_path, command, bad):
    m = BAD_MAPS[bad](tmp_path / "map.tif")
    args, outs = MAP_COMMANDS[command](m, tmp_path)
    _check(tmp_path, args, outs, named="map.tif")


BAD_REFERENCES: dict[str, Callable[[Path], Path]] = {
    "zero-byte": lambda p: _zero(p.with_suffix(".gpkg")),
    "text": lambda p: _text(p.with_suffix(".gpkg")),
    "missing": lambda p: p.with_suffix(".gpkg"),
    "no reference column": lambda p: write_points(p.with_suffix(".gpkg"),
                                                  [centre(T10, 5, 5)], ["crop"], column="cls"),
    "points outside the map": lambda p: write_points(p.with_suffix(".gpkg"),
                                                     [(0.0, 0.0), (10.0, 10.0)],
                                                     ["crop", "water"]),
    "unknown class names": lambda p: write_points(p.with_suffix(".gpkg"),
                                                  [centre(T10, 5, 5)], ["lava"]),
}


@pytest.mark.parametrize("bad", sorted(BAD_REFERENCES))
def test_evaluate_with_a_bad_reference(tmp_path, bad):
    m = _class_map(tmp_path / "map.tif")
    ref = BAD_REFERENCES[bad](tmp_path / "ref")
    _check(tmp_path, ["evaluate", str(m), str(ref), "-o", str(tmp_path / "out")],
           [tmp_path / "out"])


BAD_BANDS: dict[str, Callable[[Path], Path]] = {
    "zero-byte": _zero, "text": _text, "no CRS": _no_crs, "missing": _missing,
    "a folder": _folder,
}


@pytest.mark.parametrize("bad", sorted(BAD_BANDS))
def test_predict_with_a_bad_band(tmp_path, bad):
    bands = write_scene(tmp_path / "in")
    bundle = cnn_bundle(tmp_path / "bundle")
    bands["b"].unlink()
    BAD_BANDS[bad](bands["b"])
    args = ["predict", str(bundle), "--modality", f"optical={bands['a']},{bands['b']}",
            "--modality", f"radar={bands['r']}", "-o", str(tmp_path / "out")]
    _check(tmp_path, args, [tmp_path / "out"])


def test_predict_with_a_truncated_band(tmp_path):
    bands = write_scene(tmp_path / "in")
    bundle = cnn_bundle(tmp_path / "bundle")
    data = bands["a"].read_bytes()
    bands["a"].write_bytes(data[: len(data) // 2])
    args = ["predict", str(bundle), "--modality", f"optical={bands['a']},{bands['b']}",
            "--modality", f"radar={bands['r']}", "-o", str(tmp_path / "out")]
    _check(tmp_path, args, [tmp_path / "out"], named="A.tif")


@pytest.mark.parametrize("bad", ["zero-byte", "text", "missing", "a folder"])
def test_info_of_a_bad_file(tmp_path, bad):
    path = BAD_MAPS[bad](tmp_path / "x.tif")
    _check(tmp_path, ["info", str(path)], [])


def _under_a_file(t: Path) -> Path:
    f = t / "notes.txt"
    if not f.exists():
        f.write_text("mine")
    return f / "out"


UNDER_A_FILE: dict[str, Callable[[Path], list[str]]] = {
    "vectorize": lambda t: ["vectorize", str(_class_map(t / "m.tif")), "-o",
                            str(_under_a_file(t) / "map.gpkg")],
    "sample-design": lambda t: ["sample-design", str(_class_map(t / "m.tif")), "-n", "5", "-o",
                                str(_under_a_file(t) / "p.gpkg")],
    "evaluate": lambda t: ["evaluate", str(_class_map(t / "m.tif")), str(_points(t / "r.gpkg")),
                           "-o", str(_under_a_file(t))],
    "predict": lambda t: ["predict", str(cnn_bundle(t / "bundle")), "--modality",
                          "optical={a},{b}".format(**{k: str(v) for k, v in
                                                      write_scene(t / "in").items()}),
                          "--modality", f"radar={t / 'in' / 'VV.tif'}", "-o",
                          str(_under_a_file(t))],
}


@pytest.mark.parametrize("command", sorted(UNDER_A_FILE))
def test_an_output_under_a_file(tmp_path, command):
    args = UNDER_A_FILE[command](tmp_path)
    _check(tmp_path, args, [], named="notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 KiB tmpfs (root only): every write of a real output fills it."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    ok = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mnt)],
        capture_output=True).returncode == 0
    if not ok:
        msg = "mounting a small tmpfs needs root - the full-disk cases"
        if REQUIRE_TOOLS:
            pytest.fail(msg + "; GEOMM_REQUIRE_TOOLS=1 (CI) does not allow skipping")
        pytest.skip(msg)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


FULL: dict[str, Callable[[Path, Path], list[str]]] = {
    "vectorize": lambda t, d: ["vectorize", str(_big_map(t)), "-o", str(d / "map.gpkg")],
    "sample-design": lambda t, d: ["sample-design", str(_big_map(t)), "-n", "3000", "-o",
                                   str(d / "p.gpkg")],
    "evaluate": lambda t, d: ["evaluate", str(_class_map(t / "m.tif")),
                              str(_points(t / "r.gpkg")), "-o", str(d / "report")],
    "predict": lambda t, d: ["predict", str(cnn_bundle(t / "bundle")), "--modality",
                             "optical={a},{b}".format(**{k: str(v) for k, v in
                                                         write_scene(t / "in").items()}),
                             "--modality", f"radar={t / 'in' / 'VV.tif'}", "-o",
                             str(d / "pred")],
}


def _big_map(t: Path) -> Path:
    rng = np.random.default_rng(0)
    return write_class_map(t / "big.tif", rng.integers(0, 3, (400, 400)).astype(np.uint8),
                           NAMES)


@pytest.mark.parametrize("command", sorted(FULL))
def test_a_full_disk(tmp_path, full_disk, command):
    args = FULL[command](tmp_path, full_disk)
    output = _check(tmp_path, args, [])
    assert "no space left" in output.lower() or "disk" in output.lower(), output
    assert not [p for p in full_disk.rglob("*") if p.is_file()], list(full_disk.rglob("*"))
