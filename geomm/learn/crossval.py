"""Spatial-block cross-validation of the fusion CNN against the per-pixel baseline.

Every method of a fold sees the same split: the CNN trains on the training blocks (the next
fold validates, for early stopping), the random forest / SVM fits pixels of the same training
blocks, and both are scored on the held-out fold's labelled pixels only.
"""

from __future__ import annotations

import csv
import io
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from geomm.errors import LabelWarning, RecipeError
from geomm.learn.config import TrainConfig, check_settings
from geomm.learn.ensemble import score_ensemble
from geomm.learn.heldout import score_map, score_network_probs
from geomm.metrics import Scores
from geomm.stack.store import TileStore

__all__ = ["REPORT_FILES", "CrossvalReport", "FoldScore", "crossval"]


@dataclass(frozen=True)
class FoldScore:
    """One method on one fold."""

    method: str
    """``cnn``, ``rf``, ``svm``, ``cnn+rf`` (the mean of the two models' probabilities),
    ``auto`` (whichever of the three ``geomm train --classifier auto`` keeps: the best
    validation OA), ``cnn:<modality>`` or ``cnn:early``."""
    fold: int
    """The held-out fold."""
    scores: Scores
    """Accuracy on the held-out fold."""
    seconds: float
    """Wall time to fit and predict."""
    extra: dict[str, float] = field(default_factory=dict)
    """Other figures: the CNN's calibration error on the test blocks (``ece``, ``ece_before``)
    and its temperature."""


