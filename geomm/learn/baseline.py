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
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from geomm.errors import GeommError
from geomm.model.bundle import Bundle, BundleMeta, layers_from_manifest, save_bundle
from geomm.model.classical import ForestPredictor, SVMPredictor, to_predictor
from geomm.model.classicalbundle import classifier_from_bundle
from geomm.model.forestcodec import encode_forest
from geomm.stack.store import TileStore

__all__ = ["ForestPredictor", "PixelSelectionError", "SVMPredictor", "TrainingPixels",
           "fit_classifier", "pixel_features", "predict_pixels",
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
            :class:`~geomm.model.bundle.Bundle` of kind rf/svm (its inputs are checked first).
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


def predict_proba_map(model: Any, store: TileStore, mask: np.ndarray | None = None
                      ) -> np.ndarray:
    """Class probabilities ``(K, height, width)`` float32 of a fitted estimator (with
    ``predict_proba`` and ``classes_``) over the valid pixels inside ``mask``; 0 elsewhere.
    Their argmax is the estimator's ``predict``."""
    k = len(store.manifest["classes"]["classes"])
    out = np.zeros((k, *store.grid.shape), dtype=np.float32)
    classes = np.asarray(model.classes_, dtype=np.int64)
    for rr, cc, X in _blocks(store, store.layer_keys, mask, None):
        proba = np.zeros((len(X), k), dtype=np.float32)
        proba[:, classes] = model.predict_proba(X)
        out[:, rr, cc] = proba.T
    return out


def save_classifier(path: str | Path, model: Any, store: TileStore, *,
                    layers: Sequence[str] | None = None, split: Mapping[str, Any] | None = None,
                    metrics: Mapping[str, Any] | None = None,
                    recipe_raw: Mapping[str, Any] | None = None, overwrite: bool = False,
                    training: Mapping[str, Any] | None = None) -> Path:
    """Save a fitted baseline as a model bundle of kind "rf" or "svm" (arrays, no pickle).

    ``layers`` are the feature layers the model was fitted on (default: all of the store's);
    ``training``: the settings it was trained with (``config.training``, as a network's).
    """
    pred = to_predictor(model)
    config = {k: getattr(pred, k) for k in pred.CONFIG}
    if training is not None:
        config["training"] = dict(training)
    meta = BundleMeta(store.manifest.get("recipe", ""),
                      layers_from_manifest(store.manifest, layers),
                      store.manifest.get("classes") or {},
                      config=config,
                      split=dict(split or {}), metrics=dict(metrics or {}),
                      recipe_raw=dict(recipe_raw) if recipe_raw is not None else None)
    if isinstance(pred, ForestPredictor):
        return save_bundle(path, kind="rf", tensors=encode_forest(pred), meta=meta,
                           overwrite=overwrite)
    return save_bundle(path, kind="svm", meta=meta, overwrite=overwrite,
                       tensors={n: np.asarray(getattr(pred, n)) for n in pred.ARRAYS})
