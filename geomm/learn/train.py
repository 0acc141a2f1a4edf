"""Training: a datamodule over a tile store, the fit loop and the CNN bundle it writes.

The datamodule cuts the store into spatially disjoint blocks (:mod:`geomm.learn.split`), draws
fresh random training patches every epoch from the training blocks only (labels of any other
block are ignored inside a patch), computes normalisation statistics on the training pixels
alone, and validates on a regular grid of patches of the validation blocks.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geomm.errors import LabelWarning, RecipeError, StaleStoreError
from geomm.learn.config import (
    TrainConfig,
    check_settings,
    epochs_for,
    keep_for,
    members_for,
    model_config_for,
    patch_for,
    train_config_dict,
    trainer_device,
)
from geomm.learn.heldout import HeldOutScores, score_network_probs
from geomm.learn.interrupt import fit_or_interrupt, removed_on_failure
from geomm.learn.pixelfit import PixelFit, fit_pixel_classifier, save_pixel_fit
from geomm.learn.result import TrainResult, save_cnn_bundle
from geomm.model.netbundle import state_tensors
from geomm.model.network import ModelConfig, MultiBranchNet
from geomm.stack.store import TileStore

__all__ = ["PixelFit", "TrainConfig", "TrainResult", "fit_cnn", "fit_pixel_classifier",
           "model_config_for", "save_cnn_bundle", "score_result", "train_recipe"]


def __getattr__(name: str) -> Any:
    """``FusionTask`` and ``StoreDataModule`` on first use: Lightning takes ~7 s to import,
    and the per-pixel baselines never need it."""
    if name == "FusionTask":
        from geomm.learn.task import FusionTask

        return FusionTask
    if name == "StoreDataModule":
        from geomm.learn.datamodule import StoreDataModule

        return StoreDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fit_cnn(store: TileStore, cfg: TrainConfig, *, log_dir: Path | None = None,
            progress: bool = True, echo: Callable[[str], object] | None = None) -> TrainResult:
    """Train a fusion CNN on ``store`` with a spatial-block split, on ``cfg.device``
    (deterministic on the CPU); the model comes back on the CPU.

    With few labels (:func:`~geomm.learn.config.members_for`) several networks are trained
    alike, each from other starting weights and patches, and the model is their
    :class:`~geomm.model.members.MemberMean`. Each network keeps the weights its schedule
    ends with, or those of its epoch with the highest validation OA from the first quarter
    of ``max_epochs`` on (:func:`~geomm.learn.config.keep_for`; the best epoch's too where
    the time budget ended a schedule sooner);
    ``metrics`` holds the kept epoch's figures of the last network, ``kept_epoch`` and
    ``best_epoch`` (0-based) and ``members``.
    ``echo``, when given, receives a line as each network starts (several) and, without the
    progress bar, one per epoch.
    """
    t0 = time.perf_counter()
    import lightning.pytorch as pl

    from geomm.learn.datamodule import StoreDataModule
    from geomm.model.members import MemberMean

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = StoreDataModule(store, cfg)
    cfg = replace(cfg, max_epochs=epochs_for(cfg, dm.labelled_px))
    mcfg = model_config_for(store, cfg, dm.labelled_px)
    n = members_for(cfg, dm.labelled_px)
    if echo is not None:
        echo(training_plan(n, cfg, mcfg.width, dm.steps))
    keep = keep_for(cfg)
    nets: list[MultiBranchNet] = []
    metrics: dict[str, float] = {}
    for m in range(n):
        if m and cfg.max_minutes and time.perf_counter() - t0 >= 60 * cfg.max_minutes:
            if echo is not None:
                echo(f"  time budget of {cfg.max_minutes:g} min spent after {m} of {n} "
                     "networks: the model is " + ("that one" if m == 1 else "their mean"))
            break  # the networks trained so far make the model; no 1-second members
        if m:  # the first member is what a single network always was, bit for bit
            pl.seed_everything(cfg.seed + 1000 * m, workers=True, verbose=False)
        if echo is not None and n > 1:
            echo(f"  network {m + 1} of {n} (their mean is the model)")
        dm.member = m
        budget = network_budget_s(cfg, time.perf_counter() - t0, n - m)
        net, metrics = _fit_network(dm, mcfg, cfg, keep, budget, progress, echo,
                                    log_dir if log_dir is None or n == 1
                                    else log_dir / f"network-{m + 1}")
        nets.append(net)
    n = len(nets)
    model = nets[0] if n == 1 else MemberMean(nets)
    metrics.update(members=float(n), seconds=time.perf_counter() - t0)
    return TrainResult(model, model.config, dm.stats, dm.split, dm.test_mask,
                       replace(cfg, patch_size=dm.patch_size, width=mcfg.width, members=n,
                               erode_labels=dm.erode_labels), metrics,
                       val_labels=dm.val_labels)


def training_plan(networks: int, cfg: TrainConfig, width: int, steps: int) -> str:
    """The line that says what :func:`fit_cnn` trains (a GUI reads its progress from it)."""
    def n(count: int | None, noun: str) -> str:
        return f"{count} {noun}" + ("" if count == 1 else "s")

    return (f"training {n(networks, 'network')} of width {width}: at most "
            f"{n(cfg.max_epochs, 'epoch')} of {n(steps, 'step')} each"
            + (f", {cfg.max_minutes:g} min in all" if cfg.max_minutes else ""))


def network_budget_s(cfg: TrainConfig, spent_s: float, left: int) -> float | None:
    """Seconds of ``cfg.max_minutes`` for the next of ``left`` networks still to train after
    ``spent_s`` (an equal share of what is left, at least a second between them); None
    without a budget."""
    if not cfg.max_minutes:
        return None
    return max(1.0, 60 * cfg.max_minutes - spent_s) / left


def _fit_network(dm: Any, mcfg: ModelConfig, cfg: TrainConfig, keep: str,
                 budget_s: float | None, progress: bool, echo: Callable[[str], object] | None,
                 log_dir: Path | None) -> tuple[MultiBranchNet, dict[str, float]]:
    """Train one network on ``dm``'s patches; return it (CPU, eval mode) with the weights
    ``keep`` says (:func:`~geomm.learn.config.keep_for`) and its metrics."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping

    from geomm.learn.callbacks import BestWeights, EpochLines, quiet_lightning
    from geomm.learn.task import FusionTask

    epochs = cfg.max_epochs
    assert epochs is not None, "fit_cnn sizes the epochs"
    task = FusionTask(mcfg.to_dict(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                      total_steps=epochs * dm.steps,
                      ignore_index=int(dm.store.manifest["classes"]["ignore_value"]),
                      spectral_aux=cfg.spectral_aux)
    loggers: list[Any] = []
    if log_dir is not None:
        from lightning.pytorch.loggers import CSVLogger

        loggers.append(CSVLogger(str(log_dir), name="", version=""))
        try:
            import tensorboard  # noqa: F401
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(str(log_dir), name="", version="tb"))
        except ImportError:
            pass
    best = BestWeights("val_oa", fallback="val_loss", min_epoch=epochs // 4)
    callbacks: list[Any] = [best]
    if keep == "best":  # a network that keeps its last epoch runs its schedule to the end
        callbacks.insert(0, EarlyStopping("val_loss", patience=cfg.patience))
    if echo is not None and not progress:  # the progress bar says as much
        callbacks.append(EpochLines(echo, max_epochs=epochs, budget_s=budget_s))
    with quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=epochs, **trainer_device(cfg), logger=loggers or False,
            enable_checkpointing=False, enable_progress_bar=progress,
            enable_model_summary=False, reload_dataloaders_every_n_epochs=1,
            callbacks=callbacks, log_every_n_steps=min(50, dm.steps),
            max_time=timedelta(seconds=budget_s) if budget_s else None,
            num_sanity_val_steps=0)
        t_fit = time.perf_counter()
        fit_or_interrupt(trainer, task, datamodule=dm)
    ended = trainer.current_epoch >= epochs  # else the time budget cut it short
    restored = (keep == "best" or not ended) and best.restore(task)
    # back to the default layout: what a bundle loads into (same logits, bit for bit)
    model = task.model.eval().cpu().to(memory_format=torch.contiguous_format)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}  # the last epoch's
    if restored:
        metrics.update(best.metrics)
    kept = best.best_epoch if restored else trainer.current_epoch - 1
    metrics.update(epochs=float(trainer.current_epoch), best_epoch=float(best.best_epoch),
                   kept_epoch=float(kept))
    # the time budget, not early stopping, ended it (a schedule that keeps its last weights
    # has no early stopping)
    if not ended and budget_s and (keep == "last" or time.perf_counter() - t_fit >= budget_s):
        metrics["budget_cut"] = 1.0
        if echo is not None:
            echo(f"  time budget ({budget_s or 0:.0f} s) spent after epoch "
                 f"{trainer.current_epoch} of {epochs}: keeping epoch {kept + 1}'s weights"
                 + (" (the best validation OA)" if restored else "")
                 + "; a larger --max-minutes runs the whole schedule")
    return model, metrics


