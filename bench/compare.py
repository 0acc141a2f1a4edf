"""Paired comparison of two sets of bench/quality.py rows, fold by fold:

    .venv/bin/python bench/compare.py --case BASE NEW K [--case BASE NEW K ...] [--method cnn]

BASE and NEW are ``FILE``, ``FILE@VARIANT`` or ``FILE@VARIANT@RECIPE`` (``-`` for rows
without a variant; a row with a ``recipe`` field must name that recipe, default
``s2-landcover``). Each case pairs the folds that both sets scored at budget K and prints
the method's OA fold by fold, the mean difference and how many folds it raised; with
several cases, their folds are pooled. The p-value is the sign-flip permutation test of the
paired differences (two-sided; exact up to 16 folds, else from random signs). With 5 folds
it cannot go below 2/32 = 0.0625: one case of 5 folds never shows a difference as more
than noise.
"""

from __future__ import annotations

import argparse
import itertools
import statistics as st
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import _read  # noqa: E402  (bench/quality.py's row reader)


def rows(spec: str, k: str, method: str) -> dict[int, dict]:
    """The rows of ``spec`` (FILE[@VARIANT[@RECIPE]]) at budget ``k`` for ``method``, by fold."""
    parts = spec.split("@")
    path, variant, recipe = (parts + ["-", "s2-landcover"][len(parts) - 1:])[:3]
    if not Path(path).is_file():
        raise SystemExit(f"{path}: no such rows file (give FILE[@VARIANT[@RECIPE]])")
    out = {}
    for r in _read(Path(path)):
        if ((r.get("variant") or "-") == variant and str(r["k"]) == k
                and r["method"] == method and r.get("recipe", recipe) == recipe):
            out[int(r["fold"])] = r
    return out


def sign_flip_p(diffs: list[float], draws: int = 200_000) -> float:
    """Two-sided p-value of a zero mean difference under random signs: exact up to 16
    differences, else from ``draws`` random sign vectors (seeded)."""
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    else:
        signs = np.random.default_rng(0).choice((1.0, -1.0), size=(draws, len(d)))
    return float(np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-9))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", nargs=3, action="append", required=True,
                    metavar=("BASE", "NEW", "K"))
    ap.add_argument("--method", default="cnn")
    args = ap.parse_args(argv)
    pooled: list[float] = []
    for base, new, k in args.case:
        b, n = rows(base, k, args.method), rows(new, k, args.method)
        folds = sorted(set(b) & set(n))
        if not folds:
            print(f"{new} k={k}: no fold in common with {base}", file=sys.stderr)
            return 1
        d = [100 * (n[f]["oa"] - b[f]["oa"]) for f in folds]
        pooled += d
        ece = [(b[f].get("ece"), n[f].get("ece")) for f in folds]
        ece_txt = (f", ECE {st.mean(e[0] for e in ece):.3f} -> {st.mean(e[1] for e in ece):.3f}"
                   if all(None not in e for e in ece) else "")
        secs = [(b[f]["seconds"], n[f]["seconds"]) for f in folds]
        print(f"{new} against {base}, k={k}, folds {folds}:")
        print("  OA % " + ", ".join(f"{100 * b[f]['oa']:.1f}->{100 * n[f]['oa']:.1f}"
                                    for f in folds))
        print(f"  mean {st.mean(100 * b[f]['oa'] for f in folds):.1f} -> "
              f"{st.mean(100 * n[f]['oa'] for f in folds):.1f} ({st.mean(d):+.1f}), "
              f"{sum(x > 0 for x in d)} of {len(d)} folds higher{ece_txt}, s/fold "
              f"{st.mean(s[0] for s in secs):.0f} -> {st.mean(s[1] for s in secs):.0f}")
    print(f"pooled: {len(pooled)} folds, mean {st.mean(pooled):+.2f} points, "
          f"{sum(x > 0 for x in pooled)} higher, {sum(x < 0 for x in pooled)} lower, "
          f"sign-flip p = {sign_flip_p(pooled):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
