"""Scene-level multi-label classification over multi-scene recipes (BigEarthNet style).

Each scene is its own tile store (its own grid and UTM zone); its labels are a list of class
names. A sample is one whole scene (or its top-left ``patch_size`` square), every layer at its
native resolution, with a multi-hot target. Scenes are split whole — patches of one scene
never end up on both sides of a split.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from geomm.errors import RecipeError
from geomm.learn.callbacks import quiet_lightning
from geomm.learn.config import (
    SCENE_PATCH_PX,
    TrainConfig,
    epochs_for,
    model_config_for,
    trainer_device,
)
from geomm.learn.dataset import StorePatchDataset
from geomm.learn.interrupt import fit_or_interrupt
from geomm.learn.normalize import compute_norm_stats
from geomm.learn.task import FusionTask
from geomm.model.network import ModelConfig, MultiBranchNet
from geomm.model.normstats import LayerStats, NormStats
from geomm.stack.store import TileStore

__all__ = ["MultiLabelResult", "SceneDataset", "fit_multilabel", "pooled_stats"]


def pooled_stats(parts: Sequence[NormStats]) -> NormStats:
    """Combine per-scene statistics into one (counts-weighted means and variances)."""
    out = []
    for layers in zip(*(p.layers for p in parts), strict=True):
        n = np.array([s.count for s in layers], dtype=np.float64)
        mean = np.array([s.mean for s in layers])
        var = np.array([s.std for s in layers]) ** 2
        total = n.sum()
        m = (n[:, None] * mean).sum(0) / total
        v = (n[:, None] * (var + (mean - m) ** 2)).sum(0) / total
        out.append(LayerStats(layers[0].key, layers[0].bands, tuple(map(float, m)),
                              tuple(map(float, np.sqrt(v))), int(total)))
    return NormStats(tuple(out))


class SceneDataset(Dataset[dict[str, torch.Tensor]]):
    """One item per scene: its layers (normalised) and a multi-hot ``target``."""

    def __init__(self, store: TileStore, stats: NormStats, classes: Sequence[str], *,
                 patch_size: int, augment: bool, seed: int = 0) -> None:
        h, w = store.grid.shape
        if patch_size > min(h, w):
            raise RecipeError(f"{store.path}: patch size {patch_size} is larger than the scene "
                              f"({w} x {h} px)")
        everything = np.ones((h, w), dtype=bool)
        self.inner = StorePatchDataset(store, np.array([[0, 0]]), patch_size, stats, everything,
                                       augment=augment, seed=seed)
        names = store.manifest.get("scene_labels") or []
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise RecipeError(f"{store.path}: scene labels {unknown} are not in the class table")
        self.target = torch.tensor([float(c in names) for c in classes])

    def set_epoch(self, epoch: int) -> None:
        """Draw other augmentations."""
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.inner[index]
        return {**{k: v for k, v in item.items() if "/" in k}, "target": self.target}


@dataclass
class MultiLabelResult:
    """A trained scene classifier and its split."""

    model: MultiBranchNet
    """The trained network (eval mode)."""
    config: ModelConfig
    """Its architecture."""
    stats: NormStats
    """Normalisation statistics pooled over the training scenes."""
    scenes: dict[str, list[str]]
    """Scene ids per part: train, val, test."""
    train_config: TrainConfig
    """How it was trained."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Final training/validation figures and the wall time."""


def fit_multilabel(stores: dict[str, TileStore], cfg: TrainConfig, *,
                   test: Sequence[str] = (), val: Sequence[str] = (),
                   progress: bool = True) -> MultiLabelResult:
    """Train a classification-head fusion network on whole scenes with multi-hot targets.

    Args:
        stores: scene id -> tile store (json-multilabel labels).
        cfg: training settings (``patch_size`` is the square read from each scene's corner).
        test: scene ids held out; val: scene ids for validation (default: the last training).
    """
    t0 = time.perf_counter()
    epochs = epochs_for(cfg, None)
    cfg = replace(cfg, max_epochs=epochs)  # recorded as trained
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    ids = list(stores)
    train = [s for s in ids if s not in test and s not in val]
    val = list(val) or train[-1:]
    train = [s for s in train if s not in val] or train
    first = stores[ids[0]]
    classes = [c["name"] for c in first.manifest["classes"]["classes"]]
    everything = {s: np.ones(st.grid.shape, dtype=bool) for s, st in stores.items()}
    stats = pooled_stats([compute_norm_stats(stores[s], everything[s]) for s in train])
    mcfg = replace(model_config_for(first, cfg), head="classification", multilabel=True,
                   num_classes=len(classes))

    def make(part: list[str], augment: bool) -> ConcatDataset[dict[str, torch.Tensor]]:
        return ConcatDataset([SceneDataset(stores[s], stats, classes,
                                           patch_size=cfg.patch_size or SCENE_PATCH_PX,
                                           augment=augment, seed=cfg.seed) for s in part])

    train_ds, val_ds = make(train, True), make(val, False)
    task = FusionTask(mcfg.to_dict(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                      total_steps=epochs * max(1, -(-len(train) // cfg.batch_size)))
    with quiet_lightning():
        trainer = pl.Trainer(max_epochs=epochs, **trainer_device(cfg), logger=False,
                             enable_checkpointing=False,
                             enable_progress_bar=progress, enable_model_summary=False,
                             num_sanity_val_steps=0)
        fit_or_interrupt(trainer, task,
                         DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True),
                         DataLoader(val_ds, batch_size=cfg.batch_size))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics["seconds"] = time.perf_counter() - t0
    model = task.model.eval().cpu().to(memory_format=torch.contiguous_format)
    return MultiLabelResult(model, mcfg, stats,
                            {"train": train, "val": val, "test": list(test)}, cfg, metrics)


def predict_scene_labels(model: MultiBranchNet, stats: NormStats, store: TileStore, *,
                         patch_size: int, threshold: float = 0.5) -> dict[str, float]:
    """Probabilities (sigmoid of the logits) of the classes at or above ``threshold``."""
    classes = [c["name"] for c in store.manifest["classes"]["classes"]]
    item = SceneDataset(store, stats, classes, patch_size=patch_size, augment=False)[0]
    with torch.no_grad():
        logits = model.eval()({k: v[None] for k, v in item.items() if "/" in k})
    prob = torch.sigmoid(logits)[0].numpy()
    return {c: float(p) for c, p in zip(classes, prob, strict=True) if p >= threshold}