@dataclass(frozen=True)
class CrossvalReport:
    """All folds of all methods, and the class names."""

    results: tuple[FoldScore, ...]
    """Per method and fold."""
    classes: tuple[str, ...]
    """Class names in id order."""
    absent: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """Per fold: classes of the test blocks that the training labels do not have."""

    def methods(self) -> list[str]:
        """Methods in the order they were run."""
        return list(dict.fromkeys(r.method for r in self.results))

    def table(self) -> str:
        """Markdown table: mean ± std over folds of OA, kappa, macro-F1, per-class F1 and the
        expected calibration error after the temperature (networks only)."""
        head = ["method", "folds", "OA %", "kappa", "macro-F1", *self.classes, "ECE", "s/fold"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in self.methods():
            rs = [r for r in self.results if r.method == m]

            def ms(vals: Sequence[float], scale: float = 1.0, nd: int = 3) -> str:
                a = np.asarray(vals, dtype=float) * scale
                if not np.isfinite(a).any():
                    return "n/a"  # e.g. a class absent from every test fold
                ok = a[np.isfinite(a)]
                # a class absent from some test folds: its mean is of fewer folds than the row's
                few = f" ({ok.size} of {a.size} folds)" if ok.size < a.size else ""
                return f"{ok.mean():.{nd}f} ± {ok.std():.{nd}f}{few}"

            per_class = [ms([r.scores.f1[i] for r in rs], nd=2) for i in range(len(self.classes))]
            lines.append("| " + " | ".join([
                m, str(len(rs)), ms([r.scores.overall_accuracy for r in rs], 100, 1),
                ms([r.scores.kappa for r in rs]), ms([r.scores.macro_f1 for r in rs]),
                *per_class, ms([r.extra.get("ece", np.nan) for r in rs]),
                f"{np.mean([r.seconds for r in rs]):.0f}"]) + " |")
        for fold, names in sorted(self.absent.items()):
            if names:
                lines.append(f"\nfold {fold}: {', '.join(names)} absent from the training "
                             "labels (scored on the test blocks all the same)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: every method on every fold (scores per class keyed by name, ``None``
        for NaN), and per fold the classes absent from the training labels."""
        return {"classes": list(self.classes),
                "absent_from_training": {str(f): list(n) for f, n in sorted(self.absent.items())},
                "results": [{"method": r.method, "fold": r.fold, "seconds": round(r.seconds, 3),
                             **{k: _num(v) for k, v in r.extra.items()},
                             **({"chose_method": AUTO[int(r.extra["chose"])]}
                                if "chose" in r.extra else {}),
                             "scores": r.scores.to_dict(self.classes)} for r in self.results]}

    def csv(self) -> str:
        """One row per method and fold: OA, kappa, macro-F1, per-class F1 and IoU, the
        calibration figures and seconds (empty where a figure does not exist)."""
        extras = list(dict.fromkeys(k for r in self.results for k in r.extra))
        head = ["method", "fold", "overall_accuracy", "kappa", "macro_f1",
                *(f"f1:{c}" for c in self.classes), *(f"iou:{c}" for c in self.classes),
                *extras, "seconds"]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(head)
        for r in self.results:
            s = r.scores
            w.writerow([r.method, r.fold, *map(_cell, (s.overall_accuracy, s.kappa, s.macro_f1,
                                                       *s.f1, *s.iou)),
                        *(_cell(r.extra.get(k, np.nan)) for k in extras), f"{r.seconds:.3f}"])
        return buf.getvalue()

    def write(self, folder: Path) -> None:
        """:data:`REPORT_FILES` into ``folder``."""
        md, js, cs = (folder / n for n in REPORT_FILES)
        md.write_text(self.table() + "\n")
        js.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        cs.write_text(self.csv())


REPORT_FILES = ("crossval.md", "crossval.json", "crossval.csv")
"""What :meth:`CrossvalReport.write` (``geomm crossval --out``) writes."""


def _num(v: float) -> float | None:
    """``v`` for JSON: None where it is not finite (a fold without validation labels has
    val OA -inf, which JSON cannot hold)."""
    return float(v) if np.isfinite(v) else None


def _cell(v: float) -> str:
    return f"{float(v):.6g}" if np.isfinite(v) else ""


def _prefixed(echo: Callable[[str], object], head: str) -> Callable[[str], object]:
    """``echo`` with ``head`` before each line (whose own indent it drops)."""
    return lambda line: echo(head + line.lstrip())


def _cnn(store: TileStore, cfg: TrainConfig, progress: bool,
         withhold: Sequence[str], echo: Callable[[str], object] | None = None
         ) -> tuple[dict[str, tuple[Scores, dict[str, float]]], np.ndarray]:
    """Scores with every modality (calibrated on the validation labels, with the test blocks'
    calibration error), then with each of ``withhold`` left out at inference; and the
    calibrated probabilities with every modality."""
    from geomm.learn.train import fit_cnn
    from geomm.predict.infer import predict_store

    res = fit_cnn(store, cfg, progress=progress, echo=echo)
    held, _, probs = score_network_probs(res.model, store, res.stats, res.val_labels,
                                         res.test_mask)
    out = {"": (held.test, {"ece": held.ece_test[1], "ece_before": held.ece_test[0],
                            "temperature": held.temperature,
                            "best_epoch": res.metrics.get("best_epoch", -1.0),
                            "kept_epoch": res.metrics.get("kept_epoch", -1.0),
                            "members": res.metrics.get("members", 1.0),
                            "val_oa": held.val_oa})}
    for gone in withhold:
        if gone not in res.config.modalities or len(res.config.modalities) == 1:
            continue  # nothing to leave out, or nothing would be left
        pred, _ = predict_store(res.model, store, res.stats, missing={gone})
        out[gone] = (score_map(store, pred, res.test_mask), {})
    return out, probs


def crossval(store: TileStore, cfg: TrainConfig, *, folds: Sequence[int] | None = None,
             baselines: Sequence[str] = ("rf",), ablation: bool = False,
             withhold: Sequence[str] = (), progress: bool = False, fusion: bool = True,
             early: bool = True, echo: Callable[[str], object] = print) -> CrossvalReport:
    """Train and score the CNN and the baselines on the same spatial-block folds.

    Args:
        store: a tile store with raster labels.
        cfg: CNN training settings (``n_folds``, ``block_size``, seed ...).
        folds: which held-out folds to run (default: all ``cfg.n_folds``).
        baselines: classical methods, each of ``"rf"``, ``"svm"``; with the fusion CNN, a
            random forest is also scored averaged with it (``cnn+rf``).
        ablation: also train a CNN on each single modality and (``early``) an early-fusion
            CNN.
        fusion: train the fusion CNN itself (off: only the ablation variants, e.g. to add
            them to an earlier run; training is deterministic for a seed).
        early: include early fusion in the ablation.
        withhold: modalities to leave out at inference, one at a time, scored as
            ``<method>-without-<modality>`` (a sensor outage; see ``modality_dropout``).
        progress: show Lightning's progress bar.
        echo: receives a line when a fold or a model starts, one per training epoch (unless
            ``progress``) and one per finished model.
    """
    from geomm.learn.pixelfit import fit_pixel_classifier

    names = tuple(c["name"] for c in store.manifest["classes"]["classes"])
    modalities = list(dict.fromkeys(lyr["modality"] for lyr in store.manifest["layers"]))
    unknown = [m for m in withhold if m not in modalities]
    if unknown:
        raise RecipeError(f"--withhold {unknown[0]}: not a modality of the store {store.path} "
                          f"(it has {', '.join(modalities)})")
    variants: list[tuple[str, TrainConfig]] = [("cnn", cfg)] if fusion else []
    if ablation:
        variants += [(f"cnn:{m}", replace(cfg, modalities=(m,))) for m in modalities]
        if early:
            variants.append(("cnn:early", replace(cfg, fusion="early")))
    from geomm.learn.config import patch_for
    from geomm.learn.masks import small_blocks

    if note := small_blocks(store, cfg, patch_for(store, cfg)):
        warnings.warn(note, LabelWarning, stacklevel=2)  # as `geomm train` says it
    results: list[FoldScore] = []
    run = list(folds if folds is not None else range(cfg.n_folds))
    check_settings(cfg, folds=run, network=bool(variants))
    # every fold's labels (and label budget) are checked before the first fold trains
    absent = {fold: _absent_from_training(store, replace(cfg, test_fold=fold)) for fold in run}
    for i, fold in enumerate(run):
        echo(f"fold {fold} ({i + 1} of {len(run)}): "
             + (f"classes absent from training: {', '.join(absent[fold])}" if absent[fold]
                else "every class of the test blocks is in the training blocks"))
        cnn_probs: np.ndarray | None = None
        cnn_seconds = 0.0
        for name, vcfg in variants:
            t0 = time.perf_counter()
            by_gone, probs = _cnn(store, replace(vcfg, test_fold=fold), progress, withhold,
                                  _prefixed(echo, f"fold {fold} {name}: "))
            seconds = time.perf_counter() - t0
            if name == "cnn":
                cnn_probs, cnn_seconds = probs, seconds
            for gone, (sc, extra) in by_gone.items():
                results.append(FoldScore(f"{name}-without-{gone}" if gone else name, fold, sc,
                                         seconds, extra))
                echo(_line(results[-1]))
        for kind in baselines:
            t0 = time.perf_counter()
            fit = fit_pixel_classifier(store, replace(cfg, test_fold=fold), kind)
            seconds = time.perf_counter() - t0
            results.append(FoldScore(kind, fold, fit.held.test, seconds,
                                     {"val_oa": fit.held.val_oa}))
            echo(_line(results[-1]))
            if cnn_probs is not None and fit.probs is not None:
                t0 = time.perf_counter()
                held = score_ensemble(store, cnn_probs, fit)
                results.append(FoldScore(
                    f"cnn+{kind}", fold, held.test,
                    cnn_seconds + seconds + time.perf_counter() - t0,
                    {"ece": held.ece_test[1], "ece_before": held.ece_test[0],
                     "temperature": held.temperature, "val_oa": held.val_oa}))
                echo(_line(results[-1]))
                if kind == "rf":  # what `geomm train --classifier auto` chooses from
                    results.append(_auto(results, fold))
                    echo(_line(results[-1]))
    return CrossvalReport(tuple(results), names, absent)


AUTO = ("cnn", "rf", "cnn+rf")
"""What ``auto`` chooses from, in order of preference among equals (``extra["chose"]`` is
the index)."""


def _auto(results: list[FoldScore], fold: int) -> FoldScore:
    """What ``geomm train --classifier auto`` would keep: the CNN, the forest or their
    mean, whichever scored the best validation OA on this fold."""
    names = AUTO
    got = {r.method: r for r in results if r.fold == fold and r.method in names}
    best = max(names, key=lambda n: got[n].extra["val_oa"])  # the first of equals
    pick = got[best]
    return FoldScore("auto", fold, pick.scores, got["cnn+rf"].seconds,
                     {**pick.extra, "chose": float(names.index(best))})


def _absent_from_training(store: TileStore, cfg: TrainConfig) -> tuple[str, ...]:
    """Classes labelled in the test blocks but not in the (budgeted) training labels."""
    from geomm.learn.masks import class_coverage

    names, trained, tested = class_coverage(store, cfg)
    return tuple(n for n, s, t in zip(names, trained, tested, strict=True) if t and not s)


def _line(r: FoldScore) -> str:
    s = r.scores
    ece = (f" ECE {r.extra['ece_before']:.3f} -> {r.extra['ece']:.3f}"
           if "ece" in r.extra else "")
    return (f"fold {r.fold} {r.method:<26} OA {100 * s.overall_accuracy:5.1f} "
            f"kappa {s.kappa:.3f} macro-F1 {s.macro_f1:.3f}{ece} ({r.seconds:.0f} s)")


def crossval_recipe(recipe: object, *, cfg: TrainConfig, folds: Sequence[int] | None = None,
                    baselines: Sequence[str] = ("rf",), ablation: bool = False,
                    withhold: Sequence[str] = (), workers: int | None = None,
                    fusion: bool = True, early: bool = True,
                    echo: Callable[[str], object] = print) -> CrossvalReport:
    """:func:`crossval` on a recipe's tile store (stacked first when needed)."""
    from geomm.learn.train import recipe_store

    check_settings(cfg, folds=folds or (), network=fusion or ablation)  # before any stacking
    return crossval(recipe_store(recipe, workers=workers), cfg, folds=folds,
                    baselines=baselines, ablation=ablation, withhold=withhold,
                    fusion=fusion, early=early, echo=echo)
