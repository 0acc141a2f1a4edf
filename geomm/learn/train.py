"""Training: a datamodule over a tile store, the fit loop and the CNN bundle it writes.

The datamodule cuts the store into spatially disjoint blocks (:mod:`geomm.learn.split`), draws
fresh random training patches every epoch from the training blocks only (labels of any other
block are ignored inside a patch), computes normalisation statistics on the training pixels
alone, and validates on a regular grid of patches of the validation blocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geomm.errors import RecipeError
from geomm.learn.config import (
    TrainConfig,
    model_config_for,
    train_config_dict,
)
from geomm.learn.heldout import HeldOutScores, score_map, score_network
from geomm.learn.masks import label_masks, split_masks
from geomm.learn.split import SpatialSplit
from geomm.model.netbundle import state_tensors
from geomm.model.network import ModelConfig, MultiBranchNet
from geomm.model.normstats import NormStats
from geomm.stack.store import TileStore

__all__ = ["PixelFit", "TrainConfig", "TrainResult", "fit_cnn", "model_config_for"]


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


@dataclass
class TrainResult:
    """A trained model and what is needed to use and judge it."""

    model: MultiBranchNet
    """The trained network (eval mode, CPU)."""
    config: ModelConfig
    """Its architecture."""
    stats: NormStats
    """Normalisation statistics of the training pixels."""
    split: SpatialSplit
    """The spatial split."""
    test_mask: np.ndarray
    """Base-resolution mask of the held-out fold."""
    train_config: TrainConfig
    """How it was trained."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Final training/validation figures and the wall time."""
    val_labels: np.ndarray | None = None
    """Base-resolution mask of the validation labels (early stopping, calibration)."""
    heldout: HeldOutScores | None = None
    """Test and validation scores and the calibration, once :func:`score_result` ran."""


