"""Spatial-block cross-validation of the fusion CNN against the per-pixel baseline.

Every method of a fold sees the same split: the CNN trains on the training blocks (the next
fold validates, for early stopping), the random forest / SVM fits pixels of the same training
blocks, and both are scored on the held-out fold's labelled pixels only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from geomm.learn.config import TrainConfig
from geomm.metrics import Scores, confusion_matrix, scores
from geomm.stack.store import TileStore

__all__ = ["CrossvalReport", "FoldScore", "crossval"]


@dataclass(frozen=True)
class FoldScore:
    """One method on one fold."""

    method: str
    """``cnn``, ``rf``, ``svm``, ``cnn:<modality>`` or ``cnn:early``."""
    fold: int
    """The held-out fold."""
    scores: Scores
    """Accuracy on the held-out fold."""
    seconds: float
    """Wall time to fit and predict."""


@dataclass(frozen=True)
class CrossvalReport:
    """All folds of all methods, and the class names."""

    results: tuple[FoldScore, ...]
    """Per method and fold."""
    classes: tuple[str, ...]
    """Class names in id order."""

    def methods(self) -> list[str]:
        """Methods in the order they were run."""
        return list(dict.fromkeys(r.method for r in self.results))

    def table(self) -> str:
        """Markdown table: mean ± std over folds of OA, kappa, macro-F1 and per-class F1."""
        head = ["method", "folds", "OA %", "kappa", "macro-F1", *self.classes, "s/fold"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in self.methods():
            rs = [r for r in self.results if r.method == m]

            def ms(vals: Sequence[float], scale: float = 1.0, nd: int = 3) -> str:
                a = np.asarray(vals, dtype=float) * scale
                return f"{np.nanmean(a):.{nd}f} ± {np.nanstd(a):.{nd}f}"

            per_class = [ms([r.scores.f1[i] for r in rs], nd=2) for i in range(len(self.classes))]
            lines.append("| " + " | ".join([
                m, str(len(rs)), ms([r.scores.overall_accuracy for r in rs], 100, 1),
                ms([r.scores.kappa for r in rs]), ms([r.scores.macro_f1 for r in rs]),
                *per_class, f"{np.mean([r.seconds for r in rs]):.0f}"]) + " |")
        return "\n".join(lines)


def _score(store: TileStore, pred: np.ndarray, test_mask: np.ndarray, k: int) -> Scores:
    labels = np.asarray(store.base()["labels"].values)
    ignore = int(store.manifest["classes"]["ignore_value"])
    return scores(confusion_matrix(labels, pred, k, ignore_value=ignore,
                                   mask=test_mask & (pred != ignore)))


def _cnn(store: TileStore, cfg: TrainConfig, k: int, progress: bool,
         withhold: Sequence[str]) -> dict[str, Scores]:
    """Scores with every modality, then with each of ``withhold`` left out at inference."""
    from geomm.learn.train import fit_cnn
    from geomm.predict.infer import predict_store

    res = fit_cnn(store, cfg, progress=progress)
    out = {}
    for gone in ("", *withhold):
        if gone and (gone not in res.config.modalities or len(res.config.modalities) == 1):
            continue  # nothing to leave out, or nothing would be left
        pred, _ = predict_store(res.model, store, res.stats, missing={gone} - {""})
        out[gone] = _score(store, pred, res.test_mask, k)
    return out


def _classical(store: TileStore, kind: str, cfg: TrainConfig, k: int) -> Scores:
    from geomm.learn.baseline import (
        fit_classifier,
        pixel_features,
        predict_pixels,
        sample_training_pixels,
    )
    from geomm.learn.train import StoreDataModule

    masks = StoreDataModule.split_masks(store, cfg)
    train_mask, test_mask = masks[0], masks[2]
    px = sample_training_pixels(store, train_mask, seed=cfg.seed)
    X, _ = pixel_features(store, rows_cols=(px.rows, px.cols))
    model = fit_classifier(kind, X, px.labels, seed=cfg.seed)
    return _score(store, predict_pixels(model, store, test_mask), test_mask, k)


def crossval(store: TileStore, cfg: TrainConfig, *, folds: Sequence[int] | None = None,
             baselines: Sequence[str] = ("rf",), ablation: bool = False,
             withhold: Sequence[str] = (), progress: bool = False, fusion: bool = True,
             early: bool = True, echo: Callable[[str], object] = print) -> CrossvalReport:
    """Train and score the CNN and the baselines on the same spatial-block folds.

    Args:
        store: a tile store with raster labels.
        cfg: CNN training settings (``n_folds``, ``block_size``, seed ...).
        folds: which held-out folds to run (default: all ``cfg.n_folds``).
        baselines: classical methods, each of ``"rf"``, ``"svm"``.
        ablation: also train a CNN on each single modality and (``early``) an early-fusion
            CNN.
        fusion: train the fusion CNN itself (off: only the ablation variants, e.g. to add
            them to an earlier run; training is deterministic for a seed).
        early: include early fusion in the ablation.
        withhold: modalities to leave out at inference, one at a time, scored as
            ``<method>-without-<modality>`` (a sensor outage; see ``modality_dropout``).
        progress: show Lightning's progress bar.
        echo: receives one line per finished fold.
    """
    k = len(store.manifest["classes"]["classes"])
    names = tuple(c["name"] for c in store.manifest["classes"]["classes"])
    modalities = list(dict.fromkeys(lyr["modality"] for lyr in store.manifest["layers"]))
    variants: list[tuple[str, TrainConfig]] = [("cnn", cfg)] if fusion else []
    if ablation:
        variants += [(f"cnn:{m}", replace(cfg, modalities=(m,))) for m in modalities]
        if early:
            variants.append(("cnn:early", replace(cfg, fusion="early")))
    results: list[FoldScore] = []
    for fold in folds if folds is not None else range(cfg.n_folds):
        for name, vcfg in variants:
            t0 = time.perf_counter()
            by_gone = _cnn(store, replace(vcfg, test_fold=fold), k, progress, withhold)
            seconds = time.perf_counter() - t0
            for gone, sc in by_gone.items():
                results.append(FoldScore(f"{name}-without-{gone}" if gone else name, fold, sc,
                                         seconds))
                echo(_line(results[-1]))
        for kind in baselines:
            t0 = time.perf_counter()
            sc = _classical(store, kind, replace(cfg, test_fold=fold), k)
            results.append(FoldScore(kind, fold, sc, time.perf_counter() - t0))
            echo(_line(results[-1]))
    return CrossvalReport(tuple(results), names)


def _line(r: FoldScore) -> str:
    s = r.scores
    return (f"fold {r.fold} {r.method:<26} OA {100 * s.overall_accuracy:5.1f} "
            f"kappa {s.kappa:.3f} macro-F1 {s.macro_f1:.3f} ({r.seconds:.0f} s)")


def crossval_recipe(recipe: object, *, cfg: TrainConfig, folds: Sequence[int] | None = None,
                    baselines: Sequence[str] = ("rf",), ablation: bool = False,
                    withhold: Sequence[str] = (), workers: int | None = None,
                    fusion: bool = True, early: bool = True,
                    echo: Callable[[str], object] = print) -> CrossvalReport:
    """:func:`crossval` on a recipe's tile store (stacked first when needed)."""
    from geomm.learn.train import recipe_store

    return crossval(recipe_store(recipe, workers=workers), cfg, folds=folds,
                    baselines=baselines, ablation=ablation, withhold=withhold,
                    fusion=fusion, early=early, echo=echo)
