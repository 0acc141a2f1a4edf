"""Accuracy from a confusion matrix: OA, Cohen's kappa, per-class precision/recall/F1/IoU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Scores", "confusion_matrix", "scores"]


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
    return Scores(float(oa), float(kappa), float(np.nanmean(f1[present])),
                  tuple(map(float, f1)), tuple(map(float, iou)),
                  tuple(map(float, precision)), tuple(map(float, recall)),
                  tuple(int(r) for r in rows))