def score_result(result: TrainResult, store: TileStore
                 ) -> tuple[TrainResult, HeldOutScores, np.ndarray]:
    """Map the store with the trained network, calibrate on the validation labels and score the
    test blocks; the scores also go into the result's ``heldout`` and ``metrics``. Also
    returns the calibrated (K, H, W) probabilities."""
    held, _, probs = score_network_probs(result.model, store, result.stats,
                                         result.val_labels, result.test_mask)
    return (replace(result, heldout=held, metrics={**result.metrics, **held.metrics()}),
            held, probs)


def recipe_store(recipe: Any, *, workers: int | None = None) -> TileStore:
    """Stack ``recipe`` (a no-op when its store is up to date) and open its single store."""
    from geomm.stack.build import stack
    from geomm.stack.store import open_store

    try:
        summaries = stack(recipe, workers=workers)
    except StaleStoreError as exc:  # --overwrite and --out here are the bundle's
        raise StaleStoreError(f"{exc.path}, the tile store of recipe "
                              f"{recipe.name!r}, was made from other inputs (recipe or files "
                              "changed since); restack it first: geomm stack RECIPE "
                              "--overwrite") from None
    if len(summaries) != 1:
        raise RecipeError(f"recipe {recipe.name!r} has {len(summaries)} scenes; training a "
                          "segmentation model on a multi-scene recipe is not supported yet")
    store = open_store(summaries[0].path)
    if store.manifest.get("label_kind") not in ("vector", "raster"):
        raise RecipeError(f"recipe {recipe.name!r}: training needs pixel labels "
                          "(labels.vector or labels.raster)")
    return store


