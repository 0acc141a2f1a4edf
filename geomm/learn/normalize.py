"""Normalisation statistics and class weights, computed on the training pixels only."""

from __future__ import annotations

import math

import numpy as np

from geomm.errors import LabelError, RecipeError
from geomm.model.normstats import LayerStats, NormStats
from geomm.stack._tiles import _check_mask, _classes, _row_bands, _TileReader, _usable, layer_bands
from geomm.stack.store import TileStore

__all__ = ["class_weights", "compute_norm_stats"]


def compute_norm_stats(store: TileStore, mask: np.ndarray) -> NormStats:
    """Per-band mean/std of every layer's raw values over the valid pixels inside ``mask``.

    A coarse pixel counts when all the base pixels it covers are in ``mask``; nodata (the
    layer's ``valid`` mask) and non-finite values are left out. Streams one row of tiles.

    Raises:
        RecipeError: a bad mask, or a layer without a valid pixel inside it.
    """
    mask = _check_mask(store, mask, "mask")
    reader, step = _TileReader(store.path), math.lcm(*(store.factor(k) for k in store.layer_keys))
    out = []
    for key in store.layer_keys:
        f, nb_ = store.factor(key), len(layer_bands(store, key))
        n, mean, m2, w = 0, np.zeros(nb_), np.zeros(nb_), store.grid.width // f
        for r0, r1 in _row_bands(store, step):
            m = mask[r0:r1].reshape((r1 - r0) // f, f, -1, f).all(axis=(1, 3))
            data = reader.read(f"{key}/data", r0 // f, r1 // f, 0, w)
            sel = m & reader.read(f"{key}/valid", r0 // f, r1 // f, 0, w).astype(bool)
            if data.dtype.kind == "f":
                sel &= np.isfinite(data).all(axis=0)
            x = data[:, sel].astype(np.float64)
            nb = x.shape[1]
            if not nb:
                continue
            mb = x.mean(axis=1)
            delta, tot = mb - mean, n + nb  # Chan et al.: merge chunk moments exactly
            m2 += ((x - mb[:, None]) ** 2).sum(axis=1) + delta ** 2 * n * nb / tot
            mean += delta * nb / tot
            n = tot
        if not n:
            raise RecipeError(f"{store.path}: layer {key} has no valid pixel inside the mask; "
                              "normalisation statistics need training pixels with data")
        out.append(LayerStats(key, layer_bands(store, key), tuple(map(float, mean)),
                              tuple(map(float, np.sqrt(m2 / n))), n))
    return NormStats(tuple(out))


def class_weights(store: TileStore, mask: np.ndarray, power: float = 0.0) -> np.ndarray:
    """Inverse class frequency to ``power`` over the labelled pixels inside ``mask`` (0, the
    default as in :class:`~geomm.learn.config.TrainConfig`: every present class weighs 1;
    0.5: inverse square root; 1: inverse).

    Returns:
        (K,) float64 weights, scaled to mean 1 over those pixels; 0 for absent classes.

    Raises:
        LabelError: the store has no label raster, or no labelled pixel inside ``mask``.
    """
    mask = _check_mask(store, mask, "mask")
    reader = _TileReader(store.path)
    n_classes, _ = _classes(store, reader)
    counts = np.zeros(n_classes, dtype=np.int64)
    for r0, r1 in _row_bands(store, 1):
        labels, _, usable = _usable(reader, n_classes, r0, r1, 0, store.grid.width)
        counts += np.bincount(labels[usable & mask[r0:r1]], minlength=256)[:n_classes]
    if not counts.sum():
        raise LabelError(f"{store.path}: no labelled pixel inside the mask; class weights "
                         "need a store with pixel labels and training pixels that have them")
    w = np.where(counts > 0, np.maximum(counts, 1).astype(np.float64) ** -float(power), 0.0)
    return np.asarray(w * counts.sum() / (counts * w).sum())
