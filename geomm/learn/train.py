"""Training: a datamodule over a tile store, the fit loop and the CNN bundle it writes.

The datamodule cuts the store into spatially disjoint blocks (:mod:`geomm.learn.split`), draws
fresh random training patches every epoch from the training blocks only (labels of any other
block are ignored inside a patch), computes normalisation statistics on the training pixels
alone, and validates on a regular grid of patches of the validation blocks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader

from geomm.errors import RecipeError
from geomm.learn.config import TrainConfig, model_config_for, train_config_dict
from geomm.learn.dataset import PatchSampler, StorePatchDataset, patch_lattice
from geomm.learn.normalize import class_weights, compute_norm_stats
from geomm.learn.split import SpatialSplit, make_folds, train_val_test
from geomm.learn.task import FusionTask
from geomm.model.netbundle import state_tensors
from geomm.model.network import ModelConfig, MultiBranchNet
from geomm.model.normstats import NormStats
from geomm.stack.store import TileStore

__all__ = ["FusionTask", "StoreDataModule", "TrainConfig", "TrainResult", "fit_cnn",
           "model_config_for"]


class StoreDataModule(pl.LightningDataModule):
    """Training and validation patches of one tile store, split by spatial blocks."""

    def __init__(self, store: TileStore, cfg: TrainConfig) -> None:
        super().__init__()
        self.store, self.cfg = store, cfg
        patch_lattice(store, cfg.patch_size)  # fail early on a bad patch size
        (self.train_mask, self.val_mask, self.test_mask,
         self.split) = self.split_masks(store, cfg)
        self.stats: NormStats = compute_norm_stats(store, self.train_mask)
        self.class_weights = class_weights(store, self.train_mask)
        self.train_sampler = PatchSampler(store, self.train_mask, cfg.patch_size,
                                          min_labelled=cfg.patch_size)
        self.val_sampler = PatchSampler(store, self.val_mask, cfg.patch_size, min_labelled=1)
        self.train_ds = StorePatchDataset(store, self._draw(0), cfg.patch_size, self.stats,
                                          self.train_mask, augment=True,
                                          weights=self.class_weights, seed=cfg.seed)
        self.val_ds = StorePatchDataset(store, self.val_sampler.grid(), cfg.patch_size,
                                        self.stats, self.val_mask, augment=False,
                                        weights=self.class_weights, seed=cfg.seed)

    @staticmethod
    def split_masks(store: TileStore, cfg: TrainConfig
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, SpatialSplit]:
        """Train, validation and test masks of ``cfg``'s spatial-block split, and the split.

        Blocks are snapped to whole pixels of the coarsest layer, so no coarse pixel straddles
        two folds.
        """
        labels = np.asarray(store.base()["labels"].values)
        ignore = int(store.manifest["classes"]["ignore_value"])
        align = math.lcm(*(int(lyr["factor"]) for lyr in store.manifest["layers"]))
        split = make_folds(store.grid, labels != ignore, block_size=cfg.block_size,
                           n_folds=cfg.n_folds, seed=cfg.seed, align=align)
        return (*train_val_test(split, cfg.test_fold, cfg.val_fold), split)

    def _draw(self, epoch: int) -> np.ndarray:
        n = self.cfg.steps_per_epoch * self.cfg.batch_size
        return self.train_sampler.random(n, seed=self.cfg.seed, epoch=epoch)

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        self.train_ds.set_origins(self._draw(epoch))
        self.train_ds.set_epoch(epoch)
        return DataLoader(self.train_ds, batch_size=self.cfg.batch_size, shuffle=False,
                          num_workers=self.cfg.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_ds, batch_size=self.cfg.batch_size,
                          num_workers=self.cfg.num_workers)


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


def fit_cnn(store: TileStore, cfg: TrainConfig, *, log_dir: Path | None = None,
            progress: bool = True) -> TrainResult:
    """Train a fusion CNN on ``store`` with a spatial-block split; deterministic on CPU."""
    t0 = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = StoreDataModule(store, cfg)
    mcfg = model_config_for(store, cfg)
    task = FusionTask(mcfg.to_dict(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                      total_steps=cfg.max_epochs * cfg.steps_per_epoch,
                      ignore_index=int(store.manifest["classes"]["ignore_value"]))
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

    trainer = pl.Trainer(
        max_epochs=cfg.max_epochs, accelerator="cpu", devices=1, deterministic=True,
        logger=loggers or False, enable_checkpointing=False, enable_progress_bar=progress,
        enable_model_summary=False, reload_dataloaders_every_n_epochs=1,
        callbacks=[EarlyStopping("val_loss", patience=cfg.patience)],
        max_time=(timedelta(minutes=cfg.max_minutes) if cfg.max_minutes else None),
        num_sanity_val_steps=0)
    trainer.fit(task, datamodule=dm)
    model = task.model.eval()
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics.update(epochs=float(trainer.current_epoch), seconds=time.perf_counter() - t0)
    return TrainResult(model, mcfg, dm.stats, dm.split, dm.test_mask, cfg, metrics)


def save_cnn_bundle(result: TrainResult, store: TileStore, out: Path, *,
                    recipe_raw: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write a trained network as a model bundle (safetensors weights + JSON metadata)."""
    from geomm.model.bundle import BundleMeta, layers_from_manifest, save_bundle

    keys = [layer.key for layer in result.config.layers]
    meta = BundleMeta(
        store.manifest.get("recipe", ""), layers_from_manifest(store.manifest, keys),
        store.manifest["classes"], normalisation=result.stats.to_dict(),
        config={"model": result.config.to_dict(),
                "training": train_config_dict(result.train_config)},
        split=result.split.to_dict(), metrics=result.metrics, recipe_raw=recipe_raw)
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
                 overwrite: bool = False, progress: bool = True) -> Path:
    """Train on ``recipe``'s tile store (stacked first if needed) and write a model bundle.

    Args:
        recipe: a loaded recipe.
        out: bundle folder (default ``models/<recipe>-<cnn|rf|svm>``).
        cfg: split and CNN settings; the baselines use the same split.
        classifier: ``"rf"`` or ``"svm"`` for the per-pixel baseline instead of the CNN.
        workers: dask threads for stacking.
        overwrite: replace an existing bundle.
        progress: show the training progress bar.

    Returns:
        The bundle folder.
    """
    out = out or Path("models") / f"{recipe.name}-{classifier or 'cnn'}"
    if recipe.labels is not None and recipe.labels.kind == "json-multilabel":
        if classifier is not None:
            raise RecipeError(f"recipe {recipe.name!r} has scene-level labels; the per-pixel "
                              "baselines need pixel labels (labels.vector or labels.raster)")
        return _train_scenes(recipe, out, cfg, workers=workers, overwrite=overwrite,
                             progress=progress)
    store = recipe_store(recipe, workers=workers)
    if classifier is not None:
        from geomm.learn.baseline import (
            fit_classifier,
            pixel_features,
            sample_training_pixels,
            save_classifier,
        )

        train_mask, _, _, split = StoreDataModule.split_masks(store, cfg)
        px = sample_training_pixels(store, train_mask, seed=cfg.seed)
        X, _ = pixel_features(store, rows_cols=(px.rows, px.cols))
        model = fit_classifier(classifier, X, px.labels, seed=cfg.seed)
        return save_classifier(out, model, store, split=split.to_dict(),
                               metrics={"training_pixels": int(len(px.labels))},
                               recipe_raw=dict(recipe.raw), overwrite=overwrite)
    result = fit_cnn(store, cfg, log_dir=out.with_name(out.name + "-logs"), progress=progress)
    return save_cnn_bundle(result, store, out, recipe_raw=dict(recipe.raw), overwrite=overwrite)


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
