"""Map quality under a label budget: the learning curve of the fusion CNN against the forest.

    .venv/bin/python bench/quality.py [--recipe s2-landcover|FILE.yaml] [--k 3 5 10 25 all]
                                      [--folds 0 1 2 3 4] [--render-only]

For each label budget k (polygons per class, drawn with the seed from the non-test blocks;
``all`` = every label) and each spatial fold, ``geomm.learn.crossval`` trains the CNN and the
random forest on the same labels and scores both on the same held-out test blocks. Every
finished (k, fold) is appended to ``bench/out/quality-<recipe>.jsonl`` at once, so a run that
is stopped resumes where it was; ``--render-only`` prints the table and rewrites the plot
(``bench/quality-<recipe>.png``) from that file. The measured rows are kept in
``bench/results/quality-<recipe>.jsonl``: copy it to ``bench/out/`` to add budgets to them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


def _run(recipe: str, ks: list[str], folds: list[int], log: Path, erode: int | None = 0,
         over: dict | None = None, variant: str | None = None) -> None:
    """Run the folds of each label budget not yet in ``log`` (rows of ``variant`` when
    given), with ``TrainConfig`` fields ``over`` set; one row per method and fold."""
    from geomm.learn.config import TrainConfig
    from geomm.learn.crossval import crossval
    from geomm.learn.train import recipe_store
    from geomm.metrics import _num
    from geomm.recipe import load_recipe

    done = {(r["k"], r["fold"]) for r in _read(log) if r.get("variant") == variant}
    store = recipe_store(load_recipe(recipe))
    for k in ks:
        for fold in folds:
            if (k, fold) in done:
                continue
            cfg = replace(TrainConfig(), polygons_per_class=None if k == "all" else int(k),
                          erode_labels=erode, **(over or {}))
            t0 = time.perf_counter()
            report = crossval(store, cfg, folds=[fold], echo=lambda s: print(s, flush=True))
            for r in report.results:
                s = r.scores
                row = {**({"variant": variant} if variant else {}), "k": k, "fold": fold,
                       "method": r.method, "oa": s.overall_accuracy,
                       "kappa": s.kappa, "macro_f1": s.macro_f1, "seconds": r.seconds,
                       "ece": r.extra.get("ece"), "ece_before": r.extra.get("ece_before"),
                       "val_oa": r.extra.get("val_oa"), "chose": r.extra.get("chose"),
                       "absent": list(report.absent.get(fold, ())),
                       "members": r.extra.get("members"),
                       "support": [int(v) for v in s.support],
                       "recall": [_num(v) for v in s.recall],
                       "precision": [_num(v) for v in s.precision]}
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            print(f"k={k} fold {fold}: {time.perf_counter() - t0:.0f} s", flush=True)


def _read(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _render(recipe: str, log: Path) -> str:
    rows = _read(log)
    ks = list(dict.fromkeys(r["k"] for r in rows))
    lines = ["| k (polygons / class) | folds | CNN OA % | RF OA % | CNN − RF | CNN+RF OA % | "
             "auto OA % (kept: CNN/RF/mean) | "
             "CNN kappa | RF kappa | CNN macro-F1 | RF macro-F1 | CNN ECE | CNN+RF ECE | "
             "CNN s/fold | RF s/fold |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    curve = []
    for k in ks:
        cnn = {r["fold"]: r for r in rows if r["k"] == k and r["method"] == "cnn"}
        rf = {r["fold"]: r for r in rows if r["k"] == k and r["method"] == "rf"}
        ens = {r["fold"]: r for r in rows if r["k"] == k and r["method"] == "cnn+rf"}
        auto = {r["fold"]: r for r in rows if r["k"] == k and r["method"] == "auto"}
        kept = np.bincount([int(r["chose"]) for r in auto.values()], minlength=3)
        both = sorted(set(cnn) & set(rf))
        if not both:
            continue

        def ms(src: dict, key: str, scale: float = 1.0, nd: int = 1,
               both: list[int] = both) -> str:
            v = np.array([src[f][key] for f in both
                          if f in src and src[f].get(key) is not None], float)
            v = v[np.isfinite(v)] * scale
            return "n/a" if not v.size else f"{v.mean():.{nd}f} ± {v.std():.{nd}f}"

        diff = np.array([cnn[f]["oa"] - rf[f]["oa"] for f in both]) * 100
        ens_oa = [ens[f]["oa"] * 100 for f in both if f in ens]
        curve.append((k, np.mean([cnn[f]["oa"] for f in both]) * 100,
                      np.mean([rf[f]["oa"] for f in both]) * 100,
                      np.mean(ens_oa) if len(ens_oa) == len(both) else np.nan))
        lines.append(f"| {k} | {len(both)} | {ms(cnn, 'oa', 100)} | {ms(rf, 'oa', 100)} | "
                     f"{diff.mean():+.1f} (min {diff.min():+.1f}) | {ms(ens, 'oa', 100)} | "
                     f"{ms(auto, 'oa', 100)} ({'/'.join(map(str, kept)) if auto else '-'}) | "
                     f"{ms(cnn, 'kappa', nd=3)} | "
                     f"{ms(rf, 'kappa', nd=3)} | {ms(cnn, 'macro_f1', nd=3)} | "
                     f"{ms(rf, 'macro_f1', nd=3)} | {ms(cnn, 'ece', nd=3)} | "
                     f"{ms(ens, 'ece', nd=3)} | "
                     f"{np.mean([cnn[f]['seconds'] for f in both]):.0f} | "
                     f"{np.mean([rf[f]['seconds'] for f in both]):.0f} |")
    if curve:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
        x = np.arange(len(curve))
        ax.plot(x, [c[1] for c in curve], "o-", label="fusion CNN")
        ax.plot(x, [c[2] for c in curve], "s--", label="random forest")
        if np.isfinite([c[3] for c in curve]).all():
            ax.plot(x, [c[3] for c in curve], "^:", label="CNN + RF (mean)")
        ax.set_xticks(x, [str(c[0]) for c in curve])
        ax.set_xlabel("labelled polygons per class")
        ax.set_ylabel("OA % (mean of folds)")
        ax.set_title(f"{recipe}: label budget, spatial folds")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(HERE / f"quality-{recipe}.png")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="s2-landcover")
    ap.add_argument("--k", nargs="+", default=["3", "5", "10", "25", "all"])
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--erode", type=int, default=None,
                    help="training labels without their edges (px; default: geomm's); "
                         "a value other than the default gets its own log file")
    ap.add_argument("--render-only", action="store_true")
    args = ap.parse_args(argv)
    OUT.mkdir(exist_ok=True)
    from geomm.learn.config import TrainConfig

    erode = TrainConfig().erode_labels if args.erode is None else args.erode
    tag = "" if erode == TrainConfig().erode_labels else f"-erode{erode}"
    name = Path(args.recipe).stem  # a bundled recipe's name, or a recipe file's
    log = OUT / f"quality-{name}{tag}.jsonl"
    if not args.render_only:
        _run(args.recipe, args.k, args.folds, log, erode)
    print(_render(name, log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
