"""A corpus of bad inputs against the commands: each is one ``geomm: error:`` line, exit 1,
no traceback, no partial output, and no file of the user's changed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from geomm.cli import main
from tests.synthetic import H, W, cnn_bundle, write_band, write_recipe, write_scene


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "out" not in p.parts}


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _recipe_edit(old: str, new: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        r = root / "recipe.yaml"
        r.write_text(r.read_text().replace(old, new))
    return edit


def _append(text: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        r = root / "recipe.yaml"
        r.write_text(r.read_text() + text)
    return edit


STACK_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated band": (lambda r: _truncate(r / "A.tif"), "A.tif"),
    "zero-byte band": (lambda r: (r / "A.tif").write_bytes(b""), "A.tif"),
    "text file as band": (lambda r: (r / "B.tif").write_text("not a raster"), "B.tif"),
    "missing band": (lambda r: (r / "VV.tif").unlink(), "VV.tif"),
    "all-NaN float band": (lambda r: write_band(r / "VV.tif", np.full((H // 2, W // 2), np.nan,
                                                                       np.float32), 20), "radar"),
    "all-nodata band": (lambda r: write_band(r / "A.tif", np.zeros((H, W), np.uint16), 10,
                                             nodata=0), "optical"),
    "bounds not numbers": (_append("grid:\n  crs: EPSG:32633\n  resolution: 10\n"
                                   "  bounds: [a, b, c, d]\n"), "grid.bounds"),
    "empty bounds": (_append("grid:\n  crs: EPSG:32633\n  resolution: 10\n"
                             "  bounds: [600100, 5699000, 600000, 5700000]\n"), "grid.bounds"),
    "label values reversed": (_append("labels:\n  raster: A.tif\n  values: {farm: 1}\n"),
                              "labels.values"),
    "halo not under the tile": (_append("tiling:\n  size: 64\n  halo: 64\n"), "halo"),
    "unknown recipe key": (_append("colour: red\n"), "colour"),
    "band names not a list": (_recipe_edit("bands: [VV]", "bands: VV"), "bands"),
    "grid too large": (lambda r: None, "GEOMM_MAX_PIXELS"),
}


@pytest.mark.parametrize("case", sorted(STACK_CASES))
def test_stack_bad_input(tmp_path, monkeypatch, case):
    edit, named = STACK_CASES[case]
    write_scene(tmp_path)
    write_recipe(tmp_path)
    edit(tmp_path)
    if case == "grid too large":
        monkeypatch.setenv("GEOMM_MAX_PIXELS", "1000")
    before = _hashes(tmp_path)
    out = tmp_path / "out" / "store"
    result = CliRunner().invoke(main, ["stack", str(tmp_path / "recipe.yaml"), "-o", str(out)])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("geomm: error: ")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert "Traceback" not in result.output and named in errors[0], errors[0]
    assert not out.exists() and not list((tmp_path / "out").glob(".*tmp*"))
    assert _hashes(tmp_path) == before


def test_a_band_that_shrinks_the_scene_is_named(tmp_path):
    write_scene(tmp_path)
    write_band(tmp_path / "VV.tif", np.ones((H // 4, W // 4), np.float32), 20)
    result = CliRunner().invoke(main, ["stack", str(write_recipe(tmp_path)), "-o",
                                       str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "geomm: warning: VV.tif covers less than the other bands" in result.output
    assert "extent: union" in result.output


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return cnn_bundle(tmp_path / "bundle")


def _predict(tmp_path: Path, bundle: Path, *extra: str) -> tuple[object, Path]:
    write_scene(tmp_path / "in")
    out = tmp_path / "out"
    args = ["predict", str(bundle), "--modality", f"optical={tmp_path / 'in/A.tif'},"
            f"{tmp_path / 'in/B.tif'}", "--modality", f"radar={tmp_path / 'in/VV.tif'}",
            "-o", str(out), *extra]
    return CliRunner().invoke(main, args), out


def _one_line(result) -> str:  # type: ignore[no-untyped-def]
    errors = [ln for ln in result.output.splitlines() if ln.startswith("geomm: error: ")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert "Traceback" not in result.output
    return errors[0]


def test_predict_halo_larger_than_the_tile(tmp_path, bundle_dir):
    result, out = _predict(tmp_path, bundle_dir, "--tile-size", "64", "--halo", "40")
    assert "--halo 40 does not fit --tile-size 64" in _one_line(result)
    assert not out.exists()


def test_predict_modality_with_another_band_count_says_how_to_pick_bands(tmp_path, bundle_dir):
    write_scene(tmp_path / "in")
    args = ["predict", str(bundle_dir), "--modality", f"optical={tmp_path / 'in/A.tif'}",
            "--modality", f"radar={tmp_path / 'in/VV.tif'}", "-o", str(tmp_path / "out")]
    line = _one_line(CliRunner().invoke(main, args))
    assert "--modality optical: the files hold 1 band(s)" in line and "`index:`" in line, line
    assert not (tmp_path / "out").exists()


def test_predict_modality_files_with_their_own_nodata_mask_it(tmp_path, bundle_dir):
    import rasterio

    meta = bundle_dir / "bundle.json"
    doc = json.loads(meta.read_text())
    doc["layers"][0]["nodata"] = 0  # trained from a recipe with `nodata: 0`
    meta.write_text(json.dumps(doc))
    write_scene(tmp_path / "in")
    for name in ("A", "B"):  # these files say 65535, and have a hole of it
        with rasterio.open(tmp_path / "in" / f"{name}.tif") as src:
            arr = src.read(1)
        arr[10:20, 10:30] = 65535
        write_band(tmp_path / "in" / f"{name}.tif", arr, 10, nodata=65535)
    args = ["predict", str(bundle_dir), "--modality", f"optical={tmp_path / 'in/A.tif'},"
            f"{tmp_path / 'in/B.tif'}", "--modality", f"radar={tmp_path / 'in/VV.tif'}",
            "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "the files declare nodata 65535, the model was trained with nodata 0" in \
        result.output
    with rasterio.open(tmp_path / "out" / "classes.tif") as src:
        classes = src.read(1)
        assert (classes[10:20, 10:30] == src.nodata).all()
        assert (classes != src.nodata).sum() == classes.size - 200


def test_predict_with_a_bad_temperature_or_no_cuda_is_one_line(tmp_path, bundle_dir):
    import torch

    meta = bundle_dir / "bundle.json"
    doc = json.loads(meta.read_text())
    doc["config"]["calibration"] = {"temperature": "hot"}
    meta.write_text(json.dumps(doc))
    result, out = _predict(tmp_path, bundle_dir)
    assert "config.calibration.temperature is 'hot', not a positive number" in _one_line(result)
    assert not out.exists()
    if not torch.cuda.is_available():
        doc["config"]["calibration"] = {"temperature": 1.5}
        meta.write_text(json.dumps(doc))
        result, out = _predict(tmp_path, bundle_dir, "--device", "cuda")
        assert "--device cuda: torch sees no CUDA device" in _one_line(result)
        assert not out.exists()


def test_predict_with_a_class_table_shorter_than_the_outputs(tmp_path, bundle_dir):
    meta = bundle_dir / "bundle.json"
    doc = json.loads(meta.read_text())
    doc["classes"]["classes"] = doc["classes"]["classes"][:2]
    meta.write_text(json.dumps(doc))
    result, out = _predict(tmp_path, bundle_dir)
    line = _one_line(result)
    assert "bundle.json" in line or "class table" in line, line
    assert not out.exists()


def test_predict_uint8_inputs_with_a_uint16_model(tmp_path, bundle_dir):
    write_scene(tmp_path / "in")
    for name in ("A", "B"):
        write_band(tmp_path / "in" / f"{name}.tif", np.full((H, W), 100, np.uint8), 10)
    out = tmp_path / "out"
    args = ["predict", str(bundle_dir), "--modality", f"optical={tmp_path / 'in/A.tif'},"
            f"{tmp_path / 'in/B.tif'}", "--modality", f"radar={tmp_path / 'in/VV.tif'}",
            "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert "holds uint8 values but the model was trained on uint16" in _one_line(result)
    assert not out.exists()


@pytest.mark.parametrize("scale", [1e-4, 100.0])
def test_predict_inputs_in_other_units_than_the_model(tmp_path, bundle_dir, scale):
    """Reflectance 0-1 (or x100) given to a model of 0-10000 reflectance: refused, named."""
    bands = write_scene(tmp_path / "in")
    for name in ("a", "b"):
        with rasterio.open(bands[name]) as src:
            arr = src.read(1).astype(np.float32) * np.float32(scale)
        write_band(bands[name], arr, 10)
    out = tmp_path / "out"
    args = ["predict", str(bundle_dir), "--modality", f"optical={bands['a']},{bands['b']}",
            "--modality", f"radar={bands['r']}", "-o", str(out)]
    line = _one_line(CliRunner().invoke(main, args))
    assert "band 'A' of layer 'optical/10m'" in line and "other units" in line, line
    assert not out.exists()


def test_predict_inputs_of_another_season_are_not_refused(tmp_path, bundle_dir):
    bands = write_scene(tmp_path / "in")
    with rasterio.open(bands["a"]) as src:
        arr = (src.read(1) * 2.5).astype(np.uint16)  # a brighter scene, same units
    write_band(bands["a"], arr, 10)
    args = ["predict", str(bundle_dir), "--modality", f"optical={bands['a']},{bands['b']}",
            "--modality", f"radar={bands['r']}", "-o", str(tmp_path / "out"), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


def _vectorize(tmp_path: Path, raster: Path) -> tuple[object, Path]:
    out = tmp_path / "map.gpkg"
    return CliRunner().invoke(main, ["vectorize", str(raster), "-o", str(out)]), out


def test_vectorize_a_confidence_raster(tmp_path, make_raster):
    rng = np.random.default_rng(0)
    path = make_raster("confidence.tif", rng.integers(0, 255, (64, 64), dtype=np.uint8),
                       descriptions=("confidence",))
    result, out = _vectorize(tmp_path, path)
    assert "'confidence', not class ids" in _one_line(result)
    assert not out.exists()


def test_vectorize_a_continuous_raster_without_class_names(tmp_path, make_raster):
    rng = np.random.default_rng(0)
    path = make_raster("dem.tif", rng.integers(0, 3000, (64, 64), dtype=np.uint16))
    result, out = _vectorize(tmp_path, path)
    assert "continuous raster" in _one_line(result)
    assert not out.exists()


def test_vectorize_into_a_path_under_a_file(tmp_path, make_raster):
    path = make_raster("classes.tif", np.ones((32, 32), np.uint8))
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    result = CliRunner().invoke(main, ["vectorize", str(path), "-o", str(afile / "map.gpkg")])
    assert "notes.txt" in _one_line(result)
    assert afile.read_text() == "mine"


def test_a_truncated_tiled_jpeg2000_is_one_line_on_the_real_stderr(tmp_path):
    """GDAL's own "ERROR 1: ..." lines (written by C code to fd 2, from every reading thread)
    must not reach the terminal: the whole of stderr is one geomm line."""
    import subprocess
    import sys

    import rasterio
    from rasterio.transform import Affine

    y, x = np.mgrid[0:1024, 0:1024]
    arr = (1000 + 500 * np.sin(x / 17) * np.cos(y / 23)).astype(np.uint16)[None]
    for name in ("A", "B"):
        with rasterio.open(tmp_path / f"{name}.jp2", "w", driver="JP2OpenJPEG", width=1024,
                           height=1024, count=1, dtype="uint16", crs="EPSG:32633",
                           transform=Affine(10, 0, 600000, 0, -10, 5700000), QUALITY=100,
                           REVERSIBLE="YES", BLOCKXSIZE=256, BLOCKYSIZE=256) as dst:
            dst.write(arr)
    data = (tmp_path / "A.jp2").read_bytes()
    (tmp_path / "A.jp2").write_bytes(data[: int(len(data) * 0.6)])
    (tmp_path / "r.yaml").write_text("name: jp\ndata_root: .\nmodalities:\n  optical:\n"
                                     "    file: '{band}.jp2'\n    bands: [A, B]\n")
    proc = subprocess.run([sys.executable, "-m", "geomm.cli", "stack", str(tmp_path / "r.yaml"),
                           "-o", str(tmp_path / "out")], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1],
                          env={k: v for k, v in __import__("os").environ.items()
                               if k != "CPL_LOG"})
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("geomm: error: ") and "A.jp2" in lines[0]
    assert not (tmp_path / "out").exists()


def _labelled(root: Path, labels: np.ndarray) -> Path:
    write_scene(root)
    write_band(root / "L.tif", labels.astype(np.uint8), 10, nodata=0)
    recipe = write_recipe(root)
    recipe.write_text(recipe.read_text()
                      + "labels:\n  raster: L.tif\n  values: {1: crop, 2: forest}\n")
    return recipe


@pytest.mark.parametrize("case", ["truncated band", "no label in the scene"])
def test_train_bad_input(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)  # the store goes to tiles/<name> under the working folder
    y, x = np.mgrid[0:H, 0:W]
    labels = np.zeros((H, W)) if case == "no label in the scene" else 1 + (x > W // 2)
    recipe = _labelled(tmp_path, labels)
    if case == "truncated band":
        data = (tmp_path / "B.tif").read_bytes()
        (tmp_path / "B.tif").write_bytes(data[: len(data) // 2])
    before = _hashes(tmp_path)
    out = tmp_path / "out" / "model"
    (tmp_path / "tiles").mkdir()
    result = CliRunner().invoke(main, ["train", str(recipe), "--out", str(out),
                                       "--max-epochs", "1"])
    line = _one_line(result)
    assert ("B.tif" if case == "truncated band" else "no label") in line, line
    assert not out.exists()
    after = {k: v for k, v in _hashes(tmp_path).items() if not k.startswith("tiles/")}
    assert after == before  # (the store of a scene without labels is a valid store)
