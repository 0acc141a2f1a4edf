"""The Lightning data module of fusion-CNN training: patches of one tile store drawn from the
training blocks (new origins every epoch) and a fixed grid of validation patches."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader

from geomm.learn.config import TrainConfig, class_weight_power, patch_for, steps_for
from geomm.learn.dataset import PatchSampler, StorePatchDataset, patch_lattice
from geomm.learn.masks import eroded_label_masks, split_masks
from geomm.learn.normalize import class_weights, compute_norm_stats
from geomm.model.normstats import NormStats
from geomm.stack.store import TileStore

__all__ = ["StoreDataModule"]


class StoreDataModule(pl.LightningDataModule):
    """Training and validation patches of one tile store, split by spatial blocks."""

    def __init__(self, store: TileStore, cfg: TrainConfig) -> None:
        super().__init__()
        self.store, self.cfg = store, cfg
        self.patch_size = patch = patch_for(store, cfg)
        patch_lattice(store, patch)  # fail early on a bad patch size
        (self.train_mask, self.val_mask, self.test_mask,
         self.split) = split_masks(store, cfg)
        # statistics over every pixel of the training blocks; labels only where allowed
        self.stats: NormStats = compute_norm_stats(store, self.train_mask)
        train_labels, val_labels, self.erode_labels = eroded_label_masks(
            store, cfg, self.train_mask, self.val_mask)
        """The erosion radius applied to the training labels (``cfg.erode_labels`` resolved)."""
        self.val_labels = val_labels
        self.class_weights = class_weights(store, train_labels, class_weight_power(cfg))
        self.labelled_px = int(self._labelled(store, train_labels))
        """Labelled training pixels (erosion and label budget applied)."""
        self.steps = steps_for(cfg, self.labelled_px)
        self.member = 0
        """Which member of a mean of networks is training: each draws other patches."""
        self.train_sampler = PatchSampler(store, train_labels, patch, min_labelled=patch)
        self.val_sampler = PatchSampler(store, val_labels, patch, min_labelled=1)
        self.train_ds = StorePatchDataset(store, self._draw(0), patch, self.stats,
                                          train_labels, augment=True,
                                          weights=self.class_weights, seed=cfg.seed)
        # a class the training labels lack still counts in the validation loss (weight 1, not
        # 0): validation blocks of only such classes would otherwise read a loss of 0
        val_weights = np.where(self.class_weights > 0, self.class_weights, 1.0)
        self.val_ds = StorePatchDataset(store, self.val_sampler.grid(), patch,
                                        self.stats, val_labels, augment=False,
                                        weights=val_weights, seed=cfg.seed)

    @staticmethod
    def _labelled(store: TileStore, mask: np.ndarray) -> int:
        return int((mask & (store.labels() != store.ignore_value)).sum())

    def _draw(self, epoch: int) -> np.ndarray:
        n = self.steps * self.cfg.batch_size
        return self.train_sampler.random(n, seed=self.cfg.seed + 1000 * self.member,
                                         epoch=epoch)

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        self.train_ds.set_origins(self._draw(epoch))
        self.train_ds.set_epoch(epoch)
        return DataLoader(self.train_ds, batch_size=self.cfg.batch_size, shuffle=False,
                          num_workers=self.cfg.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_ds, batch_size=self.cfg.batch_size,
                          num_workers=self.cfg.num_workers)
