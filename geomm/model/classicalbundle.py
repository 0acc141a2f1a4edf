"""Classical (per-pixel) model bundles: a random forest or SVM rebuilt from its arrays."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from geomm.model.bundle import FOREST_PREFIX, Bundle, BundleError
from geomm.model.classical import ForestPredictor, SVMPredictor
from geomm.model.forestcodec import COMPACT_ARRAYS, decode_forest, is_compact

__all__ = ["classifier_from_bundle", "forest_of"]


def forest_of(bundle: Bundle) -> Bundle:
    """The random forest of a "cnn+rf" bundle, as an "rf" bundle (its arrays and settings).

    Raises:
        BundleError: the bundle keeps no forest settings.
    """
    forest = bundle.meta.config.get("forest")
    if not isinstance(forest, dict):
        raise BundleError(f"{bundle.path}: key `config.forest` is missing from bundle.json; "
                          "the bundle is damaged or was edited")
    arrays = {k[len(FOREST_PREFIX):]: v for k, v in bundle.tensors.items()
              if k.startswith(FOREST_PREFIX)}
    return Bundle(bundle.path, "rf", replace(bundle.meta, config=forest), arrays)


def classifier_from_bundle(bundle: Bundle) -> ForestPredictor | SVMPredictor:
    """Rebuild the numpy predictor of an "rf" or "svm" bundle (or a "cnn+rf" bundle's forest),
    checked against its metadata.

    Raises:
        BundleError: another kind, a missing array, or arrays that disagree with the metadata.
    """
    if bundle.kind == "cnn+rf":
        bundle = forest_of(bundle)
    if bundle.kind not in ("rf", "svm"):
        raise BundleError(f"{bundle.path}: a {bundle.kind!r} bundle is not a per-pixel "
                          "classifier; predict with the network instead")
    cls = ForestPredictor if bundle.kind == "rf" else SVMPredictor
    t, cfg, where = bundle.tensors, bundle.meta.config, f"{bundle.path}"
    compact = bundle.kind == "rf" and is_compact(t)
    arrays = COMPACT_ARRAYS if compact else cls.ARRAYS
    missing = [n for n in (*arrays, *cls.CONFIG) if n not in t and n not in cfg]
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
        if compact:
            pred: ForestPredictor | SVMPredictor = decode_forest(
                {n: np.asarray(v) for n, v in t.items()}, int(cfg["n_features"]))
        else:
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
