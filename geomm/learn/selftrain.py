"""Self-training with few labels: the first networks' most confident pixels teach more.

With a few polygons per class the training blocks hold hundreds of thousands of pixels no
label covers. The networks trained on the labels (the teacher, calibrated on the validation
labels) map those blocks; per class they predict there, the ``PSEUDO_TOP`` fraction of those
pixels they are most confident about become pseudo-labels, beside the user's labels. As many
networks again (the students) train on both, alike in every other way, and the model is the
mean of teacher and students. Only the training blocks lend pseudo-labels: the validation
labels still calibrate and the test blocks stay unseen (bench/quality.md, "Self-training").
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from geomm.learn.config import TrainConfig, members_for

__all__ = ["PSEUDO_TOP", "pseudo_labels", "self_train_for", "student_labels"]

PSEUDO_TOP = 0.2
"""Fraction of the unlabelled training pixels of each predicted class that become
pseudo-labels: the teacher's most confident."""


def self_train_for(cfg: TrainConfig, labelled_px: int) -> bool:
    """``cfg.self_train``, or where the labels fill few training steps per epoch: where
    :func:`~geomm.learn.config.members_for` sizes several networks (whatever
    ``cfg.members`` says)."""
    if cfg.self_train is not None:
        return bool(cfg.self_train)
    return members_for(replace(cfg, members=None), labelled_px) > 1


def pseudo_labels(probs: np.ndarray, where: np.ndarray, top: float = PSEUDO_TOP,
                  none: int = 255) -> np.ndarray:
    """(H, W) class ids of the ``top`` fraction of ``where``'s predicted pixels (``none``
    elsewhere) that the (K, H, W) probabilities are most confident about, per predicted
    class (so a rare class keeps its share)."""
    ok = where & np.isfinite(probs).all(axis=0) & (probs.sum(axis=0) > 0)
    pred, conf = probs.argmax(axis=0), probs.max(axis=0)
    out = np.full(pred.shape, none, np.uint8)
    for c in range(len(probs)):
        sel = ok & (pred == c)
        if sel.any():
            out[sel & (conf >= np.quantile(conf[sel], 1 - top))] = c
    return out


def student_labels(labels: np.ndarray, probs: np.ndarray, train_labels: np.ndarray,
                   train_mask: np.ndarray, n_classes: int, top: float = PSEUDO_TOP
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The students' label raster and where it may be used: the user's training labels
    (``train_labels`` of ``labels``), and inside the rest of the training blocks
    (``train_mask``) the teacher's pseudo-labels; every other pixel keeps ``labels``
    (validation and test blocks are unchanged, and unused in training)."""
    inside = train_mask & ~train_labels
    pseudo = pseudo_labels(probs, inside, top)
    out = labels.copy()
    out[inside] = pseudo[inside]
    return out, train_labels | (inside & (pseudo < n_classes))
