"""Which weights of a trained network to map with, one training per fold scored four ways:

- ``best``: the epoch with the best validation OA from a quarter of the epochs on
  (:class:`geomm.learn.callbacks.BestWeights`; ``--keep best``, the package's choice for
  each of several networks until commit 32875d0);
- ``last``: the last epoch's weights (the package's choice for a single network since
  commit 06bb4e9, for every network since 32875d0; the schedule runs to its end: rows from
  before 06bb4e9 may end early, where early stopping fired);
- ``swa``: the mean of the weights of the epochs from half-way on (stochastic weight
  averaging), with the batch-norm statistics recomputed over one epoch of training patches;
- ``snapshots``: the mean of the probabilities of the epochs at half, three quarters and the
  end (a snapshot ensemble; three maps).

With few labels (a mean of several networks, :func:`geomm.learn.config.members_for`) the
networks are trained to the end of their schedules and two choices are scored: ``best``,
each network's best validation epoch where early stopping (``val_loss``, the package's
patience) would have ended it (what ``--keep best`` keeps, emulated from the logged
epochs: training is deterministic, so the epochs before the stop are the same), and
``last``.

Each is calibrated on the validation labels and scored on the test blocks, as
``geomm crossval`` does. Rows go to ``bench/out/weightchoice-<recipe>.jsonl`` (resumable)::

    .venv/bin/python bench/weightchoice.py [--k all] [--folds 0 1 2 3 4] [--dump DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def _hooks() -> tuple[list[tuple[int, dict[str, Any], dict[str, float]]], list[Any]]:
    """Record every validated epoch's weights and figures, and the data module fit_cnn
    builds."""
    from geomm.learn import callbacks, datamodule

    snaps: list[tuple[int, dict[str, Any], dict[str, float]]] = []
    dms: list[Any] = []
    plain = callbacks.BestWeights.on_validation_end

    def on_validation_end(self: Any, trainer: Any, pl_module: Any) -> None:
        plain(self, trainer, pl_module)
        snaps.append((int(trainer.current_epoch),
                      {k: t.detach().clone() for k, t in pl_module.model.state_dict().items()},
                      {k: float(v) for k, v in trainer.callback_metrics.items()}))

    class Recorded(datamodule.StoreDataModule):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            dms.append(self)

    callbacks.BestWeights.on_validation_end = on_validation_end  # type: ignore[method-assign]
    datamodule.StoreDataModule = Recorded  # type: ignore[misc]
    return snaps, dms


def _mean_state(states: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: (sum(s[k].float() for s in states) / len(states)).to(v.dtype)
            if v.is_floating_point() else v for k, v in states[-1].items()}


def _recompute_bn(model: Any, dm: Any) -> None:
    """Batch-norm statistics of ``model`` over one epoch of ``dm``'s training patches."""
    import torch

    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative mean over the pass
    model.train()
    with torch.no_grad():
        for batch in dm.train_dataloader():
            model({k: v.contiguous(memory_format=torch.channels_last)
                   for k, v in batch.items() if "/" in k})
    model.eval()


def _mapped(res: Any, store: Any, state: dict[str, Any], bn_from: Any = None) -> np.ndarray:
    """The scene's class probabilities from ``res.model`` with ``state`` loaded (and its
    batch-norm statistics recomputed over ``bn_from``'s training patches); 0 where no data."""
    import copy

    from geomm.predict.infer import predict_store

    net = copy.deepcopy(res.model)
    net.load_state_dict(state)
    if bn_from is not None:
        _recompute_bn(net, bn_from)
    pred, p = predict_store(net.eval(), store, res.stats)
    p[:, pred == store.ignore_value] = 0
    return p


