"""One training variant on bench/quality.py's protocol, beside the defaults' rows:

    .venv/bin/python bench/variant.py NAME [--k all] [--folds 0 1 2] [--over JSON] [--jitter]

``--over`` overrides fields of ``TrainConfig`` (e.g. ``'{"width": 48}'``); ``--jitter`` adds
a radiometric augmentation the package does not have: each training patch's reflectances
multiplied by exp(N(0, 0.1)) for the whole patch and exp(N(0, 0.03)) per band (illumination
and calibration differences between places of a scene). Rows go to
``bench/out/quality-s2-landcover-variants.jsonl``; compare them with
``bench/results/quality-s2-landcover.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def jitter(common: float = 0.1, band: float = 0.03) -> None:
    """Patch the training dataset to jitter the reflectances of each augmented patch."""
    import torch

    from geomm.learn.dataset import StorePatchDataset

    plain = StorePatchDataset.__getitem__

    def getitem(self: StorePatchDataset, index: int) -> dict[str, torch.Tensor]:
        out = plain(self, index)
        if not self.augment:
            return out
        rng = np.random.default_rng([self.seed, self.epoch, index, 7])
        s = float(np.exp(rng.normal(0, common)))
        for key in self.keys:
            mean, inv = self._norm[key]
            g = (s * np.exp(rng.normal(0, band, mean.shape[0]))).astype(np.float32)[:, None, None]
            x = out[key].numpy()
            nodata = (x == 0).all(axis=0)
            y = x * g + mean * inv * (g - 1)  # (raw * g - mean) / std in normalised units
            y[:, nodata] = 0
            out[key] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
        return out

    StorePatchDataset.__getitem__ = getitem  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name")
    ap.add_argument("--k", default="all")
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--over", default="{}", help="TrainConfig overrides, as JSON")
    ap.add_argument("--jitter", action="store_true")
    args = ap.parse_args(argv)
    if args.jitter:
        jitter()
    from geomm.learn.config import TrainConfig
    from geomm.learn.crossval import crossval
    from geomm.learn.train import recipe_store
    from geomm.recipe import load_recipe

    store = recipe_store(load_recipe("s2-landcover"))
    OUT.mkdir(exist_ok=True)
    log = OUT / "quality-s2-landcover-variants.jsonl"
    for fold in args.folds:
        cfg = replace(TrainConfig(), polygons_per_class=None if args.k == "all" else int(args.k),
                      **json.loads(args.over))
        t0 = time.perf_counter()
        report = crossval(store, cfg, folds=[fold], echo=lambda s: print(s, flush=True))
        with log.open("a") as f:
            for r in report.results:
                s = r.scores
                f.write(json.dumps({"variant": args.name, "k": args.k, "fold": fold,
                                    "method": r.method, "oa": s.overall_accuracy,
                                    "kappa": s.kappa, "macro_f1": s.macro_f1,
                                    "seconds": r.seconds, "ece": r.extra.get("ece"),
                                    "val_oa": r.extra.get("val_oa")}) + "\n")
        print(f"{args.name} fold {fold}: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
