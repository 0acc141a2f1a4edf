"""Accuracy from a confusion matrix: OA, Cohen's kappa, per-class precision/recall/F1/IoU.

The one implementation of these figures in geomm: training, cross-validation and
``geomm evaluate`` all score through :func:`confusion_matrix` and :func:`scores`.

Conventions (scikit-learn's with ``zero_division=0`` wherever a value is defined): a class
never predicted has precision 0; a class absent from the reference has recall NaN (undefined,
not zero), and F1 and IoU NaN too when it is never predicted either. Macro averages are taken
over the classes present in the reference; weighted averages weight each class by its
reference support, so classes absent from the reference weigh nothing either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Averages", "Scores", "confusion_matrix", "scores"]


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, n_classes: int, *,
                     ignore_value: int | None = 255,
                     mask: np.ndarray | None = None) -> np.ndarray:
    """Count (truth, prediction) pairs: rows are reference classes, columns predictions.

    Pixels whose truth is ``ignore_value`` or outside ``mask`` are left out.

    Raises:
        ValueError: a reference label or a prediction outside ``0..n_classes-1``.
    """
    t = np.asarray(truth).ravel()
    p = np.asarray(pred).ravel()
    keep = np.ones(t.shape, dtype=bool)
    if ignore_value is not None:
        keep &= t != ignore_value
    if mask is not None:
        keep &= np.asarray(mask, dtype=bool).ravel()
    t, p = t[keep].astype(np.int64), p[keep].astype(np.int64)
    for what, v in (("reference labels", t), ("predictions", p)):
        if v.size and (v.min() < 0 or v.max() >= n_classes):
            raise ValueError(f"{what} outside 0..{n_classes - 1}: {np.unique(v)[:10]}")
    return np.bincount(t * n_classes + p, minlength=n_classes**2).reshape(n_classes, n_classes)


@dataclass(frozen=True)
class Averages:
    """Precision, recall, F1 and IoU averaged over classes one way (macro or weighted)."""

    precision: float
    """Average user's accuracy."""
    recall: float
    """Average producer's accuracy."""
    f1: float
    """Average F1."""
    iou: float
    """Average intersection over union."""


@dataclass(frozen=True)
class Scores:
    """Accuracy figures of one confusion matrix."""

    overall_accuracy: float
    """Share of reference pixels classified correctly."""
    kappa: float
    """Cohen's kappa: agreement beyond chance."""
    macro_f1: float
    """Mean F1 over the classes present in the reference."""
    f1: tuple[float, ...]
    """Per-class F1 (NaN for a class absent from reference and predictions)."""
    iou: tuple[float, ...]
    """Per-class intersection over union."""
    precision: tuple[float, ...]
    """Per-class user's accuracy."""
    recall: tuple[float, ...]
    """Per-class producer's accuracy."""
    support: tuple[int, ...]
    """Reference pixels per class."""
    macro: Averages = Averages(float("nan"), float("nan"), float("nan"), float("nan"))
    """Unweighted means over the classes present in the reference."""
    weighted: Averages = Averages(float("nan"), float("nan"), float("nan"), float("nan"))
    """Means weighted by reference support (scikit-learn's ``average="weighted"``)."""

    def to_dict(self, names: Sequence[str]) -> dict[str, Any]:
        """JSON-able figures, per class keyed by ``names`` (NaN becomes ``None``)."""
        per_class = {n: {"precision": _num(self.precision[i]), "recall": _num(self.recall[i]),
                         "f1": _num(self.f1[i]), "iou": _num(self.iou[i]),
                         "support": self.support[i]}
                     for i, n in enumerate(names)}
        return {"overall_accuracy": _num(self.overall_accuracy), "kappa": _num(self.kappa),
                "macro": {k: _num(v) for k, v in asdict(self.macro).items()},
                "weighted": {k: _num(v) for k, v in asdict(self.weighted).items()},
                "per_class": per_class}

    def table(self, names: Sequence[str]) -> str:
        """Per-class lines for people."""
        lines = [f"{'class':<16} {'F1':>6} {'IoU':>6} {'prec':>6} {'recall':>6} {'pixels':>9}"]
        for i, n in enumerate(names):
            lines.append(f"{n:<16} {self.f1[i]:6.3f} {self.iou[i]:6.3f} "
                         f"{self.precision[i]:6.3f} {self.recall[i]:6.3f} {self.support[i]:9d}")
        return "\n".join(lines)


def scores(cm: np.ndarray) -> Scores:
    """OA, kappa, macro-F1 and per-class figures from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    if total == 0:
        raise ValueError("empty confusion matrix: no reference pixels were scored")
    diag = np.diag(cm)
    rows, cols = cm.sum(axis=1), cm.sum(axis=0)
    oa = diag.sum() / total
    pe = (rows * cols).sum() / total**2
    kappa = (oa - pe) / (1 - pe) if pe < 1 else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(cols > 0, diag / cols, 0.0)
        recall = np.where(rows > 0, diag / rows, np.nan)
        f1 = np.where(rows + cols > 0, 2 * diag / (rows + cols), np.nan)
        iou = np.where(rows + cols - diag > 0, diag / (rows + cols - diag), np.nan)
    present = rows > 0
    weights = rows / total
    macro = Averages(*(float(np.mean(v[present])) for v in (precision, recall, f1, iou)))
    weighted = Averages(*(float(np.sum(v[present] * weights[present]))
                          for v in (precision, recall, f1, iou)))
    return Scores(float(oa), float(kappa), macro.f1,
                  tuple(map(float, f1)), tuple(map(float, iou)),
                  tuple(map(float, precision)), tuple(map(float, recall)),
                  tuple(int(r) for r in rows), macro, weighted)


def _num(v: float) -> float | None:
    """``v``, or ``None`` where it is NaN (JSON has no NaN)."""
    return None if v != v else float(v)