def train_recipe(recipe: Any, *, out: Path | None = None, cfg: TrainConfig = TrainConfig(),
                 classifier: str | None = None, workers: int | None = None,
                 overwrite: bool = False, progress: bool = True,
                 echo: Callable[[str], object] = print) -> Path:
    """Train on ``recipe``'s tile store (stacked first if needed) and write a model bundle.

    A network ends with the weights :func:`fit_cnn` keeps, its temperature fitted on
    the validation labels, and its score on the held-out test blocks (said through ``echo``
    and kept in the bundle's metrics).

    Args:
        recipe: a loaded recipe.
        out: bundle folder (default ``models/<recipe>-<cnn|rf|svm>``).
        cfg: split and CNN settings; the baselines use the same split.
        classifier: ``"rf"`` or ``"svm"`` for the per-pixel baseline instead of the CNN;
            ``"auto"`` trains the CNN and a random forest on the same split and writes the
            one with the better validation OA (both scores go into the bundle's metrics).
        workers: dask threads for stacking.
        overwrite: replace an existing bundle.
        progress: show the training progress bar (else one line per epoch through ``echo``).
        echo: receives the progress lines and the held-out score.

    Returns:
        The bundle folder.
    """
    check_settings(cfg, network=classifier not in ("rf", "svm"))  # before the data is read
    out = out or Path("models") / f"{recipe.name}-{classifier or 'cnn'}"
    from geomm._lock import output_lock
    from geomm.model.bundle import check_bundle_target
    from geomm.stack.store import tidy_store

    with output_lock(out, "geomm train"):  # one writer per bundle, from the start
        tidy_store(out)  # what a killed run left beside the bundle
        check_bundle_target(out, overwrite)  # before the data is read and the model trained
        _check_logs(out)
        return _train(recipe, out, cfg, classifier, workers, overwrite, progress, echo)


def _check_logs(out: Path) -> None:
    """Refuse a ``<out>-logs`` that is not the training logs of a bundle at ``out`` (a folder
    of the user's that training would write into)."""
    from geomm.model.bundle import BundleExistsError

    logs = out.with_name(out.name + "-logs")
    ours = (out / "bundle.json").is_file() and logs.is_dir()
    if (logs.exists() or logs.is_symlink()) and not ours and (
            not logs.is_dir() or any(logs.iterdir())):
        raise BundleExistsError(f"{logs} exists, and is not the training logs of a bundle at "
                                f"{out}; geomm train writes its logs there: move it away or "
                                "choose another --out")


def _train(recipe: Any, out: Path, cfg: TrainConfig, classifier: str | None,
           workers: int | None, overwrite: bool, progress: bool,
           echo: Callable[[str], object]) -> Path:
    if recipe.labels is not None and recipe.labels.kind == "json-multilabel":
        if classifier is not None:
            raise RecipeError(f"recipe {recipe.name!r} has scene-level labels; the per-pixel "
                              "baselines need pixel labels (labels.vector or labels.raster)")
        return _train_scenes(recipe, out, cfg, workers=workers, overwrite=overwrite,
                             progress=progress)
    store = recipe_store(recipe, workers=workers)
    _warn_split(store, cfg)
    raw = dict(recipe.raw)
    if classifier in ("rf", "svm"):
        fit = fit_pixel_classifier(store, cfg, classifier)
        echo(f"{classifier}: {fit.held.describe()}")
        return save_pixel_fit(out, fit, store, raw, overwrite, cfg=cfg)
    logs = out.with_name(out.name + "-logs")
    with removed_on_failure(logs):  # no logs of a model that was never written
        result, cnn_held, cnn_probs = score_result(
            fit_cnn(store, cfg, log_dir=logs, progress=progress, echo=echo), store)
        echo(f"cnn: {cnn_held.describe()}")
        if classifier == "auto":
            return _auto(store, cfg, result, cnn_probs, out, raw, overwrite, echo)
        return save_cnn_bundle(result, store, out, recipe_raw=raw, overwrite=overwrite)


