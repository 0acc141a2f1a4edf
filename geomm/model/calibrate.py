"""Confidence that means what it says: temperature scaling and the expected calibration error.

A network trained to a low loss on few labels is over-confident: of the pixels it calls 95 %
sure, far fewer than 95 % are right. Temperature scaling (Guo et al. 2017) divides the logits
by one number ``T`` fitted on held-out (validation) pixels by minimising their negative log
likelihood; the class map does not change, the probabilities and ``confidence.tif`` do. On
blended probabilities ``softmax(log p / T)`` is the same operation (log-softmax differs from
the logits by a per-pixel constant).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

__all__ = ["expected_calibration_error", "fit_temperature", "temper"]

_EPS = 1e-7


def temper(probs: np.ndarray, temperature: float, *, axis: int = -1) -> np.ndarray:
    """Probabilities re-scaled by ``temperature``: ``softmax(log(probs) / T)`` along ``axis``."""
    logp = np.log(np.clip(probs, _EPS, 1.0)) / float(temperature)
    logp -= logp.max(axis=axis, keepdims=True)
    out = np.exp(logp)
    return np.asarray(out / out.sum(axis=axis, keepdims=True), dtype=np.float32)


def _nll(probs: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = temper(probs, temperature)
    return float(-np.log(np.clip(p[np.arange(len(labels)), labels], _EPS, 1.0)).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray, *, max_pixels: int = 200_000,
                    seed: int = 0) -> float:
    """The temperature that minimises the NLL of ``labels`` under ``probs`` (N, K).

    Args:
        probs: (N, K) class probabilities of held-out pixels.
        labels: (N,) their reference class ids.
        max_pixels: fit on at most this many pixels (a seeded random subset).
        seed: seed of that subset.

    Returns:
        ``T`` in [0.05, 20]; 1.0 when there are no pixels.
    """
    if len(labels) == 0:
        return 1.0
    if len(labels) > max_pixels:
        pick = np.random.default_rng(seed).choice(len(labels), max_pixels, replace=False)
        probs, labels = probs[pick], labels[pick]
    res = minimize_scalar(lambda lt: _nll(probs, labels, float(np.exp(lt))),
                          bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                          options={"xatol": 1e-3})
    return float(np.exp(res.x))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, *, bins: int = 15
                               ) -> float:
    """ECE: the pixel-weighted mean gap between confidence and accuracy over ``bins`` equal-width
    confidence bins (Naeini et al. 2015); NaN without pixels."""
    if len(labels) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    idx = np.minimum((conf * bins).astype(np.int64), bins - 1)
    n = np.bincount(idx, minlength=bins)
    gap = np.abs(np.bincount(idx, weights=right, minlength=bins)
                 - np.bincount(idx, weights=conf, minlength=bins))
    return float(gap.sum() / n.sum())
