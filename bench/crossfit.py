"""Cross-fitted networks with few labels: does calibrating on every labelled region carry?

    .venv/bin/python bench/crossfit.py run --k 5 --folds 0 1 2 3 4 [--recipe ...] [--seed 1]
    .venv/bin/python bench/crossfit.py analyse [--dir bench/out/crossfit] [--log ROWS.jsonl]

Today, with few labels, three networks train on the same training blocks (3 of the 4 blocks
that are not the test fold's) and the temperature is fitted on the fourth (validation) fold's
handful of regions. Cross-fitting instead trains one network per non-test fold, each on the
three others, so that every labelled region of the user's budget is out of sample for one
network: the model is the mean of those networks (it has seen all the budget), and the
temperature (and ``--classifier auto``'s choice) can be fitted on the out-of-network
predictions of every region. ``run`` trains them with the package's own pieces (the same
label budget, patches, width and epochs as the package's several networks) and saves, per
fold, each network's uncalibrated probabilities at its held-out labels and at the test
labels, and the forest's alike (``bench/out/crossfit/k{K}-fold{F}.npz``). ``analyse`` scores
the mean on the test blocks and calibrates it several ways. What it found (bench/quality.md,
"Cross-fitting the networks"): the mean gains mostly what a quarter more labels gives, which
the forest takes as well, and its calibration is not reliably better; not kept.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from geomm.model.calibrate import expected_calibration_error, fit_temperature, temper

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "out" / "crossfit"


def run(ks: list[str], folds: list[int], recipe_path: Path, out: Path, seed: int = 0) -> None:
    import lightning.pytorch as pl

    from geomm.errors import RecipeError
    from geomm.learn.config import TrainConfig, epochs_for, model_config_for
    from geomm.learn.datamodule import StoreDataModule
    from geomm.learn.heldout import _pixels
    from geomm.learn.pixelfit import fit_pixel_classifier
    from geomm.learn.train import _fit_network, recipe_store
    from geomm.predict.infer import predict_store
    from geomm.recipe import load_recipe

    store = recipe_store(load_recipe(recipe_path))
    out.mkdir(parents=True, exist_ok=True)
    for k in ks:
        for f in folds:
            path = out / f"k{k}-fold{f}.npz"
            if path.exists():
                continue
            others = [j for j in range(TrainConfig().n_folds) if j != f]
            saved: dict[str, np.ndarray] = {}
            t0 = time.perf_counter()
            for m, j in enumerate(others):
                cfg = TrainConfig(test_fold=f, val_fold=j, members=len(others), seed=seed,
                                  polygons_per_class=None if k == "all" else int(k))
                try:
                    dm = StoreDataModule(store, cfg)
                except RecipeError as exc:  # no budget label in fold j: nothing out of sample
                    print(f"k={k} fold {f}: network without fold {j}: {exc}", flush=True)
                    continue
                pl.seed_everything(cfg.seed + 1000 * m, workers=True, verbose=False)
                dm.member = m
                c = replace(cfg, max_epochs=epochs_for(cfg, dm.labelled_px))
                mcfg = model_config_for(store, c, dm.labelled_px)
                net, _ = _fit_network(dm, mcfg, c, "last", None, False, None, None)
                _, probs = predict_store(net, store, dm.stats)
                pv, yv = _pixels(store, probs, dm.val_labels)
                pt, yt = _pixels(store, probs, dm.test_mask)
                saved.update({f"cnn{j}_val": pv, f"cnn{j}_valy": yv, f"cnn{j}_test": pt,
                              "testy": yt})
                fit = fit_pixel_classifier(store, cfg, "rf")
                assert fit.probs is not None
                # the forest at the network's pixels: a pixel the forest leaves unpredicted
                # (a band without data there) gets the uniform guess
                ok = np.isfinite(probs).all(axis=0) & (probs.sum(axis=0) > 0)
                rf = np.where(fit.probs.sum(axis=0) > 0, fit.probs, 1.0 / len(fit.probs))
                rv, ryv = _pixels(store, rf, dm.val_labels & ok)
                rt, _ = _pixels(store, rf, dm.test_mask & ok)
                saved.update({f"rf{j}_val": rv, f"rf{j}_valy": ryv, f"rf{j}_test": rt})
                print(f"k={k} fold {f}: network without fold {j}: held-out OA "
                      f"{100 * np.mean(pv.argmax(1) == yv):.1f} on {len(yv)} px, test OA "
                      f"{100 * np.mean(pt.argmax(1) == yt):.1f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            np.savez_compressed(path, **saved)


def _nets(d: dict[str, np.ndarray], kind: str) -> list[str]:
    return sorted({key.split("_")[0][len(kind):] for key in d if key.startswith(kind)
                   and key.endswith("_test")})


def analyse(folder: Path, log: Path | None = None) -> None:
    from calibration import OBJECTIVES

    test_blocks_own = OBJECTIVES["ece"]  # the oracle: the test blocks' ECE minimised
    assert test_blocks_own is not None
    rows: list[dict] = []
    for path in sorted(folder.glob("k*-fold*.npz")):
        d = dict(np.load(path))
        k, f = path.stem[1:].split("-fold")
        js = _nets(d, "cnn")
        yt = d["testy"]
        tests = [d[f"cnn{j}_test"] for j in js]
        mean = np.mean(tests, axis=0)
        oof = np.concatenate([d[f"cnn{j}_val"] for j in js])
        oofy = np.concatenate([d[f"cnn{j}_valy"] for j in js])
        t = fit_temperature(oof, oofy)
        # a: the temperature on each network, then the mean; b: on the mean itself
        a = np.mean([temper(p, t) for p in tests], axis=0)
        b = temper(mean, t)
        oracle_t = test_blocks_own(mean, yt)
        rf_mean = np.mean([d[f"rf{j}_test"] for j in js], axis=0)
        rf_right = np.concatenate([d[f"rf{j}_val"].argmax(1) == d[f"rf{j}_valy"] for j in js])
        if len(rf_mean) != len(yt):  # an early dump: the forest left a few pixels out
            rf_mean = np.full_like(mean, np.nan)
        rows.append(dict(
            k=k, fold=int(f), nets=len(js), oof_px=len(oofy),
            oof_oa=np.mean(oof.argmax(1) == oofy), rf_oof_oa=np.mean(rf_right),
            single_oa=np.mean([np.mean(p.argmax(1) == yt) for p in tests]),
            oa=np.mean(mean.argmax(1) == yt),
            rf_oa=np.nan if np.isnan(rf_mean).any() else np.mean(rf_mean.argmax(1) == yt),
            oracle_t=oracle_t,
            t=t, ece_t1=expected_calibration_error(mean, yt),
            ece_a=expected_calibration_error(a, yt), ece_b=expected_calibration_error(b, yt),
            oracle=expected_calibration_error(temper(mean, oracle_t), yt)))
    if log is not None:  # one row per fold, with where it ran
        import json
        import subprocess

        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=HERE).stdout.strip()
        with log.open("w") as fh:
            for r in rows:
                fh.write(json.dumps({**{k: (None if isinstance(v, float) and np.isnan(v)
                                              else float(v) if isinstance(v, np.floating) else v)
                                        for k, v in r.items()},
                                     "commit": commit, "cpu": "Intel Xeon, AMX"}) + "\n")
    keys = ["nets", "oof_px", "oof_oa", "rf_oof_oa", "single_oa", "oa", "rf_oa", "t",
            "ece_t1", "ece_a", "ece_b", "oracle", "oracle_t"]
    print("| k | fold | " + " | ".join(keys) + " |")
    for r in rows:
        print(f"| {r['k']} | {r['fold']} | " + " | ".join(
            f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in keys) + " |")
    for k in sorted({r["k"] for r in rows}):
        rs = [r for r in rows if r["k"] == k]
        print(f"| {k} | mean of {len(rs)} | " + " | ".join(
            f"{np.nanmean([r[c] for r in rs]):.3f}" for c in keys) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("run", "analyse"))
    ap.add_argument("--k", nargs="+", default=["5"])
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--recipe", type=Path, default=HERE.parent / "recipes" / "s2-landcover.yaml")
    ap.add_argument("--dir", type=Path, default=OUT)
    ap.add_argument("--seed", type=int, default=0, help="run: of split, budget and networks")
    ap.add_argument("--log", type=Path, default=None, help="analyse: write the rows here")
    a = ap.parse_args()
    if a.what == "run":
        run(a.k, a.folds, a.recipe, a.dir, a.seed)
    else:
        analyse(a.dir, a.log)


if __name__ == "__main__":
    sys.exit(main())
