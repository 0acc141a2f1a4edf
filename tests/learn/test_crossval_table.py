"""The cross-validation table: n/a for what no fold measured, no numpy warnings; the same
results as JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import warnings

import numpy as np
import pytest

from geomm.learn.crossval import CrossvalReport, FoldScore
from geomm.metrics import confusion_matrix, scores


def test_a_class_absent_from_every_test_fold_reads_n_a_without_warnings():
    s = scores(confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 3))  # class 2 absent
    report = CrossvalReport((FoldScore("cnn", 0, s, 10.0, {"ece": 0.03}),
                             FoldScore("cnn", 1, s, 12.0, {"ece": 0.05}),
                             FoldScore("rf", 0, s, 2.0), FoldScore("rf", 1, s, 2.0)),
                            ("water", "forest", "wetland"), {0: ("wetland",), 1: ()})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Mean of empty slice" would fail here
        table = report.table()
    cnn, rf = (line for line in table.splitlines() if line.startswith(("| cnn", "| rf")))
    assert cnn.split(" | ")[-3] == "n/a"  # wetland F1
    assert cnn.split(" | ")[-2] == "0.040 ± 0.010"  # ECE of the network
    assert rf.split(" | ")[-2] == "n/a"  # no calibration error for the forest
    assert "fold 0: wetland absent from the training labels" in table
    assert "fold 1:" not in table


def _two_folds() -> CrossvalReport:
    both = scores(confusion_matrix(np.array([0, 1, 2]), np.array([0, 1, 1]), 3))
    no_wetland = scores(confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 3))
    return CrossvalReport((FoldScore("cnn", 0, both, 10.0, {"ece": 0.03}),
                           FoldScore("cnn", 1, no_wetland, 12.0, {"ece": 0.05}),
                           FoldScore("auto", 0, both, 12.0, {"val_oa": 0.5, "chose": 2.0})),
                          ("water", "forest", "wetland"), {0: (), 1: ("wetland",)})


def test_a_class_scored_on_fewer_folds_than_its_row_says_so():
    cnn = next(line for line in _two_folds().table().splitlines() if line.startswith("| cnn"))
    cells = cnn.split(" | ")
    assert cells[1] == "2"  # the row's folds
    assert cells[-3] == "0.00 ± 0.00 (1 of 2 folds)"  # wetland: only fold 0 had it
    assert "of 2 folds" not in cells[-4]  # forest: both folds


def test_json_and_csv_hold_every_method_on_every_fold(tmp_path):
    report = _two_folds()
    doc = json.loads(json.dumps(report.to_dict(), allow_nan=False))  # NaN is null
    assert doc["classes"] == ["water", "forest", "wetland"]
    assert doc["absent_from_training"] == {"0": [], "1": ["wetland"]}
    cnn1 = next(r for r in doc["results"] if r["method"] == "cnn" and r["fold"] == 1)
    assert cnn1["ece"] == 0.05 and cnn1["seconds"] == 12.0
    assert cnn1["scores"]["per_class"]["wetland"]["f1"] is None
    assert cnn1["scores"]["overall_accuracy"] == 2 / 3
    auto = next(r for r in doc["results"] if r["method"] == "auto")
    assert auto["chose_method"] == "cnn+rf"
    rows = list(csv.DictReader(io.StringIO(report.csv())))
    assert [(r["method"], r["fold"]) for r in rows] == [("cnn", "0"), ("cnn", "1"),
                                                         ("auto", "0")]
    assert rows[1]["f1:wetland"] == ""
    assert float(rows[1]["overall_accuracy"]) == pytest.approx(2 / 3)
    assert rows[0]["ece"] == "0.03" and rows[2]["ece"] == "" and rows[2]["chose"] == "2"
    report.write(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crossval.csv", "crossval.json",
                                                          "crossval.md"]
    assert (tmp_path / "crossval.md").read_text() == report.table() + "\n"
