"""A variant of polygon-edge erosion, measured beside the default with bench/quality.py's
protocol: erode every polygon, small ones too (a class gets its pixels back only when erosion
would empty it), instead of keeping whole the polygons that erosion would empty.

    .venv/bin/python bench/erosion_variant.py [--k all 3] [--folds 0 1 2 3 4]

Rows go to ``bench/out/quality-s2-landcover-erode-small-too.jsonl`` (resumable); compare
them with ``bench/results/quality-s2-landcover.jsonl`` (the default rule).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def erode_small_too(labels: np.ndarray, mask: np.ndarray, radius: int, *,
                    ignore_value: int = 255) -> np.ndarray:
    from scipy import ndimage

    if radius <= 0:
        return mask
    size = 2 * int(radius) + 1
    lo = ndimage.minimum_filter(labels, size=size, mode="nearest")
    hi = ndimage.maximum_filter(labels, size=size, mode="nearest")
    out = mask & (lo == hi) & (labels != ignore_value)
    for c in np.unique(labels[mask & (labels != ignore_value)]):
        if not (out & (labels == c)).any():
            out |= mask & (labels == c)
    return out


def main(argv: list[str] | None = None) -> int:
    import quality

    import geomm.learn.labelbudget as lb
    import geomm.learn.masks as masks

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", nargs="+", default=["all", "3"])
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    args = ap.parse_args(argv)
    lb.eroded_labels = erode_small_too  # what auto_eroded_labels and label_masks call
    masks.eroded_labels = erode_small_too
    quality.OUT.mkdir(exist_ok=True)
    log = quality.OUT / "quality-s2-landcover-erode-small-too.jsonl"
    quality._run("s2-landcover", args.k, args.folds, log, None)
    print(quality._render("s2-landcover-erode-small-too", log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
