"""The cross-validation table: n/a for what no fold measured, no numpy warnings."""

from __future__ import annotations

import warnings

import numpy as np

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
