"""How good a trained network is on pixels it never trained on, with calibrated confidence.

The whole store is mapped through the same tiled loop as ``geomm predict``; the temperature
is fitted on the validation labels and the test blocks are scored with it: OA, kappa,
macro-F1, and the expected calibration error before and after.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geomm.metrics import Scores, confusion_matrix, scores
from geomm.model.calibrate import expected_calibration_error, fit_temperature, temper
from geomm.model.members import Network
from geomm.model.normstats import NormStats
from geomm.stack.store import TileStore

__all__ = ["HeldOutScores", "score_map", "score_network_probs", "score_probs"]


@dataclass(frozen=True)
class HeldOutScores:
    """Scores of one model on the validation and test blocks."""

    test: Scores
    """Accuracy on the test blocks."""
    val: Scores | None
    """Accuracy on the validation labels (None without any)."""
    temperature: float
    """Fitted on the validation labels (1.0 without any)."""
    ece_test: tuple[float, float]
    """Expected calibration error on the test blocks, before and after the temperature."""
    ece_val: tuple[float, float]
    """The same on the validation labels."""

    def metrics(self) -> dict[str, float]:
        """Flat figures for a bundle's ``metrics`` (calibration figures only when measured)."""
        out = {"test_oa": self.test.overall_accuracy, "test_kappa": self.test.kappa,
               "test_macro_f1": self.test.macro_f1}
        if self.calibrated:
            out.update(temperature=self.temperature, test_ece_before=self.ece_test[0],
                       test_ece=self.ece_test[1], val_ece_before=self.ece_val[0],
                       val_ece=self.ece_val[1])
        if self.val is not None:
            out.update(heldout_val_oa=self.val.overall_accuracy, heldout_val_kappa=self.val.kappa,
                       heldout_val_macro_f1=self.val.macro_f1)
        return {k: float(v) for k, v in out.items()}

    @property
    def val_oa(self) -> float:
        """OA on the validation labels (-inf without any: never the better model)."""
        return self.val.overall_accuracy if self.val is not None else float("-inf")

    @property
    def calibrated(self) -> bool:
        """Whether calibration errors were measured (networks; not the per-pixel baselines)."""
        return bool(np.isfinite(self.ece_test[0]))

    def describe(self) -> str:
        """One line for the user."""
        t = self.test
        line = (f"held-out test blocks: OA {100 * t.overall_accuracy:.1f} %, "
                f"kappa {t.kappa:.3f}, macro-F1 {t.macro_f1:.3f}")
        if self.calibrated:
            line += (f"; calibration error {self.ece_test[0]:.3f} -> {self.ece_test[1]:.3f} "
                     f"(temperature {self.temperature:.2f})")
        return line


def score_map(store: TileStore, pred: np.ndarray, mask: np.ndarray) -> Scores:
    """Scores of a class map against the store's labels inside ``mask``."""
    ignore = store.ignore_value
    k = len(store.manifest["classes"]["classes"])
    return scores(confusion_matrix(store.labels(), pred, k, ignore_value=ignore,
                                   mask=mask & (pred != ignore)))


def _pixels(store: TileStore, probs: np.ndarray, mask: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    labels = store.labels()
    sel = (mask & (labels != store.ignore_value) & np.isfinite(probs).all(axis=0)
           & (probs.sum(axis=0) > 0))
    return probs[:, sel].T, labels[sel].astype(np.int64)


def score_network_probs(model: Network, store: TileStore, stats: NormStats,
                        val_labels: np.ndarray | None, test_mask: np.ndarray
                        ) -> tuple[HeldOutScores, np.ndarray, np.ndarray]:
    """Map the store, fit the temperature on ``val_labels`` and score the test blocks.

    Returns:
        The scores, the (H, W) class map and the calibrated (K, H, W) probabilities.
    """
    from geomm.predict.infer import predict_store

    pred, probs = predict_store(model, store, stats)
    probs[:, pred == store.ignore_value] = 0  # inputs without data: not predicted
    return score_probs(store, probs, val_labels, test_mask)


def score_probs(store: TileStore, probs: np.ndarray, val_labels: np.ndarray | None,
                test_mask: np.ndarray) -> tuple[HeldOutScores, np.ndarray, np.ndarray]:
    """Score (K, H, W) class probabilities (0 where not predicted): fit a temperature on
    ``val_labels``, score the class map on them and on ``test_mask``.

    Returns:
        The scores, the class map (the ignore value where nothing was predicted) and the
        probabilities with the temperature applied.
    """
    pred = probs.argmax(axis=0).astype(np.uint8)
    pred[~(probs.sum(axis=0) > 0)] = store.ignore_value
    pv, yv = (_pixels(store, probs, val_labels) if val_labels is not None
              else (np.zeros((0, probs.shape[0]), np.float32), np.zeros(0, np.int64)))
    t = fit_temperature(pv, yv) if len(yv) else 1.0
    pt, yt = _pixels(store, probs, test_mask)
    ece_test = (expected_calibration_error(pt, yt), expected_calibration_error(temper(pt, t), yt))
    ece_val = (expected_calibration_error(pv, yv), expected_calibration_error(temper(pv, t), yv))
    val = score_map(store, pred, val_labels) if val_labels is not None else None
    held = HeldOutScores(score_map(store, pred, test_mask), val, t, ece_test, ece_val)
    tempered = probs if t == 1.0 else temper(probs, t, axis=0)
    tempered[:, pred == store.ignore_value] = 0
    return held, pred, tempered
