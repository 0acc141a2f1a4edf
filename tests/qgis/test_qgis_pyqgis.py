"""The plugin as the Processing toolbox runs it (PyQGIS, QGIS's own Python, headless): outputs
loaded into the project, styled with the class names and colours, rendered to a PNG; the
command lines built from typed parameters; a cancelled run stops geomm and leaves nothing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

DOCS_PNG = Path(__file__).parents[2] / "docs" / "qgis-predict.png"


def _class_table(bundle: Path) -> list[list[object]]:
    classes = json.loads((bundle / "bundle.json").read_text())["classes"]["classes"]
    return [[c["id"], c["name"], c["colour"]] for c in classes]


def test_outputs_load_into_the_project_styled_and_render(qgis, rf_bundle, qgis_process_map,
                                                        tmp_path):
    """predict, vectorize and sample_design through ``processing.runAndLoadResults``; the
    PNG is the README's screenshot (copied to docs/ with GEOMM_WRITE_DOCS=1)."""
    png = tmp_path / "qgis-predict.png"
    _, qp_map = qgis_process_map
    doc = qgis.pyqgis("load", str(qgis.plugins), str(rf_bundle), str(tmp_path), str(png),
                      str(qp_map))
    table = _class_table(rf_bundle)
    layers = doc["project"]
    assert sorted(layers) == ["classes", "points", "polygons"]
    assert layers["classes"]["valid"] and layers["classes"]["renderer"] == "paletted"
    assert layers["classes"]["classes"] == table
    for name in ("polygons", "points"):
        assert layers[name]["valid"] and layers[name]["features"] > 0, name
        assert layers[name]["renderer"] == "categorizedSymbol", name
        assert layers[name]["classes"] == table, name
    assert layers["points"]["features"] == 60
    shot = doc["png"]
    assert shot["exported"] and png.stat().st_size > 50_000
    assert (shot["width"], shot["height"]) == (1134, 459)
    shares = {k: v / shot["sampled"] for k, v in shot["class_pixels"].items()}
    assert len(shares) == 8 and sum(shares.values()) > 0.55  # the map fills the picture
    assert shares["farm"] > 0.1 and shares["water"] > 0.02 and shares["forest"] > 0.05
    if os.environ.get("GEOMM_WRITE_DOCS") == "1":
        DOCS_PNG.parent.mkdir(exist_ok=True)
        shutil.copyfile(png, DOCS_PNG)

    w = tmp_path
    args = doc["arguments"]
    assert args["geomm:stack"] == ["stack", "s2-landcover", "--out", f"{w}/store",
                                   "--workers", "2"]
    assert args["geomm:train"] == ["train", f"{w}/my.yaml", "--classifier", "rf", "--out",
                                   f"{w}/rf", "--max-epochs", "3", "--fusion", "attention",
                                   "--modality-dropout", "0.25", "--device", "cpu",
                                   "--no-amp", "--overwrite"]
    assert args["geomm:predict"] == ["predict", str(rf_bundle), "--modality",
                                     "visible=a.tif,b.tif", "--modality", "sar=c.tif", "-o",
                                     f"{w}/m2", "--missing", "sar", "--missing", "infrared",
                                     "--probabilities", "float32", "--tile-size", "512",
                                     "--halo", "48"]
    classes = f"{w}/map/classes.tif"
    assert args["geomm:vectorize"] == ["vectorize", classes, "-o", f"{w}/p.parquet",
                                       "--min-area", "100.0", "--window", "2048"]
    assert args["geomm:evaluate"] == ["evaluate", classes, f"{w}/points.gpkg", "--column",
                                      "map_class", "--sampling", "simple", "-o",
                                      f"{w}/report"]
    assert args["geomm:sample_design"] == ["sample-design", classes, "-n", "50",
                                           "--allocation", "neyman", "--expected-ua", "0.7",
                                           "--expected-ua", "water=0.9", "--min-per-class",
                                           "0", "--seed", "0", "-o", f"{w}/s.gpkg"]


def test_cancel_stops_geomm_and_leaves_no_output(qgis, slow_rf_bundle, tmp_path):
    """Cancelled at its first progress (tiles about to stream) of a run that maps for tens
    of seconds: geomm gets SIGINT (then SIGTERM, SIGKILL), its work folder goes with it and
    the folder it made is removed. (With a forest that maps the scene in seconds, a busy
    machine let geomm finish before QGIS read its first progress line: the runner then keeps
    the complete outputs, tests/qgis/test_qgis_runner.py.)"""
    out = tmp_path / "map"
    doc = qgis.pyqgis("cancel", str(qgis.plugins), str(slow_rf_bundle), str(out))
    assert doc["pids"], doc  # geomm was running when cancelled
    assert doc["alive_after"] == []
    assert doc["ok"] and doc["results"] == {}
    assert doc["stop_seconds"] < 6
    assert any("cancelled: geomm predict was stopped" in ln for ln in doc["log"]), doc["log"]
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert not out.exists(), f"left after the cancel: {left}; log {doc['log']}"
    assert left == []  # no lock, no partial file
