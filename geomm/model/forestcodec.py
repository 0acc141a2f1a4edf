"""A random forest in a few narrow arrays: what an "rf" bundle stores (exact, ~8x smaller).

:class:`~geomm.model.classical.ForestPredictor` keeps, for every node, int32 children,
feature and leaf row, a float64 threshold and, for every leaf, a float64 probability row:
about 56 bytes a node. A fully grown forest of the sample scene has millions of nodes. The
bundle stores instead:

- ``node_kind``: one bit per node (split or leaf), packed;
- per split node: the right child's tree-local id (``split_right``, the narrowest unsigned
  integer that holds it; the left child is the next node, as scikit-learn's depth-first
  builder numbers them, else ``split_left`` is stored too), the feature (``split_feature``,
  uint8/uint16) and the threshold as float32 (``split_threshold``): the largest float32 not
  above scikit-learn's float64 threshold, so ``x > t`` gives the same answer for every float32
  ``x`` (the predictor compares float32 features, as scikit-learn does);
- per leaf: its class when the leaf is pure (``leaf_class``, uint8/uint16; the largest value
  marks a mixed leaf) and the float64 probability rows of the mixed leaves (``leaf_mixed``).

Decoding rebuilds the predictor's arrays bit for bit, so predictions are identical.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from geomm.model.classical import ForestPredictor

__all__ = ["COMPACT_ARRAYS", "decode_forest", "encode_forest", "is_compact"]

COMPACT_ARRAYS = ("node_kind", "split_right", "split_feature", "split_threshold",
                  "leaf_class", "leaf_mixed", "roots", "classes")
"""The arrays of a compact forest (``split_left`` too when children are not depth-first)."""


def _narrow(values: np.ndarray, extra: int = 0) -> np.ndarray:
    """``values`` (>= 0) in the narrowest unsigned type that also holds ``max + extra``."""
    top = int(values.max(initial=0)) + extra
    for dt in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dt).max:
            return values.astype(dt)
    return values.astype(np.uint64)


def _float32_floor(t: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 value."""
    f = t.astype(np.float32)
    over = f.astype(np.float64) > t
    f[over] = np.nextafter(f[over], np.float32(-np.inf))
    return f


def is_compact(arrays: Mapping[str, object]) -> bool:
    """Whether bundle arrays hold a compact forest (else the predictor's own arrays)."""
    return "node_kind" in arrays


def encode_forest(pred: ForestPredictor) -> dict[str, np.ndarray]:
    """The compact arrays of a forest (see the module doc)."""
    n = len(pred.left)
    split = pred.leaf < 0
    sizes = np.diff(np.append(pred.roots, n))
    local = np.arange(n) - np.repeat(pred.roots, sizes)
    out: dict[str, np.ndarray] = {"node_kind": np.packbits(split),
                                  "roots": pred.roots.astype(np.int64),
                                  "classes": np.asarray(pred.classes)}
    out["split_right"] = _narrow(pred.right[split].astype(np.int64))
    if not np.array_equal(pred.left[split], local[split] + 1):
        out["split_left"] = _narrow(pred.left[split].astype(np.int64))
    out["split_feature"] = _narrow(pred.feature[split].astype(np.int64))
    out["split_threshold"] = _float32_floor(np.asarray(pred.threshold, np.float64)[split])
    values = pred.leaf_value[pred.leaf[~split]]
    pure = (values == 1.0).sum(axis=1) == 1
    k = values.shape[1]
    leaf_class = np.where(pure, values.argmax(axis=1), k)
    out["leaf_class"] = _narrow(leaf_class.astype(np.int64))
    out["leaf_mixed"] = values[~pure].astype(np.float64)
    return out


def decode_forest(arrays: Mapping[str, np.ndarray], n_features: int) -> ForestPredictor:
    """Rebuild the predictor from :func:`encode_forest`'s arrays.

    Raises:
        ValueError: arrays of inconsistent lengths (a damaged bundle).
    """
    roots = np.asarray(arrays["roots"]).astype(np.int32)
    right_s = np.asarray(arrays["split_right"]).astype(np.int32)
    n_split = len(right_s)
    leaf_class = np.asarray(arrays["leaf_class"]).astype(np.int64)
    n = n_split + len(leaf_class)
    split = np.unpackbits(np.asarray(arrays["node_kind"], np.uint8), count=n).astype(bool)
    if int(split.sum()) != n_split:
        raise ValueError(f"node_kind marks {int(split.sum())} split nodes, split_right holds "
                         f"{n_split}")
    if roots.size == 0 or int(roots.max(initial=0)) >= max(n, 1):
        raise ValueError("roots do not fit the nodes")
    sizes = np.diff(np.append(roots, n))
    local = (np.arange(n) - np.repeat(roots, sizes)).astype(np.int32)
    left = np.full(n, -1, np.int32)
    right = np.full(n, -1, np.int32)
    feature = np.full(n, -2, np.int32)
    threshold = np.full(n, -2.0, np.float64)
    left[split] = (np.asarray(arrays["split_left"]).astype(np.int32) if "split_left" in arrays
                   else local[split] + 1)
    right[split] = right_s
    feature[split] = np.asarray(arrays["split_feature"]).astype(np.int32)
    threshold[split] = np.asarray(arrays["split_threshold"], np.float32).astype(np.float64)
    classes = np.asarray(arrays["classes"])
    k = len(classes)
    mixed = np.asarray(arrays["leaf_mixed"], np.float64).reshape(-1, k)
    is_mixed = leaf_class >= k
    if int(is_mixed.sum()) != len(mixed):
        raise ValueError(f"{int(is_mixed.sum())} mixed leaves but {len(mixed)} rows")
    values = np.zeros((len(leaf_class), k), np.float64)
    pure = np.flatnonzero(~is_mixed)
    values[pure, leaf_class[pure]] = 1.0
    values[is_mixed] = mixed
    leaf = np.full(n, -1, np.int32)
    leaf[~split] = np.arange(len(leaf_class), dtype=np.int32)
    return ForestPredictor(left, right, feature, threshold, leaf, values, roots, classes,
                           int(n_features))
