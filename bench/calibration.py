"""How should the temperature be fitted? Held-out probabilities of real folds, then offline fits.

    .venv/bin/python bench/calibration.py dump [--k all 5] [--folds 0 1 2 3 4]
    .venv/bin/python bench/calibration.py analyse [--dir bench/out/calib]

``dump`` runs bench/quality.py's protocol (the package's defaults) and saves, per fold, the
network's uncalibrated probabilities and the forest's at every labelled pixel of the
validation and test blocks (``bench/out/calib/k{K}-fold{F}.npz``; rows go to
``bench/out/quality-calibration-dump.jsonl``). ``analyse`` fits a temperature on the
validation pixels with each objective of :data:`OBJECTIVES` and prints the test blocks' ECE,
for the network and for the mean with the forest (as ``geomm train --classifier auto`` builds
it), fold by fold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from geomm.model.calibrate import expected_calibration_error, fit_temperature, temper

sys.path.insert(0, str(Path(__file__).resolve().parent))
HERE = Path(__file__).resolve().parent
DUMPS = HERE / "out" / "calib"


def dump(ks: list[str], folds: list[int]) -> None:
    """Run the folds with hooks that save the probabilities scored on each fold."""
    import quality

    from geomm.learn import ensemble, heldout

    state: dict = {}
    plain_score, plain_mean = heldout.score_probs, ensemble.mean_probs

    def score_probs(store, probs, val_labels, test_mask):  # type: ignore[no-untyped-def]
        if "cnn" not in state:  # the first call of a fold: the network's own probabilities
            pv, yv = heldout._pixels(store, probs, val_labels)
            pt, yt = heldout._pixels(store, probs, test_mask)
            state.update(cnn=(pv, yv, pt, yt), masks=(val_labels, test_mask), store=store)
        return plain_score(store, probs, val_labels, test_mask)

    def mean_probs(cnn_probs, rf_probs, weight=ensemble.WEIGHT):  # type: ignore[no-untyped-def]
        store, masks = state["store"], dict(zip(("val", "test"), state["masks"], strict=True))
        labelled = store.labels() != store.ignore_value
        ok = rf_probs.sum(axis=0) > 0
        sel = {name: m & labelled & (cnn_probs.sum(axis=0) > 0) for name, m in masks.items()}
        state["rf"] = {name: rf_probs[:, s & ok].T for name, s in sel.items()}
        state["both"] = {name: ok[s] for name, s in sel.items()}
        return plain_mean(cnn_probs, rf_probs, weight)

    heldout.score_probs = score_probs  # type: ignore[assignment]
    ensemble.score_probs = score_probs  # type: ignore[attr-defined]
    ensemble.mean_probs = mean_probs  # type: ignore[assignment]
    from geomm.learn import crossval

    plain_crossval = crossval.crossval

    def one_fold(store, cfg, folds, echo):  # type: ignore[no-untyped-def]
        state.clear()
        report = plain_crossval(store, cfg, folds=folds, echo=echo)
        pv, yv, pt, yt = state["cnn"]
        k = "all" if cfg.polygons_per_class is None else cfg.polygons_per_class
        DUMPS.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(DUMPS / f"k{k}-fold{folds[0]}.npz", pv=pv, yv=yv, pt=pt, yt=yt,
                            rv=state["rf"]["val"], rt=state["rf"]["test"],
                            bv=state["both"]["val"], bt=state["both"]["test"])
        return report

    crossval.crossval = one_fold  # type: ignore[assignment]
    quality.OUT.mkdir(exist_ok=True)
    quality._run("s2-landcover", ks, folds, quality.OUT / "quality-calibration-dump.jsonl",
                 None)


def _brier(p: np.ndarray, y: np.ndarray) -> float:
    q = p.copy()
    q[np.arange(len(y)), y] -= 1
    return float((q ** 2).sum(axis=1).mean())


def _fit(p: np.ndarray, y: np.ndarray, loss) -> float:  # type: ignore[no-untyped-def]
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda lt: loss(temper(p, float(np.exp(lt))), y),
                          bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                          options={"xatol": 1e-3})
    return float(np.exp(res.x))


def _by_grid(p: np.ndarray, y: np.ndarray, loss) -> float:  # type: ignore[no-untyped-def]
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 61))
    return float(grid[int(np.argmin([loss(temper(p, t), y) for t in grid]))])


OBJECTIVES = {"none": None, "nll": fit_temperature,
              "brier": lambda p, y: _fit(p, y, _brier),
              "ece": lambda p, y: _by_grid(p, y, expected_calibration_error)}
"""Temperature fits compared: none (T = 1), negative log likelihood (the package's own
:func:`~geomm.model.calibrate.fit_temperature`), Brier score, and the validation ECE itself
(a grid of 61 temperatures)."""


def map_prior(pv: np.ndarray, yv: np.ndarray, pt: np.ndarray) -> float:
    """NLL temperature with the validation pixels weighted so that their classes have the
    shares the *map* predicts on the test blocks (argmax of ``pt``, no test labels used):
    calibrating for the mapped area's class mix instead of the validation regions'."""
    k = pv.shape[1]
    target = np.bincount(pt.argmax(axis=1), minlength=k) / len(pt)
    own = np.bincount(yv, minlength=k) / len(yv)
    w = target[yv] / own[yv]

    def nll(p: np.ndarray, y: np.ndarray) -> float:
        return float(-(w * np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1))).sum() / w.sum())

    return _fit(pv, yv, nll)


def analyse(folder: Path = DUMPS) -> None:
    """Each objective's temperature, fitted on the validation pixels, on the test blocks; and
    the NLL fit weighted to the map's predicted class mix (:func:`map_prior`); and the
    temperature that minimises the test blocks' own ECE (an oracle: the best any single
    temperature could do there). The CNN + RF mean where the dump has the forest's."""
    from geomm.learn.ensemble import WEIGHT

    oracle = OBJECTIVES["ece"]
    assert oracle is not None
    for path in sorted(folder.glob("*.npz")):
        d = np.load(path)
        pv, yv, pt, yt = d["pv"], d["yv"], d["pt"], d["yt"]
        acc_v, acc_t = (pv.argmax(1) == yv).mean(), (pt.argmax(1) == yt).mean()
        cells = []
        for name, fit in OBJECTIVES.items():
            t = 1.0 if fit is None else fit(pv, yv)
            cell = f"{name} T {t:5.2f} ECE {expected_calibration_error(temper(pt, t), yt):.3f}"
            if "rv" in d:
                mv = WEIGHT * temper(pv[d["bv"]], t) + (1 - WEIGHT) * d["rv"]
                mt = WEIGHT * temper(pt[d["bt"]], t) + (1 - WEIGHT) * d["rt"]
                t2 = 1.0 if fit is None else fit(mv, yv[d["bv"]])
                cell += f" mean ECE {expected_calibration_error(temper(mt, t2), yt[d['bt']]):.3f}"
            cells.append(cell)
        t = map_prior(pv, yv, pt)
        cells.append(f"map-prior T {t:5.2f} ECE "
                     f"{expected_calibration_error(temper(pt, t), yt):.3f}")
        t = oracle(pt, yt)
        cells.append(f"test's own T {t:5.2f} ECE "
                     f"{expected_calibration_error(temper(pt, t), yt):.3f}")
        print(f"{path.stem:<12} OA val {100 * acc_v:4.1f} test {100 * acc_t:4.1f} | "
              + " | ".join(cells), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["dump", "analyse"])
    ap.add_argument("--k", nargs="+", default=["all", "5"])
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--dir", type=Path, default=DUMPS,
                    help="analyse: the dumps' folder (also bench/weightchoice.py --dump's)")
    args = ap.parse_args(argv)
    if args.what == "dump":
        dump(args.k, args.folds)
    else:
        analyse(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
