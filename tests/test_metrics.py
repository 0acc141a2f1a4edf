"""Accuracy figures against hand-computed values and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, jaccard_score

from geomm.metrics import confusion_matrix, scores


def test_hand_computed_example():
    truth = np.array([0, 0, 0, 1, 1, 2, 255])
    pred = np.array([0, 0, 1, 1, 2, 2, 0])
    cm = confusion_matrix(truth, pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    s = scores(cm)
    assert s.overall_accuracy == pytest.approx(4 / 6)
    assert s.support == (3, 2, 1)
    assert s.f1[0] == pytest.approx(0.8) and s.iou[2] == pytest.approx(0.5)


def test_matches_sklearn_on_random_maps(rng):
    truth = rng.integers(0, 5, 5000)
    pred = np.where(rng.random(5000) < 0.6, truth, rng.integers(0, 5, 5000))
    s = scores(confusion_matrix(truth, pred, 5))
    assert s.kappa == pytest.approx(cohen_kappa_score(truth, pred))
    assert s.macro_f1 == pytest.approx(f1_score(truth, pred, average="macro"))
    assert s.iou == pytest.approx(tuple(jaccard_score(truth, pred, average=None)))


def test_mask_and_out_of_range_predictions():
    truth = np.array([[0, 1], [1, 0]])
    pred = np.array([[0, 0], [1, 1]])
    cm = confusion_matrix(truth, pred, 2, mask=np.array([[True, True], [True, False]]))
    assert cm.tolist() == [[1, 0], [1, 1]]
    with pytest.raises(ValueError, match="predictions outside"):
        confusion_matrix(truth, pred + 6, 2)
    with pytest.raises(ValueError, match="empty"):
        scores(np.zeros((2, 2)))
