"""Context beyond the patch: the sample with a fourth modality of smoothed reflectances.

    .venv/bin/python bench/context.py [--k all] [--folds 0]

The network trains on 72 px (720 m) patches, so no pixel's class can depend on what lies
further away. Here each of B03, B04, B08 and B11 is smoothed with a Gaussian of sigma 25 and
75 px (250 and 750 m; nodata left out of the weights), averaged onto a 40 m grid and added to
the sample as a ``context`` modality (GeoTIFFs and a recipe under ``bench/out/context/``),
which the network and the forest both get. Then ``bench/variant.py context --recipe
bench/out/context/s2-context.yaml`` runs the protocol (rows in
``bench/out/quality-s2-context-variants.jsonl``, the same folds, labels and test pixels as
the sample's).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DIR = HERE / "out" / "context"
BANDS = ("B03", "B04", "B08", "B11")
SIGMAS = (25, 75)


def make() -> Path:
    import rasterio
    from scipy import ndimage

    from geomm.sampledata import fetch

    root = fetch("s2-t33uuu").root
    DIR.mkdir(parents=True, exist_ok=True)
    for band in BANDS:
        with rasterio.open(next((root / "IMG_DATA").glob(f"*_{band}.jp2"))) as src:
            x = src.read(1).astype(np.float32) * 1e-4
            f = round(src.transform.a / 10)
            crs, west, north = src.crs, src.transform.c, src.transform.f
        x = np.kron(x, np.ones((f, f), np.float32))
        valid = (x > 0).astype(np.float32)
        for sigma in SIGMAS:
            num = ndimage.gaussian_filter(x * valid, sigma, mode="constant")
            den = ndimage.gaussian_filter(valid, sigma, mode="constant")
            y = np.where(valid > 0, num / np.maximum(den, 1e-6), 0)
            y = y.reshape(y.shape[0] // 4, 4, y.shape[1] // 4, 4).mean(axis=(1, 3))
            profile = {"driver": "GTiff", "height": y.shape[0], "width": y.shape[1], "count": 1,
                       "dtype": "uint16", "crs": crs, "nodata": 0,
                       "transform": rasterio.Affine(40, 0, west, 0, -40, north)}
            with rasterio.open(DIR / f"ctx_{band}s{sigma}.tif", "w", **profile) as dst:
                dst.write(np.clip(np.round(y * 1e4), 0, 65535).astype(np.uint16), 1)
    recipe = (HERE.parent / "recipes" / "s2-landcover.yaml").read_text()
    head, labels = recipe.split("\nlabels:", 1)
    names = ", ".join(f"{b}s{s}" for b in BANDS for s in SIGMAS)
    context = (f"  context:\n    file: {DIR}/ctx_{{band}}.tif\n    bands: [{names}]\n"
               "    nodata: 0\n    scale: 0.0001\n")
    text = (head.replace("name: s2-landcover", "name: s2-context").rstrip() + "\n"
            + context + "\nlabels:" + labels)
    path = DIR / "s2-context.yaml"
    path.write_text(text.replace("vector: gis", f"vector: {root}/gis"))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", nargs="+", default=["all"])
    ap.add_argument("--folds", nargs="+", default=["0"])
    args = ap.parse_args()
    recipe = make()
    return subprocess.call([sys.executable, str(HERE / "variant.py"), "context", "--recipe",
                            str(recipe), "--k", *args.k, "--folds", *args.folds])


if __name__ == "__main__":
    sys.exit(main())
