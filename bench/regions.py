"""Are a fold's errors spread over the test pixels or whole polygons? Read the class maps that
``bench/tiling.py --save-maps`` saved and, per class, count the wrong test pixels, the share
held by the 3 regions (connected, 8-neighbour) with most of them, and the regions that are
over 90 % wrong, with their median NIR (B08) and red (B04) TOA reflectance against the
class's:

    .venv/bin/python bench/regions.py bench/out/tiling-maps/maps-kall-fold0.npz [...]
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import ndimage


def main(paths: list[str]) -> int:
    from geomm.learn.train import recipe_store
    from geomm.recipe import load_recipe

    store = recipe_store(load_recipe("s2-landcover"))
    nir = np.asarray(store.layer("infrared/10m").data)[0].astype(float) * 1e-4
    red = np.asarray(store.layer("visible/10m").data)[2].astype(float) * 1e-4
    names = [c["name"] for c in store.manifest["classes"]["classes"]]
    for path in paths:
        z = np.load(path)
        pred, lab = z["pred"], z["labels"]
        test = z["test"] & (lab != store.ignore_value)
        n_test = int(test.sum())
        print(f"{path}: OA {((pred == lab) & test).sum() / n_test:.3f}, {n_test} test px")
        for c, name in enumerate(names):
            reg, n = ndimage.label(test & (lab == c), structure=np.ones((3, 3)))
            if not n:
                continue
            size = np.bincount(reg.ravel(), minlength=n + 1)[1:]
            wrong = np.bincount(reg.ravel(), weights=(pred != c).ravel(), minlength=n + 1)[1:]
            top3 = np.sort(wrong)[::-1][:3].sum() / max(1.0, wrong.sum())
            lost = np.isin(reg, np.flatnonzero(wrong / size > 0.9) + 1)
            look = (f"median NIR/red {np.median(nir[lost]):.2f}/{np.median(red[lost]):.2f}"
                    if lost.any() else "")
            print(f"  {name:12s} {n:3d} regions, wrong {100 * wrong.sum() / n_test:4.1f} OA "
                  f"points, top 3 regions {top3:.2f} of them; regions > 90 % wrong "
                  f"{100 * lost.sum() / n_test:.1f} points {look} (class "
                  f"{np.median(nir[lab == c]):.2f}/{np.median(red[lab == c]):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
