"""The fusion network averaged with the random forest: scored, calibrated and saved as one
"cnn+rf" bundle.

The mean of the calibrated network's and the forest's probabilities is itself calibrated
with a temperature fitted on the validation labels. With many labels it is often better than
either model alone (bench/quality.md); with few, often worse: ``geomm train --classifier
auto`` measures all three on the validation blocks and keeps the best.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from geomm.learn.heldout import HeldOutScores, score_probs
from geomm.learn.pixelfit import PixelFit
from geomm.learn.result import TrainResult, save_cnn_bundle
from geomm.stack.store import TileStore

__all__ = ["WEIGHT", "mean_probs", "save_ensemble_bundle", "score_ensemble"]

WEIGHT = 0.5
"""The network's share of the mean."""


def mean_probs(cnn_probs: np.ndarray, rf_probs: np.ndarray, weight: float = WEIGHT
               ) -> np.ndarray:
    """``weight * cnn + (1 - weight) * rf`` of two (K, H, W) maps, 0 where either is not
    predicted."""
    both = (cnn_probs.sum(axis=0) > 0) & (rf_probs.sum(axis=0) > 0)
    return np.where(both, weight * cnn_probs + (1 - weight) * rf_probs, 0).astype(np.float32)


def score_ensemble(store: TileStore, cnn_probs: np.ndarray, fit: PixelFit
                   ) -> HeldOutScores:
    """The mean of the calibrated network's (K, H, W) probabilities and the forest's, with a
    temperature fitted on the forest's (the same split's) validation labels, scored on its
    test blocks."""
    if fit.probs is None:
        raise ValueError("the per-pixel baseline has no probabilities (an SVM)")
    held, _, _ = score_probs(store, mean_probs(cnn_probs, fit.probs), fit.val_labels,
                             fit.test_mask)
    return held


def save_ensemble_bundle(result: TrainResult, fit: PixelFit, held: HeldOutScores,
                         store: TileStore, out: Path, *, recipe_raw: dict[str, Any] | None,
                         overwrite: bool = False, extra_metrics: dict[str, Any] | None = None
                         ) -> Path:
    """Write the network and the forest as one "cnn+rf" bundle: the network's bundle with the
    forest's arrays under ``rf.``, its settings in ``config.forest`` and the mean's weight and
    temperature in ``config.ensemble``."""
    from geomm.model.bundle import FOREST_PREFIX
    from geomm.model.classical import ForestPredictor, to_predictor
    from geomm.model.forestcodec import encode_forest

    keys = {lyr.key for lyr in result.config.layers}
    if keys != {str(lyr["key"]) for lyr in store.manifest["layers"]}:
        raise ValueError("the network and the forest must read the same layers")
    forest = to_predictor(fit.model)
    if not isinstance(forest, ForestPredictor):
        raise ValueError("a cnn+rf bundle holds a random forest, not an SVM")
    arrays = {FOREST_PREFIX + k: np.asarray(v) for k, v in encode_forest(forest).items()}
    config = {"forest": {k: getattr(forest, k) for k in forest.CONFIG},
              "ensemble": {"weight": WEIGHT, "temperature": held.temperature,
                           "fitted_on": "validation blocks"}}
    # the top-level figures are the mean's; the network's own (its training and validation
    # losses, epochs, held-out scores) and the forest's are prefixed
    cnn = {**result.metrics, **(result.heldout.metrics() if result.heldout is not None else {})}
    metrics = {**{f"cnn_{k}": v for k, v in cnn.items()}, **held.metrics(),
               "rf_training_pixels": fit.n_px,
               **{f"rf_{k}": v for k, v in fit.held.metrics().items()}, **(extra_metrics or {})}
    return save_cnn_bundle(replace(result, metrics={}), store, out, recipe_raw=recipe_raw,
                           overwrite=overwrite,
                           extra_metrics=metrics, kind="cnn+rf", extra_arrays=arrays,
                           extra_config=config)