def fit_cnn(store: TileStore, cfg: TrainConfig, *, log_dir: Path | None = None,
            progress: bool = True, echo: Callable[[str], object] | None = None) -> TrainResult:
    """Train a fusion CNN on ``store`` with a spatial-block split; deterministic on CPU.

    The returned model has the weights of the epoch with the highest validation OA from the
    first quarter of ``max_epochs`` on (not the last epoch's); ``metrics`` holds that epoch's
    figures and ``best_epoch`` (0-based).
    ``echo``, when given, receives one line per epoch.
    """
    t0 = time.perf_counter()
    import lightning.pytorch as pl

    from geomm.learn.callbacks import BestWeights, EpochLines, quiet_lightning
    from geomm.learn.datamodule import StoreDataModule
    from geomm.learn.task import FusionTask

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = StoreDataModule(store, cfg)
    mcfg = model_config_for(store, cfg)
    task = FusionTask(mcfg.to_dict(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                      total_steps=cfg.max_epochs * dm.steps,
                      ignore_index=int(store.manifest["classes"]["ignore_value"]),
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
    from lightning.pytorch.callbacks import EarlyStopping

    best = BestWeights("val_oa", fallback="val_loss", min_epoch=cfg.max_epochs // 4)
    callbacks: list[Any] = [EarlyStopping("val_loss", patience=cfg.patience), best]
    if echo is not None:
        callbacks.append(EpochLines(echo, max_epochs=cfg.max_epochs,
                                    budget_s=60 * cfg.max_minutes if cfg.max_minutes else None))
    with quiet_lightning():
        trainer = pl.Trainer(
            max_epochs=cfg.max_epochs, accelerator="cpu", devices=1, deterministic=True,
            logger=loggers or False, enable_checkpointing=False, enable_progress_bar=progress,
            enable_model_summary=False, reload_dataloaders_every_n_epochs=1,
            callbacks=callbacks, log_every_n_steps=min(50, dm.steps),
            max_time=(timedelta(minutes=cfg.max_minutes) if cfg.max_minutes else None),
            num_sanity_val_steps=0)
        trainer.fit(task, datamodule=dm)
    # back to the default layout: what a bundle loads into (same logits, bit for bit)
    model = task.model.eval().to(memory_format=torch.contiguous_format)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics.update(best.metrics)
    metrics.update(epochs=float(trainer.current_epoch), best_epoch=float(best.best_epoch),
                   seconds=time.perf_counter() - t0)
    return TrainResult(model, mcfg, dm.stats, dm.split, dm.test_mask,
                       replace(cfg, patch_size=dm.patch_size), metrics, val_labels=dm.val_labels)


def score_result(result: TrainResult, store: TileStore
                 ) -> tuple[TrainResult, HeldOutScores]:
    """Map the store with the trained network, calibrate on the validation labels and score the
    test blocks; the scores also go into the result's ``heldout`` and ``metrics``."""
    held, _ = score_network(result.model, store, result.stats, result.val_labels,
                            result.test_mask)
    return replace(result, heldout=held, metrics={**result.metrics, **held.metrics()}), held


def save_cnn_bundle(result: TrainResult, store: TileStore, out: Path, *,
                    recipe_raw: dict[str, Any] | None = None, overwrite: bool = False,
                    extra_metrics: dict[str, Any] | None = None) -> Path:
    """Write a trained network as a model bundle (safetensors weights + JSON metadata);
    ``extra_metrics`` join the result's metrics (e.g. the ``auto`` model choice)."""
    from geomm.model.bundle import BundleMeta, layers_from_manifest, save_bundle

    keys = [layer.key for layer in result.config.layers]
    meta = BundleMeta(
        store.manifest.get("recipe", ""), layers_from_manifest(store.manifest, keys),
        store.manifest["classes"], normalisation=result.stats.to_dict(),
        config={"model": result.config.to_dict(),
                "training": train_config_dict(result.train_config),
                **({"calibration": {"temperature": result.heldout.temperature,
                                    "fitted_on": "validation blocks"}}
                   if result.heldout is not None else {})},
        split=result.split.to_dict(), metrics={**result.metrics, **(extra_metrics or {})},
        recipe_raw=recipe_raw)
    return save_bundle(out, kind="cnn", tensors=state_tensors(result.model), meta=meta,
                       overwrite=overwrite)


def recipe_store(recipe: Any, *, workers: int | None = None) -> TileStore:
    """Stack ``recipe`` (a no-op when its store is up to date) and open its single store."""
    from geomm.stack.build import stack
    from geomm.stack.store import open_store

    summaries = stack(recipe, workers=workers)
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

    A network ends with the weights of its best validation epoch, its temperature fitted on
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
    out = out or Path("models") / f"{recipe.name}-{classifier or 'cnn'}"
    from geomm._lock import output_lock
    from geomm.model.bundle import check_bundle_target
    from geomm.stack.store import tidy_store

    with output_lock(out, "geomm train"):  # one writer per bundle, from the start
        tidy_store(out)  # what a killed run left beside the bundle
        check_bundle_target(out, overwrite)  # before the data is read and the model trained
        return _train(recipe, out, cfg, classifier, workers, overwrite, progress, echo)


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
    raw = dict(recipe.raw)
    if classifier in ("rf", "svm"):
        fit = fit_pixel_classifier(store, cfg, classifier)
        echo(f"{classifier}: {fit.held.describe()}")
        return _save_pixel_classifier(out, fit, store, raw, overwrite)
    result, cnn_held = score_result(
        fit_cnn(store, cfg, log_dir=out.with_name(out.name + "-logs"), progress=progress,
                echo=None if progress else echo), store)
    echo(f"cnn: {cnn_held.describe()}")
    if classifier == "auto":
        fit = fit_pixel_classifier(store, cfg, "rf")
        held = fit.held
        echo(f"rf: {held.describe()}")
        cnn_val, rf_val = _val_oa(cnn_held), _val_oa(held)
        choice = {"auto": {"cnn_val_oa": cnn_val, "rf_val_oa": rf_val,
                           "cnn_test_oa": cnn_held.test.overall_accuracy,
                           "rf_test_oa": held.test.overall_accuracy}}
        if rf_val > cnn_val:
            echo(f"auto: the random forest scores better on the validation blocks "
                 f"(OA {100 * rf_val:.1f} % against {100 * cnn_val:.1f} %); writing it")
            return _save_pixel_classifier(out, fit, store, raw, overwrite, extra=choice)
        echo(f"auto: the CNN scores better on the validation blocks (OA {100 * cnn_val:.1f} % "
             f"against {100 * rf_val:.1f} %); writing it")
        return save_cnn_bundle(result, store, out, recipe_raw=raw, overwrite=overwrite,
                               extra_metrics=choice)
    return save_cnn_bundle(result, store, out, recipe_raw=raw, overwrite=overwrite)


def _val_oa(held: HeldOutScores) -> float:
    return held.val.overall_accuracy if held.val is not None else float("-inf")


@dataclass(frozen=True)
class PixelFit:
    """A per-pixel baseline fitted on a split's training labels, and its scores."""

    model: Any
    """The fitted scikit-learn estimator."""
    n_px: int
    """Training pixels."""
    split: SpatialSplit
    """The spatial split."""
    held: HeldOutScores
    """Scores on the validation labels and the test blocks (not calibrated: T = 1)."""
    probs: np.ndarray | None
    """(K, H, W) class probabilities on the validation labels and test blocks (random
    forest; None for the SVM, which has no probabilities)."""
    val_labels: np.ndarray
    """Base-resolution mask of the validation labels it was scored on."""
    test_mask: np.ndarray
    """Base-resolution mask of the test blocks it was scored on."""


def fit_pixel_classifier(store: TileStore, cfg: TrainConfig, kind: str) -> PixelFit:
    """Fit the per-pixel baseline on the training labels of ``cfg``'s split; score it on the
    validation labels and the test blocks (its probabilities are not calibrated: T = 1)."""
    from geomm.learn.baseline import (
        fit_classifier,
        pixel_features,
        predict_pixels,
        predict_proba_map,
        sample_training_pixels,
    )

    train_mask, val_mask, test_mask, split = split_masks(store, cfg)
    train_labels, val_labels = label_masks(store, cfg, train_mask, val_mask)
    px = sample_training_pixels(store, train_labels, seed=cfg.seed)
    X, _ = pixel_features(store, rows_cols=(px.rows, px.cols))
    model = fit_classifier(kind, X, px.labels, seed=cfg.seed)
    probs = None
    if hasattr(model, "predict_proba"):
        probs = predict_proba_map(model, store, val_labels | test_mask)
        pred = probs.argmax(axis=0).astype(np.uint8)  # = model.predict, without a 2nd pass
        pred[~(probs.sum(axis=0) > 0)] = store.ignore_value
    else:
        pred = predict_pixels(model, store, val_labels | test_mask)
    nan = (float("nan"), float("nan"))
    held = HeldOutScores(score_map(store, pred, test_mask), score_map(store, pred, val_labels),
                         1.0, nan, nan)
    return PixelFit(model, int(len(px.labels)), split, held, probs, val_labels, test_mask)


def _save_pixel_classifier(out: Path, fit: PixelFit, store: TileStore, raw: dict[str, Any],
                           overwrite: bool, extra: dict[str, Any] | None = None) -> Path:
    from geomm.learn.baseline import save_classifier

    metrics = {"training_pixels": fit.n_px, **fit.held.metrics(), **(extra or {})}
    return save_classifier(out, fit.model, store, split=fit.split.to_dict(), metrics=metrics,
                           recipe_raw=raw, overwrite=overwrite)


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
