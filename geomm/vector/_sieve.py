"""The sieve of :mod:`geomm.vector.vectorize`: small regions merged into a large neighbour, exactly
reproducible window by window given enough context (:func:`sieve_halo`)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["sieve", "sieve_halo"]

_RING = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)  # 4-connectivity


def sieve_halo(threshold: int, passes: int) -> int:
    """Pixels of context one sieve needs around the pixels whose result must be exact."""
    return passes * max(2 * threshold - 2, 0)


def sieve(classes: np.ndarray, threshold: int, passes: int) -> np.ndarray:
    """Merge 4-connected regions of fewer than ``threshold`` pixels into a large neighbour.

    One pass relabels every small region with the class of the large region (one of at least
    ``threshold`` pixels) it shares most pixel edges with; ties go to the lowest class id. A
    small region with no large neighbour (only nodata or other small regions around it) is left
    as it is in that pass; the next pass may reach it. "No class" (-1) is never changed and
    never spreads. Every decision looks at most ``2 * threshold - 2`` pixels away, so a pixel's
    result is exact when :func:`sieve_halo` pixels of context surround it.
    """
    out = classes
    for _ in range(passes):
        labels, sizes = _regions(out)
        small = sizes < threshold
        small[0] = False
        if not small.any():
            break
        donor = _donor_classes(labels, out, small)
        fill = donor[labels]
        out = np.where(fill >= 0, fill, out).astype(classes.dtype)
    return out


def _regions(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label 4-connected regions of equal class (0 = no class) and count their pixels."""
    labels = np.zeros(classes.shape, dtype=np.int64)
    n = 0
    for value in np.unique(classes):
        if value < 0:
            continue
        lab, k = ndimage.label(classes == value, structure=_RING)
        labels[lab > 0] = lab[lab > 0] + n
        n += k
    return labels, np.bincount(labels.ravel(), minlength=n + 1)


def _donor_classes(labels: np.ndarray, classes: np.ndarray, small: np.ndarray) -> np.ndarray:
    """Per region label, the class a small region takes (-1: keeps its own)."""
    pairs = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        for this, other in ((a, b), (b, a)):
            sel = small[this] & (other > 0) & ~small[other]
            pairs.append((this[sel], other[sel]))
    region = np.concatenate([p[0] for p in pairs])
    donor = np.full(len(small), -1, dtype=np.int64)
    if region.size == 0:
        return donor
    cls_of = np.zeros(len(small), dtype=np.int64)
    cls_of[labels.ravel()] = classes.ravel()
    neighbour = cls_of[np.concatenate([p[1] for p in pairs])]
    span = int(neighbour.max()) + 1
    keys, counts = np.unique(region * span + neighbour, return_counts=True)
    reg, cls = keys // span, keys % span
    order = np.lexsort((cls, -counts, reg))  # per region: most edges first, then lowest id
    reg, cls = reg[order], cls[order]
    first = np.ones(len(reg), dtype=bool)
    first[1:] = reg[1:] != reg[:-1]
    donor[reg[first]] = cls[first]
    return donor
