"""Self-training with few labels: do the teacher's confident pixels teach a better student?

    .venv/bin/python bench/pseudo.py --k 5 --folds 0 1 2 3 4 [--recipe R] [--seed S]

Runs against the package of commit 1f71355, which had self-training (``git worktree add
/tmp/st 1f71355`` and run it there); it was measured, not kept, and removed in the next
commit (bench/quality.md, "Self-training with few labels").

With a handful of polygons per class, the training blocks hold hundreds of thousands of
pixels that no label covers. ``geomm.learn.selftrain``
trains a teacher (what the package trained before: the mean of several networks on the
budget's labels, its temperature fitted on the validation labels), whose map of the
training blocks gives pseudo-labels (per class it predicts there, the ``PSEUDO_TOP``
fraction of those pixels it is most confident about, outside the budget's own labelled
pixels), then as many students on labels and pseudo-labels. This script trains with
``self_train=True`` and scores the teacher's networks, the students' and the mean of all
(the model) on the same test pixels, each calibrated on the same validation labels; and
how often the pseudo-labels agree with the labels the user did not give. Rows go to
``bench/out/pseudo-<recipe>.jsonl``. The rows in ``bench/results/pseudo-self-training.jsonl``
came from a first form of this script (not committed) that trained the students itself
with the package's pieces, the same seeds and ``top`` 0.2 or 0.05, before the package had
self-training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OUT = HERE / "out"


def run(recipe: str, ks: list[str], folds: list[int], seed: int, log: Path) -> None:
    # geomm.learn.selftrain is commit 1f71355's (removed since), so not sorted as first-party
    from geomm.learn.config import TrainConfig  # noqa: I001
    from geomm.learn.heldout import score_network_probs
    from geomm.learn.masks import label_masks, split_masks
    from geomm.learn.selftrain import PSEUDO_TOP, student_labels
    from geomm.learn.train import fit_cnn, recipe_store
    from geomm.model.members import MemberMean
    from geomm.recipe import load_recipe
    from quality import _read

    store = recipe_store(load_recipe(recipe))
    n_classes = len(store.manifest["classes"]["classes"])
    true = store.labels()
    done = {(r["k"], r["fold"]) for r in _read(log) if r.get("top") == PSEUDO_TOP
            and r.get("seed") == seed}
    for k in ks:
        for f in folds:
            if (k, f) in done:
                continue
            cfg = TrainConfig(test_fold=f, seed=seed, self_train=True,
                              polygons_per_class=None if k == "all" else int(k))
            t0 = time.perf_counter()
            res = fit_cnn(store, cfg, progress=False)
            seconds = time.perf_counter() - t0
            nets = list(res.model.members)
            n = len(nets) // 2

            def scored(model, r=res):  # noqa: ANN001, ANN202
                return score_network_probs(model, store, r.stats, r.val_labels, r.test_mask)

            held_t, _, probs_t = scored(nets[0] if n == 1 else MemberMean(nets[:n]))
            held_s, _, _ = scored(nets[n] if n == 1 else MemberMean(nets[n:]))
            held_b, _, _ = scored(res.model)
            train_mask, val_mask, _, _ = split_masks(store, cfg)
            budget, _ = label_masks(store, cfg, train_mask, val_mask)
            labels, allowed = student_labels(true, probs_t, budget, train_mask, n_classes)
            pseudo = allowed & ~budget
            right = pseudo & (true < n_classes)
            row = dict(k=k, fold=f, seed=seed, top=PSEUDO_TOP, members=n,
                       teacher_oa=held_t.test.overall_accuracy, teacher_ece=held_t.ece_test[1],
                       student_oa=held_s.test.overall_accuracy, student_ece=held_s.ece_test[1],
                       student_val_oa=held_s.val_oa, teacher_val_oa=held_t.val_oa,
                       mean_oa=held_b.test.overall_accuracy, mean_ece=held_b.ece_test[1],
                       mean_val_oa=held_b.val_oa, pseudo_px=int(pseudo.sum()),
                       budget_px=int(budget.sum()),
                       pseudo_oa=float(np.mean(labels[right] == true[right])) if right.any()
                       else None, train_s=seconds)
            print(json.dumps(row), flush=True)
            with log.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", nargs="+", default=["5"])
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--recipe", default="s2-landcover")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    run(a.recipe, a.k, a.folds, a.seed,
        OUT / f"pseudo-{Path(a.recipe).stem}.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
