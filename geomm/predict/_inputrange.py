"""Inputs in other units than the model was trained on (reflectance 0-1 given to a model of
0-10000 reflectance, decibels given to a model of linear backscatter): refused before any tile
runs, by comparing a few windows of each band with the training statistics the bundle keeps."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from geomm.model.bundle import Bundle, BundleMismatchError
from geomm.model.normstats import NormStats

__all__ = ["MAX_SCALE_RATIO", "check_value_range"]

MAX_SCALE_RATIO = 50.0
"""A band whose values' root mean square differs from the training pixels' by more than this
factor (either way) is in other units. Another season or sensor moves it by 2-3x at most."""
_WINDOW = 256
"""Side of each sampled window, in the layer's own pixels."""


def check_value_range(bundle: Bundle, st: Any) -> None:
    """Compare five windows (centre and quadrant centres) of each input layer the bundle has
    statistics for with those statistics.

    Raises:
        BundleMismatchError: names the band, the two scales and what to do.
    """
    if not bundle.meta.normalisation:  # classical bundles keep no training statistics
        return
    stats = {s.key: s for s in NormStats.from_dict(bundle.meta.normalisation).layers}
    for key, lyr in st.layers.items():
        want = stats.get(key)
        if want is None:
            continue
        sample = _sample(lyr)
        if sample is None:
            continue
        for i, band in enumerate(want.bands):
            values = sample[i]
            if not len(values):
                continue
            trained = math.hypot(want.mean[i], want.std[i])
            given = float(np.sqrt(np.mean(np.square(values, dtype=np.float64))))
            if trained <= 0 or given <= 0:
                continue
            ratio = given / trained
            if not 1 / MAX_SCALE_RATIO <= ratio <= MAX_SCALE_RATIO:
                raise BundleMismatchError(
                    f"{bundle.path}: band {band!r} of layer {key!r}: the inputs' values are "
                    f"about {given:.3g} (root mean square) but the model was trained on values "
                    f"about {trained:.3g}, {ratio:.3g}x; the inputs are in other units or "
                    "scaling (reflectance 0-1 against 0-10000? dB against linear?): convert "
                    "them to what the model was trained on")


def _sample(lyr: Any) -> list[np.ndarray] | None:
    """Per band, the valid values of five windows of the layer (None: nothing valid)."""
    _, h, w = lyr.data.shape
    n = min(_WINDOW, h, w)
    corners = {(max(0, min(h - n, int(fy * h) - n // 2)), max(0, min(w - n, int(fx * w) - n // 2)))
               for fy, fx in ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75))}
    reads = [lyr.reader.read(r, r + n, c, c + n) for r, c in sorted(corners)]
    bands = []
    for b in range(lyr.data.shape[0]):
        vals = [x[b][x[-1].astype(bool) & np.isfinite(x[b].astype(np.float64))] for x in reads]
        bands.append(np.concatenate(vals))
    return bands if any(len(v) for v in bands) else None
