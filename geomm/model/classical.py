"""Classical per-pixel classifiers as plain arrays, predicted with numpy.

A fitted scikit-learn random forest or SVM is reduced to its arrays (tree nodes; support
vectors and dual coefficients), which a model bundle stores in safetensors: loading one needs
neither pickle nor scikit-learn, and predicts what scikit-learn predicted (a forest through
scikit-learn's compiled tree walk when it is installed, :mod:`geomm.model._sktrees`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import combinations
from typing import Any, ClassVar

import numpy as np

__all__ = ["ForestPredictor", "SVMPredictor", "to_predictor"]


def _check_X(X: np.ndarray, n_features: int) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != n_features or np.isnan(X).any():
        raise ValueError(f"X must be (pixels, {n_features}) without NaN, got {X.shape}")
    return X


@dataclass(frozen=True)
class ForestPredictor:
    """A random forest as scikit-learn's node arrays of all trees, concatenated.

    Tree ``t`` holds nodes ``roots[t]:roots[t + 1]``; its ``left``/``right``/``feature`` are
    scikit-learn's own (tree-local ids, -1 at leaves), ``leaf`` maps a leaf to its row of
    ``leaf_value``. Prediction walks every tree for all pixels at once, in numpy.
    """

    ARRAYS: ClassVar = ("left", "right", "feature", "threshold", "leaf", "leaf_value", "roots",
                        "classes")
    CONFIG: ClassVar = ("n_features",)
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    leaf: np.ndarray
    """Row of ``leaf_value`` for each leaf node (-1 for split nodes)."""
    leaf_value: np.ndarray
    """Class probabilities per leaf (rows sum to 1)."""
    roots: np.ndarray
    classes: np.ndarray
    n_features: int

    @classmethod
    def from_sklearn(cls, forest: Any) -> ForestPredictor:
        """Flatten a fitted single-output RandomForestClassifier."""
        if getattr(forest, "n_outputs_", 1) != 1:
            raise ValueError("only single-output forests can be stored")
        trees = [e.tree_ for e in forest.estimators_]
        is_leaf = np.concatenate([t.children_left == -1 for t in trees])
        value = np.concatenate([t.value[t.children_left == -1, 0, :forest.n_classes_]
                                for t in trees]).astype(np.float64)
        total = value.sum(axis=1, keepdims=True)
        leaf = np.where(is_leaf, np.cumsum(is_leaf) - 1, -1)
        left, right, feature = (np.concatenate([getattr(t, a) for t in trees]).astype(np.int32)
                                for a in ("children_left", "children_right", "feature"))
        i32 = np.int32
        return cls(left, right, feature, np.concatenate([t.threshold for t in trees]),
                   leaf.astype(i32), value / np.where(total == 0, 1.0, total),  # as sklearn
                   np.cumsum([0] + [t.node_count for t in trees[:-1]]).astype(i32),
                   np.asarray(forest.classes_), int(forest.n_features_in_))

    def consistent(self) -> bool:
        """Whether the arrays form trees over ``n_features`` features (for loaded bundles).

        Children must come after their parent, as scikit-learn builds them: every walk ends.
        """
        n, sizes = len(self.left), np.diff(np.append(self.roots, len(self.left)))
        if not (all(a.shape == (n,) for a in (self.right, self.feature, self.threshold,
                                                self.leaf)) and len(self.roots)
                and self.roots[0] == 0 and (sizes > 0).all() and self.leaf_value.ndim == 2
                and self.leaf_value.shape[1] == len(self.classes)):
            return False
        local, size = np.arange(n) - np.repeat(self.roots, sizes), np.repeat(sizes, sizes)
        split = self.leaf < 0
        return bool(all(((local < c) & (c < size))[split].all() for c in (self.left, self.right))
                    and ((self.feature >= 0) & (self.feature < self.n_features))[split].all()
                    and (self.leaf[~split] < len(self.leaf_value)).all())

    @cached_property
    def _compiled(self) -> list[Any] | None:
        from geomm.model._sktrees import sklearn_trees

        return sklearn_trees(self)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Mean class probability of the trees (what scikit-learn's predict_proba returns):
        scikit-learn's compiled tree walk when it is installed, else :meth:`proba_numpy`."""
        X = _check_X(X, self.n_features).astype(np.float32)  # trees compare float32 values
        if self._compiled is not None:
            from geomm.model._sktrees import trees_proba

            return trees_proba(self._compiled, X)
        return self._walk(X)

    def proba_numpy(self, X: np.ndarray) -> np.ndarray:
        """:meth:`predict_proba` by a numpy walk of every tree for all pixels at once."""
        return self._walk(_check_X(X, self.n_features).astype(np.float32))

    def _walk(self, X: np.ndarray) -> np.ndarray:
        """The numpy walk of checked float32 ``X``."""
        nf, step = X.shape[1], 1 << 16
        out = np.zeros((len(X), self.leaf_value.shape[1]))
        bounds = np.append(self.roots, len(self.left)).astype(np.intp)
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):  # one tree at a time: in cache
            child = np.stack([self.left[lo:hi], self.right[lo:hi]], axis=1).ravel()
            feat, thr, leaf = self.feature[lo:hi], self.threshold[lo:hi], self.leaf[lo:hi]
            for s in range(0, len(X), step):
                xs = X[s:s + step].ravel()
                node = np.zeros(min(step, len(X) - s), np.intp)
                active = np.flatnonzero(leaf[node] < 0)
                while active.size:  # ends: children come after their parent
                    nd = node[active]
                    nxt = child[2 * nd + (xs[active * nf + feat[nd]] > thr[nd])]
                    node[active] = nxt
                    active = active[leaf[nxt] < 0]
                out[s:s + step] += self.leaf_value[leaf[node]]
        return out / len(self.roots)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class of highest mean probability."""
        return self.classes[np.argmax(self.predict_proba(X), axis=1)]


@dataclass(frozen=True)
class SVMPredictor:
    """A fitted SVC (one-vs-one, libsvm's sign convention) with its optional StandardScaler."""

    ARRAYS: ClassVar = ("support_vectors", "dual_coef", "intercept", "n_support", "classes",
                        "mean", "scale")
    CONFIG: ClassVar = ("gamma", "kernel", "scaled", "n_features")
    support_vectors: np.ndarray
    dual_coef: np.ndarray
    intercept: np.ndarray
    n_support: np.ndarray
    classes: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    gamma: float
    kernel: str
    scaled: bool
    n_features: int

    @classmethod
    def from_sklearn(cls, model: Any) -> SVMPredictor:
        """From an SVC (rbf or linear kernel), alone or after a StandardScaler in a Pipeline."""
        steps = [s for _, s in model.steps] if hasattr(model, "steps") else [model]
        svc, scaler = steps[-1], (steps[0] if len(steps) == 2 else None)
        if len(steps) > 2 or getattr(svc, "kernel", None) not in ("rbf", "linear") or (
                scaler is not None and not hasattr(scaler, "scale_")):
            raise ValueError("only SVC(kernel='rbf'|'linear'), optionally after a "
                             "StandardScaler, can be stored")
        sign = -1.0 if len(svc.classes_) == 2 else 1.0  # scikit-learn flips two-class signs
        nf = svc.support_vectors_.shape[1]
        mean = getattr(scaler, "mean_", None)
        scale = getattr(scaler, "scale_", None)
        return cls(np.asarray(svc.support_vectors_, np.float64), sign * svc.dual_coef_,
                   sign * svc.intercept_, np.asarray(svc.n_support_, np.int32),
                   np.asarray(svc.classes_), np.zeros(nf) if mean is None else mean,
                   np.ones(nf) if scale is None else scale, float(svc._gamma), svc.kernel,
                   scaler is not None, nf)

    def consistent(self) -> bool:
        """Whether the arrays agree with each other (for loaded bundles)."""
        k, sv = len(self.classes), self.support_vectors
        return (sv.ndim == 2 and sv.shape[1] == self.n_features == len(self.mean)
                == len(self.scale) and self.n_support.shape == (k,)
                and int(self.n_support.sum()) == len(sv)
                and self.dual_coef.shape == (k - 1, len(sv))
                and self.intercept.shape == (k * (k - 1) // 2,)
                and self.kernel in ("rbf", "linear"))

    def _ovo(self, X: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """libsvm's pairwise decision values (positive for the first class of the pair)."""
        X = _check_X(X, self.n_features)
        if self.scaled:  # the same float ops as StandardScaler.transform (scikit-learn 1.9)
            X = np.array(X, dtype=X.dtype if X.dtype in (np.float32, np.float64) else np.float64)
            X -= self.mean.astype(X.dtype)
            X /= self.scale.astype(X.dtype)
        X = X.astype(np.float64)
        sv, start = self.support_vectors, np.concatenate([[0], np.cumsum(self.n_support)])
        pairs = list(combinations(range(len(self.classes)), 2))
        out = np.empty((len(X), len(pairs)))
        step = max(1, (1 << 22) // max(1, len(sv)))
        for s in range(0, len(X), step):
            kx = X[s:s + step] @ sv.T
            if self.kernel == "rbf":
                sq = (X[s:s + step] ** 2).sum(1)[:, None] + (sv ** 2).sum(1)[None] - 2 * kx
                kx = np.exp(-self.gamma * np.maximum(sq, 0.0))
            for p, (i, j) in enumerate(pairs):
                a, b = slice(start[i], start[i + 1]), slice(start[j], start[j + 1])
                out[s:s + step, p] = (kx[:, a] @ self.dual_coef[j - 1, a]
                                      + kx[:, b] @ self.dual_coef[i, b] + self.intercept[p])
        return out, pairs

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's SVC.decision_function (``decision_function_shape="ovr"``)."""
        dec, pairs = self._ovo(X)
        if len(self.classes) == 2:
            return -dec[:, 0]
        votes = np.zeros((len(dec), len(self.classes)))
        conf = np.zeros_like(votes)
        for p, (i, j) in enumerate(pairs):
            conf[:, i] += dec[:, p]
            conf[:, j] -= dec[:, p]
            votes[:, i] += dec[:, p] >= 0
            votes[:, j] += dec[:, p] < 0
        return votes + conf / (3 * (np.abs(conf) + 1))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """libsvm's one-vs-one vote, ties to the lower class: what SVC.predict returns."""
        dec, pairs = self._ovo(X)
        votes = np.zeros((len(dec), len(self.classes)), np.int64)
        for p, (i, j) in enumerate(pairs):
            votes[:, i] += dec[:, p] > 0
            votes[:, j] += dec[:, p] <= 0
        return self.classes[np.argmax(votes, axis=1)]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Softmax of :meth:`decision_function`: a confidence score, NOT calibrated (no Platt)."""
        d = self.decision_function(X)
        d = np.stack([-d / 2, d / 2], axis=1) if d.ndim == 1 else d
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def to_predictor(model: Any) -> ForestPredictor | SVMPredictor:
    """The numpy predictor of a fitted scikit-learn forest or SVC (pipeline); others pass."""
    if isinstance(model, ForestPredictor | SVMPredictor):
        return model
    if hasattr(model, "estimators_"):
        return ForestPredictor.from_sklearn(model)
    return SVMPredictor.from_sklearn(model)
