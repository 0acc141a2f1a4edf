"""A stored forest walked by scikit-learn's compiled trees: the same probabilities as the
numpy walk of :class:`~geomm.model.classical.ForestPredictor`, several times faster.

The trees are rebuilt from the bundle's arrays through scikit-learn's ``Tree`` state (what
its own unpickling uses; no pickle is read). Where scikit-learn is missing or its tree layout
changed, :func:`sklearn_trees` returns None and the numpy walk is used.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["sklearn_trees", "trees_proba"]

ROWS = 1 << 16
"""Pixels per step (memory: one step's probabilities per thread)."""


def _depth(left: np.ndarray, right: np.ndarray, split: np.ndarray) -> int:
    level, depth = np.array([0]), 0
    while True:
        level = level[split[level]]
        if not level.size:
            return depth
        level = np.concatenate([left[level], right[level]])
        depth += 1


def sklearn_trees(fp: Any) -> list[Any] | None:
    """One scikit-learn ``Tree`` per tree of ``fp`` (a ForestPredictor), or None."""
    try:
        from sklearn.tree._tree import NODE_DTYPE, Tree

        bounds = np.append(fp.roots, len(fp.left))
        k = fp.leaf_value.shape[1]
        trees = []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            n, leaf = int(hi - lo), fp.leaf[lo:hi]
            split = leaf < 0
            nodes = np.zeros(n, dtype=NODE_DTYPE)
            nodes["left_child"], nodes["right_child"] = fp.left[lo:hi], fp.right[lo:hi]
            nodes["feature"] = np.where(split, fp.feature[lo:hi], -2)
            nodes["threshold"] = np.where(split, fp.threshold[lo:hi], -2.0)
            values = np.zeros((n, 1, k))
            values[~split, 0] = fp.leaf_value[leaf[~split]]
            tree = Tree(int(fp.n_features), np.array([k], dtype=np.intp), 1)
            tree.__setstate__({"max_depth": _depth(fp.left[lo:hi], fp.right[lo:hi], split),
                               "node_count": n, "nodes": nodes, "values": values})
            trees.append(tree)
        return trees
    except (ImportError, AttributeError, TypeError, ValueError, KeyError):
        return None  # another scikit-learn layout: the numpy walk answers


def trees_proba(trees: list[Any], X: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Mean leaf probabilities of ``trees`` for float32 ``X`` (pixels, features), trees spread
    over ``threads`` (default: the usable cores; the compiled walk releases the GIL)."""
    threads = threads or max(1, len(os.sched_getaffinity(0)))
    out = np.zeros((len(X), trees[0].value.shape[-1]))

    def one(tree: Any, xs: np.ndarray) -> np.ndarray:
        return np.asarray(tree.predict(xs)).reshape(len(xs), -1)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for s in range(0, len(X), ROWS):
            xs = np.ascontiguousarray(X[s:s + ROWS])
            for part in pool.map(lambda t, xs=xs: one(t, xs), trees):
                out[s:s + ROWS] += part
    return out / len(trees)
