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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_figure_equals_sklearn_on_random_labels(seed):
    """OA, kappa, per-class P/R/F1/IoU and macro/weighted averages, with one class never
    predicted and one absent from the reference (scikit-learn's zero_division=0 where it
    gives a number; geomm's NaN where the figure is undefined)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    rng = np.random.default_rng(seed)
    k, n = 7, 3000
    truth = rng.integers(0, 6, n)                       # class 6 never in the reference
    pred = np.where(rng.random(n) < 0.55, truth, rng.integers(0, 7, n))
    pred[pred == 2] = 3                                 # class 2 never predicted
    s = scores(confusion_matrix(truth, pred, k))
    labels = list(range(k))
    assert s.overall_accuracy == pytest.approx(accuracy_score(truth, pred))
    assert s.kappa == pytest.approx(cohen_kappa_score(truth, pred, labels=labels))
    p, r, f, support = precision_recall_fscore_support(truth, pred, labels=labels,
                                                       zero_division=0)
    iou = jaccard_score(truth, pred, labels=labels, average=None, zero_division=0)
    assert s.precision == pytest.approx(tuple(p))
    assert s.support == tuple(support)
    present = support > 0
    assert np.array(s.recall)[present] == pytest.approx(r[present])
    assert np.isnan(s.recall[6])                        # undefined, not 0
    assert s.f1 == pytest.approx(tuple(f)) and s.iou == pytest.approx(tuple(iou))
    ref_labels = [c for c in labels if present[c]]
    for average, got in (("macro", s.macro), ("weighted", s.weighted)):
        want = precision_recall_fscore_support(truth, pred, labels=ref_labels,
                                               average=average, zero_division=0)
        want_iou = jaccard_score(truth, pred, labels=ref_labels, average=average,
                                 zero_division=0)
        assert (got.precision, got.recall, got.f1, got.iou) == pytest.approx(
            (*want[:3], want_iou))
    assert s.macro_f1 == s.macro.f1


def test_scores_to_json_writes_nan_as_null():
    s = scores(confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 3))
    d = s.to_dict(["a", "b", "c"])
    assert d["per_class"]["c"]["recall"] is None and d["per_class"]["c"]["f1"] is None
    assert d["per_class"]["a"]["precision"] == 1.0 and d["macro"]["f1"] == pytest.approx(
        (2 / 3 + 2 / 3) / 2)
