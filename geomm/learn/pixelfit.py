"""The per-pixel baselines (random forest, SVM) fitted and scored on a fold's split.

They use the same spatial blocks and label masks as the network (no torch, no Lightning).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from geomm.learn.config import TrainConfig, train_config_dict
from geomm.learn.heldout import HeldOutScores, score_map
from geomm.learn.masks import eroded_label_masks, split_masks
from geomm.learn.split import SpatialSplit
from geomm.stack.store import TileStore

__all__ = ["PixelFit", "fit_pixel_classifier", "save_pixel_fit"]


@dataclass(frozen=True)
class PixelFit:
    """A per-pixel baseline fitted on a split's training labels, and its scores."""

    model: Any
    """The fitted scikit-learn estimator."""
    n_px: int
    """Training pixels."""
    split: SpatialSplit
    """The spatial split."""
    held: HeldOutScores
    """Scores on the validation labels and the test blocks (not calibrated: T = 1)."""
    probs: np.ndarray | None
    """(K, H, W) class probabilities on the validation labels and test blocks (random
    forest; None for the SVM, which has no probabilities)."""
    val_labels: np.ndarray
    """Base-resolution mask of the validation labels it was scored on."""
    test_mask: np.ndarray
    """Base-resolution mask of the test blocks it was scored on."""
    erode_labels: int = 0
    """The erosion radius applied to its training labels (``cfg.erode_labels`` resolved)."""


def fit_pixel_classifier(store: TileStore, cfg: TrainConfig, kind: str) -> PixelFit:
    """Fit the per-pixel baseline on the training labels of ``cfg``'s split; score it on the
    validation labels and the test blocks (its probabilities are not calibrated: T = 1)."""
    from geomm.learn.baseline import (
        fit_classifier,
        pixel_features,
        predict_pixels,
        predict_proba_map,
        sample_training_pixels,
    )

    train_mask, val_mask, test_mask, split = split_masks(store, cfg)
    train_labels, val_labels, radius = eroded_label_masks(store, cfg, train_mask, val_mask)
    px = sample_training_pixels(store, train_labels, seed=cfg.seed)
    X, _ = pixel_features(store, rows_cols=(px.rows, px.cols))
    model = fit_classifier(kind, X, px.labels, seed=cfg.seed)
    probs = None
    if hasattr(model, "predict_proba"):
        probs = predict_proba_map(model, store, val_labels | test_mask)
        pred = probs.argmax(axis=0).astype(np.uint8)  # = model.predict, without a 2nd pass
        pred[~(probs.sum(axis=0) > 0)] = store.ignore_value
    else:
        pred = predict_pixels(model, store, val_labels | test_mask)
    nan = (float("nan"), float("nan"))
    held = HeldOutScores(score_map(store, pred, test_mask), score_map(store, pred, val_labels),
                         1.0, nan, nan)
    return PixelFit(model, int(len(px.labels)), split, held, probs, val_labels, test_mask,
                    radius)


def save_pixel_fit(out: Path, fit: PixelFit, store: TileStore, raw: dict[str, Any],
                   overwrite: bool, extra: dict[str, Any] | None = None,
                   cfg: TrainConfig | None = None) -> Path:
    """Write a fitted baseline as an "rf" or "svm" bundle with its held-out scores (and the
    settings ``cfg`` it was trained with: split, label budget, erosion, seed)."""
    from geomm.learn.baseline import save_classifier

    metrics = {"training_pixels": fit.n_px, **fit.held.metrics(), **(extra or {})}
    return save_classifier(out, fit.model, store, split=fit.split.to_dict(), metrics=metrics,
                           recipe_raw=raw, overwrite=overwrite,
                           training=None if cfg is None else train_config_dict(
                               replace(cfg, erode_labels=fit.erode_labels)))