def _members_picks(res: Any, store: Any, snaps: list[tuple[int, dict[str, Any],
                                                                dict[str, float]]]
                   ) -> tuple[list[int], list[int], dict[str, np.ndarray]]:
    """Several networks, each trained to its schedule's end: the mean of their best epochs
    where early stopping would have ended them, and of their last epochs."""
    epochs = int(res.train_config.max_epochs)
    patience = int(res.train_config.patience)
    runs: list[list[tuple[int, dict[str, Any], dict[str, float]]]] = []
    for snap in snaps:  # each network's epochs count from 0 again
        if snap[0] == 0 or not runs:
            runs.append([])
        runs[-1].append(snap)
    best_states, last_states, best_at, last_at = [], [], [], []
    for run in runs:
        low, low_at, stop = float("inf"), -1, run[-1][0]
        for e, _, m in run:  # lightning's EarlyStopping("val_loss", patience)
            if m["val_loss"] < low:
                low, low_at = m["val_loss"], e
            elif e - low_at >= patience:
                stop = e
                break
        seen = [(e, s, m) for e, s, m in run if e <= stop
                and (e >= epochs // 4 or e + 1 >= epochs)]  # BestWeights' candidates
        e, state, _ = max(seen, key=lambda r: (r[2]["val_oa"], -r[0]))
        best_states.append(state)
        best_at.append(e)
        last_states.append(run[-1][1])
        last_at.append(run[-1][0])

    def joined(states: list[dict[str, Any]]) -> dict[str, Any]:
        return {f"members.{i}.{k}": v for i, s in enumerate(states) for k, v in s.items()}

    return best_at, last_at, {"best": _mapped(res, store, joined(best_states)),
                              "last": _mapped(res, store, joined(last_states))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="s2-landcover")
    ap.add_argument("--k", nargs="+", default=["all"])
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--over", default="{}", help="TrainConfig overrides, as JSON")
    ap.add_argument("--log", type=Path, default=None)
    ap.add_argument("--dump", type=Path, default=None,
                    help="a folder for each choice's probabilities at the validation and "
                         "test labels (uncalibrated), as k{K}-fold{F}-{choice}.npz")
    args = ap.parse_args(argv)

    from geomm.learn.config import TrainConfig
    from geomm.learn.heldout import score_probs
    from geomm.learn.train import fit_cnn, recipe_store
    from geomm.recipe import load_recipe

    snaps, dms = _hooks()
    store = recipe_store(load_recipe(args.recipe))
    log = args.log or OUT / f"weightchoice-{args.recipe}.jsonl"
    done = ({(r["k"], r["fold"]) for r in map(json.loads, log.read_text().splitlines())}
            if log.exists() else set())
    for k in args.k:
        for fold in args.folds:
            if (k, fold) in done:
                continue
            snaps.clear()
            dms.clear()
            cfg = replace(TrainConfig(), test_fold=fold,
                          polygons_per_class=None if k == "all" else int(k),
                          **{**json.loads(args.over), "keep": "last"})  # to the end
            t0 = time.perf_counter()
            res = fit_cnn(store, cfg, progress=False, echo=lambda s: print(s, flush=True))
            train_s = time.perf_counter() - t0
            best: int | list[int]
            last: int | list[int]
            if res.metrics.get("members", 1.0) != 1.0:
                best, last, picks = _members_picks(res, store, snaps)
            else:
                by_epoch = {e: s for e, s, _ in snaps}
                last = end = max(by_epoch)
                best = at = int(res.metrics["best_epoch"])
                swa = _mean_state([s for e, s, _ in snaps if e >= (end + 1) // 2])
                thirds = sorted({(end + 1) // 2, 3 * (end + 1) // 4 - 1, end})
                probs = {e: _mapped(res, store, by_epoch[e]) for e in {at, *thirds}}
                picks = {"best": probs[at], "last": probs[end],
                         "swa": _mapped(res, store, swa, dms[-1]),
                         "snapshots": np.mean([probs[e] for e in thirds], axis=0)}
            for name, p in picks.items():
                held, _, _ = score_probs(store, p, res.val_labels, res.test_mask)
                if args.dump and res.val_labels is not None:  # for offline calibration
                    from geomm.learn.heldout import _pixels

                    args.dump.mkdir(parents=True, exist_ok=True)
                    pv, yv = _pixels(store, p, res.val_labels)
                    pt, yt = _pixels(store, p, res.test_mask)
                    np.savez_compressed(args.dump / f"k{k}-fold{fold}-{name}.npz",
                                        pv=pv, yv=yv, pt=pt, yt=yt)
                row = {"k": k, "fold": fold, "method": name,
                       "oa": held.test.overall_accuracy, "kappa": held.test.kappa,
                       "macro_f1": held.test.macro_f1, "ece": held.ece_test[1],
                       "ece_before": held.ece_test[0], "val_oa": held.val_oa,
                       "best_epoch": best, "epochs": (last + 1 if isinstance(last, int)
                                                      else [e + 1 for e in last]),
                       "train_s": train_s}
                print(f"k={k} fold {fold} {name:9s} OA {100 * row['oa']:.1f} "
                      f"ECE {row['ece']:.3f} val OA {100 * row['val_oa']:.1f}", flush=True)
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