def _warn_split(store: TileStore, cfg: TrainConfig) -> None:
    """Say what the split does to the data: blocks too small, classes left untrained."""
    from geomm.learn.masks import small_blocks, untrained_classes

    if note := small_blocks(store, cfg, patch_for(store, cfg)):
        warnings.warn(note, LabelWarning, stacklevel=2)
    if missing := untrained_classes(store, cfg):
        why = ("--polygons-per-class drew its regions of them in the validation blocks, or "
               "they are labelled only in the validation or test blocks; another --seed "
               "draws others" if cfg.polygons_per_class else
               "labelled only in the validation or test blocks, or nowhere in the grid; label "
               "some where the training blocks are, or keep only the others with "
               "labels.classes")
        warnings.warn(f"{len(missing)} class(es) have no training pixels and cannot be learnt: "
                      f"{', '.join(missing)} ({why})", LabelWarning, stacklevel=2)


def _auto(store: TileStore, cfg: TrainConfig, result: TrainResult, cnn_probs: np.ndarray,
          out: Path, raw: dict[str, Any], overwrite: bool, echo: Callable[[str], object]
          ) -> Path:
    """Fit the forest on the same split, average it with the network, and write whichever of
    the three scores the best validation OA (all scores go into the bundle's metrics)."""
    from geomm.learn.ensemble import save_ensemble_bundle, score_ensemble

    fit = fit_pixel_classifier(store, cfg, "rf")
    echo(f"rf: {fit.held.describe()}")
    cnn_held = result.heldout
    assert cnn_held is not None
    ens = score_ensemble(store, cnn_probs, fit) if cfg.modalities is None else None
    if ens is not None:
        echo(f"cnn+rf: {ens.describe()}")
    scored = {"cnn": cnn_held, "rf": fit.held, **({"cnn+rf": ens} if ens else {})}
    val = {name: h.val_oa for name, h in scored.items()}
    best = max(val, key=lambda name: val[name])  # the first of equals: the simpler model
    choice = {"auto": {**{f"{n}_val_oa": v for n, v in val.items()},
                       **{f"{n}_test_oa": h.test.overall_accuracy for n, h in scored.items()},
                       "chosen": best}}
    others = ", ".join(f"{n} {100 * v:.1f} %" for n, v in val.items() if n != best)
    echo(f"auto: {_NAMES[best]} scores best on the validation blocks (OA "
         f"{100 * val[best]:.1f} %; {others}); writing it")
    if best == "rf":
        return save_pixel_fit(out, fit, store, raw, overwrite, extra=choice, cfg=cfg)
    if best == "cnn+rf" and ens is not None:
        return save_ensemble_bundle(result, fit, ens, store, out, recipe_raw=raw,
                                    overwrite=overwrite, extra_metrics=choice)
    return save_cnn_bundle(result, store, out, recipe_raw=raw, overwrite=overwrite,
                           extra_metrics=choice)


_NAMES = {"cnn": "the CNN", "rf": "the random forest",
          "cnn+rf": "the mean of the CNN and the random forest"}


def _train_scenes(recipe: Any, out: Path, cfg: TrainConfig, *, workers: int | None,
                  overwrite: bool, progress: bool) -> Path:
    """Multi-label scene classification on a multi-scene recipe (last scene held out)."""
    from geomm.learn.multilabel import fit_multilabel
    from geomm.model.bundle import BundleMeta, layers_from_manifest, save_bundle
    from geomm.stack.build import stack
    from geomm.stack.store import open_store

    stores = {s.scene: open_store(s.path) for s in stack(recipe, workers=workers)}
    ids = list(stores)
    if len(ids) < 3:
        raise RecipeError(f"recipe {recipe.name!r}: scene classification needs at least 3 "
                          f"scenes (train, validation, test), it has {len(ids)}")
    res = fit_multilabel(stores, cfg, test=ids[-1:], val=ids[-2:-1], progress=progress)
    first = stores[ids[0]]
    meta = BundleMeta(recipe.name, layers_from_manifest(first.manifest,
                                                        [la.key for la in res.config.layers]),
                      first.manifest["classes"], normalisation=res.stats.to_dict(),
                      config={"model": res.config.to_dict(),
                              "training": train_config_dict(res.train_config)},
                      split={"scenes": res.scenes}, metrics=res.metrics,
                      recipe_raw=dict(recipe.raw))
    return save_bundle(out, kind="cnn", tensors=state_tensors(res.model), meta=meta,
                       overwrite=overwrite)
