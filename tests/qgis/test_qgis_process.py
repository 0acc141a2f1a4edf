"""The plugin in real QGIS's ``qgis_process`` (Debian's QGIS 3.22, headless): the provider and
its algorithms, ``geomm:predict`` on the real sample, sample-design and evaluate, and a
geomm that is not there."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from tests.qgis.qgisrun import QGIS_PYTHON

ALGORITHMS = ["geomm:evaluate", "geomm:predict", "geomm:sample_design", "geomm:stack",
              "geomm:train", "geomm:vectorize"]

OPEN_STYLED = """
import json, os, sys
from qgis.core import QgsApplication, QgsRasterLayer
app = QgsApplication([], False)
app.initQgis()
layer = QgsRasterLayer(sys.argv[1], "classes", "gdal")  # with its default style, as QGIS opens it
r = layer.renderer()
print("GEOMM-JSON " + json.dumps({"valid": layer.isValid(), "renderer": r.type(),
      "classes": [[int(c.value), c.label, c.color.name()] for c in r.classes()]}), flush=True)
os._exit(0)
"""


def _class_table(bundle: Path) -> list[list[object]]:
    classes = json.loads((bundle / "bundle.json").read_text())["classes"]["classes"]
    return [[c["id"], c["name"], c["colour"]] for c in classes]


def test_qgis_process_lists_the_geomm_algorithms(qgis):
    run = qgis.qgis_process("list")
    assert run.returncode == 0, run.stderr
    listed = sorted(ln.split("\t")[1] for ln in run.stdout.splitlines()
                    if ln.startswith("\tgeomm:"))
    assert listed == ALGORITHMS
    helped = qgis.qgis_process("help", "geomm:train")
    assert "CLASSIFIER" in helped.stdout and "random forest (per pixel)" in helped.stdout
    assert "MAX_EPOCHS" in helped.stdout and "BUNDLED_RECIPE" in helped.stdout


def test_qgis_process_predict_writes_the_map_and_it_opens_styled(qgis, qgis_process_map,
                                                                  rf_bundle):
    run, out = qgis_process_map
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"predict {rf_bundle} s2-landcover -o {out}" in run.stdout  # the command line
    assert "0...10...20...30...40...50...60...70...80...90" in run.stdout  # its progress
    assert "...100 - done." in run.stdout
    assert f"CLASSES:\t{out / 'classes.tif'}" in run.stdout
    assert {"classes.tif", "classes.qml", "probabilities.tif", "confidence.tif",
            "item.json"} <= {p.name for p in out.iterdir()}
    opened = subprocess.run([QGIS_PYTHON, "-c", OPEN_STYLED, str(out / "classes.tif")],
                            env=qgis.env, capture_output=True, text=True, timeout=60)
    doc = json.loads(opened.stdout.split("GEOMM-JSON ")[-1])
    assert doc["valid"] and doc["renderer"] == "paletted"
    assert doc["classes"] == _class_table(rf_bundle)


def test_qgis_process_sample_design_then_evaluate(qgis, qgis_process_map, tmp_path):
    _, out = qgis_process_map
    points = tmp_path / "points.gpkg"
    design = qgis.qgis_process("run", "geomm:sample_design", f"--MAP={out / 'classes.tif'}",
                               "--N=40", "--ALLOCATION=1", f"--OUTPUT={points}")
    assert design.returncode == 0, design.stdout[-2000:] + design.stderr[-2000:]
    assert f"POINTS:\t{points}|layername=samples" in design.stdout
    with sqlite3.connect(points) as db:  # a style in the GeoPackage, or the plugin's beside it
        embedded = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'layer_styles'"
                              ).fetchone()[0]
    assert embedded or f"style: {points.with_suffix('.qml')}" in design.stdout
    assert embedded or points.with_suffix(".qml").exists()
    report = tmp_path / "report"
    evaluate = qgis.qgis_process("run", "geomm:evaluate", f"--MAP={out / 'classes.tif'}",
                                 f"--REFERENCE={points}", "--COLUMN=map_class",
                                 f"--OUTPUT={report}")
    assert evaluate.returncode == 0, evaluate.stdout[-2000:] + evaluate.stderr[-2000:]
    assert "OVERALL_ACCURACY:\t1\n" in evaluate.stdout  # the map against itself
    assert f"REPORT:\t{report / 'report.html'}" in evaluate.stdout
    assert (report / "report.html").exists()


def test_a_geomm_that_is_not_there_is_reported(qgis, rf_bundle, tmp_path):
    env = {**qgis.env, "GEOMM_EXECUTABLE": str(tmp_path / "missing" / "geomm")}
    run = qgis.qgis_process("run", "geomm:predict", f"--BUNDLE={rf_bundle}",
                            "--BUNDLED_RECIPE=s2-landcover", f"--OUTPUT={tmp_path / 'map'}",
                            env=env)
    assert run.returncode != 0
    assert f"GEOMM_EXECUTABLE={tmp_path / 'missing' / 'geomm'} is not an executable file" \
        in run.stdout + run.stderr
    assert not (tmp_path / "map").exists()
