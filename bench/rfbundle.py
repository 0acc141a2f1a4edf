"""Size of the sample's random-forest bundle: compact arrays against the predictor's own.

    .venv/bin/python bench/rfbundle.py [--out /tmp/rf-compact]

Fits the default random forest on fold 0's training labels of the s2-landcover store, writes
it as a bundle, and prints the node count, the bytes of the full predictor arrays (what a
bundle held before), the bundle's bytes on disk, whether the loaded bundle predicts the
same probabilities and classes as the forest on 300 000 random valid pixels, and the speed of
the numpy tree walk against scikit-learn's compiled one on those pixels (same probabilities).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from geomm.learn.baseline import pixel_features, save_classifier
    from geomm.learn.config import TrainConfig
    from geomm.learn.train import fit_pixel_classifier, recipe_store
    from geomm.model.bundle import load_bundle
    from geomm.model.classical import ForestPredictor
    from geomm.model.classicalbundle import classifier_from_bundle
    from geomm.recipe import load_recipe

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/rf-compact"))
    args = ap.parse_args()
    store = recipe_store(load_recipe("s2-landcover"))
    fit = fit_pixel_classifier(store, TrainConfig(), "rf")
    pred = ForestPredictor.from_sklearn(fit.model)
    full = sum(np.asarray(getattr(pred, n)).nbytes for n in pred.ARRAYS)
    out = save_classifier(args.out, fit.model, store, overwrite=True)
    size = sum(p.stat().st_size for p in out.iterdir())
    loaded = classifier_from_bundle(load_bundle(out))
    rng = np.random.default_rng(0)
    rows = rng.integers(0, store.grid.height, 300_000)
    cols = rng.integers(0, store.grid.width, 300_000)
    valid = store.base()["valid"].values[rows, cols]
    X, _ = pixel_features(store, rows_cols=(rows[valid], cols[valid]))
    same = (np.array_equal(loaded.predict_proba(X), pred.predict_proba(X))
            and np.array_equal(loaded.predict(X), fit.model.predict(X)))
    t0 = time.perf_counter()
    walked = loaded.proba_numpy(X)
    t1 = time.perf_counter()
    compiled = loaded.predict_proba(X)  # scikit-learn's compiled trees, all cores
    t2 = time.perf_counter()
    print(json.dumps({"nodes": int(len(pred.left)), "full_array_bytes": int(full),
                      "bundle_bytes": int(size), "pixels_checked": int(len(X)),
                      "identical": bool(same),
                      "numpy_walk_kpx_s": len(X) / (t1 - t0) / 1e3,
                      "compiled_walk_kpx_s": len(X) / (t2 - t1) / 1e3,
                      "compiled_equals_numpy": bool(np.array_equal(walked, compiled))}))


if __name__ == "__main__":
    main()
