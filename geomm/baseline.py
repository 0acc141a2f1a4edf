"""Per-pixel classical baseline: a random forest or an SVM on the fused band values.

Every band of every layer is brought to the base grid (a coarse layer's pixel is repeated over
the ``factor x factor`` base pixels it covers, i.e. nearest neighbour) and converted to physical
values (raw * scale + offset): one feature vector per valid pixel, read one row of tiles at a
time. A fitted model is saved in a model bundle as plain arrays and predicted back with numpy
(:class:`ForestPredictor`, :class:`SVMPredictor`), so loading a baseline needs neither pickle
nor scikit-learn, and predicts what scikit-learn predicted.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from geomm.bundle import Bundle, BundleError, BundleMeta, layers_from_manifest, save_bundle
from geomm.errors import GeommError
from geomm.store import TileStore

__all__ = ["ForestPredictor", "PixelSelectionError", "SVMPredictor", "TrainingPixels",
           "classifier_from_bundle", "fit_classifier", "pixel_features", "predict_pixels",
           "sample_training_pixels", "save_classifier", "to_predictor"]


class PixelSelectionError(GeommError, ValueError):
    """A pixel mask or pixel list does not fit the store (shape, validity, labels)."""


class TrainingPixels(NamedTuple):
    """Sampled pixels in raster order: base-grid rows, columns and their class ids."""

    rows: np.ndarray
    cols: np.ndarray
    labels: np.ndarray


def _blocks(store: TileStore, keys: Sequence[str], mask: np.ndarray | None,
            rows_cols: tuple[np.ndarray, np.ndarray] | None
            ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per row of tiles: (rows, cols, features) of the selected valid pixels."""
    height, width = store.grid.shape
    specs = {lyr["key"]: lyr for lyr in store.manifest["layers"]}
    step = store.tile_size  # a multiple of every layer's factor
    base = store.base()
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    if mask is not None and mask.shape != (height, width):
        raise PixelSelectionError(f"{store.path}: mask of shape {mask.shape} does not match the "
                                  f"base grid ({height}, {width})")
    if rows_cols is not None:
        rows, cols = (np.asarray(a, dtype=np.int64) for a in rows_cols)
        if rows.shape != cols.shape or rows.size and (
                rows.min() < 0 or cols.min() < 0 or rows.max() >= height or cols.max() >= width):
            raise PixelSelectionError(f"{store.path}: rows_cols must be two arrays of equal "
                                      f"length inside the base grid ({height}, {width})")
    for r0 in range(0, height, step):
        r1 = min(height, r0 + step)
        valid = base["valid"][r0:r1].values
        if rows_cols is None:
            sel = valid if mask is None else valid & mask[r0:r1]
            rr, cc = np.nonzero(sel)
        else:
            inside = (rows >= r0) & (rows < r1)
            rr, cc = rows[inside] - r0, cols[inside]
            if not valid[rr, cc].all():
                raise PixelSelectionError(f"{store.path}: {int((~valid[rr, cc]).sum())} of the "
                                          "given pixels are nodata in some layer; select "
                                          "pixels where the store's base `valid` is true")
        if rr.size == 0:
            continue
        feats = []
        for key in keys:
            f, spec = int(specs[key]["factor"]), specs[key]
            slab = store.layer(key)["data"][:, r0 // f:-(-r1 // f)].values
            vals = slab[:, (r0 + rr) // f - r0 // f, cc // f].astype(np.float64)
            feats.append(vals * float(spec["scale"]) + float(spec["offset"]))
        yield rr + r0, cc, np.concatenate(feats).T.astype(np.float32)


def pixel_features(store: TileStore, mask: np.ndarray | None = None, *,
                   rows_cols: tuple[np.ndarray, np.ndarray] | None = None,
                   layers: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Physical band values of valid pixels on the base grid, one row per pixel.

    Args:
        store: an open tile store.
        mask: base-grid boolean mask; rows come in raster order of ``mask & valid``.
        rows_cols: explicit base-grid (rows, cols) instead of a mask; rows keep that order.
        layers: layer keys to use, in feature order (default: every layer of the store).

    Returns:
        ``X`` (float32, pixels x features) and the feature names ``"<layer>:<band>"``.

    Raises:
        PixelSelectionError: the mask has another shape, or a given pixel is not valid.
    """
    keys = list(layers) if layers is not None else store.layer_keys
    names = [f"{lyr['key']}:{b}" for lyr in layers_from_manifest(store.manifest, keys)
             for b in lyr["bands"]]
    parts = list(_blocks(store, keys, mask, rows_cols))
    if not parts:
        return np.empty((0, len(names)), np.float32), names
    X = np.concatenate([p[2] for p in parts])
    if rows_cols is not None:  # back from raster blocks to the caller's order
        width = store.grid.width
        got = np.concatenate([p[0] * width + p[1] for p in parts])
        want = np.asarray(rows_cols[0], np.int64) * width + np.asarray(rows_cols[1], np.int64)
        order = np.argsort(got, kind="stable")
        X = X[order[np.searchsorted(got[order], want)]]
    return X, names


def sample_training_pixels(store: TileStore, train_mask: np.ndarray | None, *,
                           max_per_class: int = 20000, seed: int = 0) -> TrainingPixels:
    """Pick up to ``max_per_class`` labelled valid pixels of each class inside ``train_mask``.

    Raises:
        PixelSelectionError: the store has no label raster, or no pixel qualifies.
    """
    base = store.base()
    if "labels" not in base or not store.manifest.get("classes"):
        raise PixelSelectionError(f"{store.path}: the store has no label raster; stack a recipe "
                                  "with a `labels:` section")
    labels, ok = base["labels"].values, base["valid"].values.copy()
    ok &= labels != store.manifest["classes"]["ignore_value"]
    if train_mask is not None:
        if train_mask.shape != ok.shape:
            raise PixelSelectionError(f"{store.path}: train_mask of shape {train_mask.shape} "
                                      f"does not match the base grid {ok.shape}")
        ok &= train_mask
    flat = np.flatnonzero(ok)
    if flat.size == 0:
        raise PixelSelectionError(f"{store.path}: no labelled valid pixel inside the training "
                                  "mask")
    rng = np.random.default_rng(seed)
    lab = labels.ravel()[flat]
    picks = [flat[lab == c] for c in np.unique(lab)]
    picks = [p if p.size <= max_per_class else rng.choice(p, max_per_class, replace=False)
             for p in picks]
    idx = np.sort(np.concatenate(picks))
    rows, cols = np.divmod(idx, labels.shape[1])
    return TrainingPixels(rows, cols, labels.ravel()[idx])


def fit_classifier(kind: str, X: np.ndarray, y: np.ndarray, *, seed: int = 0,
                   n_estimators: int = 200, n_jobs: int = 2, svm_max_samples: int = 10000
                   ) -> Any:
    """Fit a per-pixel classifier on features ``X`` and class ids ``y``.

    ``"rf"`` is a scikit-learn RandomForestClassifier (fully grown trees). ``"svm"`` is
    StandardScaler + SVC (RBF kernel, ``gamma="scale"``, C=1) fitted on a random subsample of at
    most ``svm_max_samples`` pixels (kernel SVM training grows with the square of the samples).

    Returns:
        The fitted scikit-learn estimator (RandomForestClassifier or Pipeline).
    """
    if kind == "rf":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=n_estimators, n_jobs=n_jobs,
                                      random_state=seed).fit(X, y)
    if kind == "svm":
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        if len(y) > svm_max_samples:
            pick = np.sort(np.random.default_rng(seed).choice(len(y), svm_max_samples,
                                                              replace=False))
            X, y = X[pick], y[pick]
        return make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma="scale")).fit(X, y)
    raise ValueError(f"classifier {kind!r} is not one of 'rf', 'svm'")


def predict_pixels(model: Any, store: TileStore, mask: np.ndarray | None = None, *,
                   layers: Sequence[str] | None = None) -> np.ndarray:
    """Class-id map (uint8, base grid) of ``model`` over the valid pixels inside ``mask``.

    Args:
        model: anything with ``predict(X)`` (a fitted estimator, a predictor), or a loaded
            :class:`~geomm.bundle.Bundle` of kind rf/svm (its inputs are checked first).
        store: an open tile store.
        mask: base-grid boolean mask (default: every valid pixel).
        layers: feature layers (default: the bundle's, or every layer of the store).

    Returns:
        ``(height, width)`` uint8; pixels not predicted hold the class table's ignore value.
    """
    if isinstance(model, Bundle):
        model.check_inputs(store.manifest["layers"])
        layers, model = model.meta.layer_keys, classifier_from_bundle(model)
    keys = list(layers) if layers is not None else store.layer_keys
    ignore = (store.manifest.get("classes") or {}).get("ignore_value", 255)
    out = np.full(store.grid.shape, ignore, dtype=np.uint8)
    for rr, cc, X in _blocks(store, keys, mask, None):
        out[rr, cc] = np.asarray(model.predict(X)).astype(np.uint8)
    return out


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

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Mean class probability of the trees (what scikit-learn's predict_proba returns)."""
        X = _check_X(X, self.n_features).astype(np.float32)  # trees compare float32 values
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


def save_classifier(path: str | Path, model: Any, store: TileStore, *,
                    layers: Sequence[str] | None = None, split: Mapping[str, Any] | None = None,
                    metrics: Mapping[str, Any] | None = None,
                    recipe_raw: Mapping[str, Any] | None = None, overwrite: bool = False
                    ) -> Path:
    """Save a fitted baseline as a model bundle of kind "rf" or "svm" (arrays, no pickle).

    ``layers`` are the feature layers the model was fitted on (default: all of the store's).
    """
    pred = to_predictor(model)
    meta = BundleMeta(store.manifest.get("recipe", ""),
                      layers_from_manifest(store.manifest, layers),
                      store.manifest.get("classes") or {},
                      config={k: getattr(pred, k) for k in pred.CONFIG},
                      split=dict(split or {}), metrics=dict(metrics or {}),
                      recipe_raw=dict(recipe_raw) if recipe_raw is not None else None)
    return save_bundle(path, kind="rf" if isinstance(pred, ForestPredictor) else "svm",
                       tensors={n: np.asarray(getattr(pred, n)) for n in pred.ARRAYS},
                       meta=meta, overwrite=overwrite)


def classifier_from_bundle(bundle: Bundle) -> ForestPredictor | SVMPredictor:
    """Rebuild the numpy predictor of an "rf" or "svm" bundle, checked against its metadata.

    Raises:
        BundleError: another kind, a missing array, or arrays that disagree with the metadata.
    """
    if bundle.kind not in ("rf", "svm"):
        raise BundleError(f"{bundle.path}: a {bundle.kind!r} bundle is not a per-pixel "
                          "classifier; predict with the network instead")
    cls = ForestPredictor if bundle.kind == "rf" else SVMPredictor
    t, cfg, where = bundle.tensors, bundle.meta.config, f"{bundle.path}"
    missing = [n for n in (*cls.ARRAYS, *cls.CONFIG) if n not in t and n not in cfg]
    n_bands = sum(len(lyr["bands"]) for lyr in bundle.meta.layers)
    if missing or cfg["n_features"] != n_bands:
        what = (f"`{missing[0]}` is missing" if missing else f"the model takes "
                f"{cfg['n_features']} features but bundle.json lists {n_bands} bands")
        raise BundleError(f"{where}: {what}; the bundle is damaged or was edited")
    n_classes, classes = len(bundle.meta.classes["classes"]), np.asarray(t["classes"])
    if not (classes.dtype.kind in "iu" and classes.size and 0 <= classes.min()
            and classes.max() < n_classes):
        raise BundleError(f"{where}: the model's classes {classes.tolist()} are not ids of "
                          f"the {n_classes}-class table in bundle.json")
    try:
        kw: dict[str, Any] = {n: np.asarray(t[n]) for n in cls.ARRAYS}
        pred = cls(**kw, **{k: cfg[k] for k in cls.CONFIG})
        ok = pred.consistent()
    except (TypeError, ValueError) as e:
        raise BundleError(f"{where}: model arrays unreadable ({e}); the bundle is damaged or "
                          "was edited") from None
    if not ok:
        raise BundleError(f"{where}: the {bundle.kind} arrays disagree with each other or with "
                          "bundle.json; the bundle is damaged or was edited")
    return pred
