"""Where a fold's labels may be used: the spatial-block split's training, validation and
test masks, and the label budget of the label-scarce protocol (no torch, no Lightning: the
per-pixel baselines use them too)."""

from __future__ import annotations

import math

import numpy as np

from geomm.errors import RecipeError
from geomm.learn.config import TrainConfig
from geomm.learn.labelbudget import auto_eroded_labels, eroded_labels, polygon_budget_mask
from geomm.learn.split import SpatialSplit, block_pixels, make_folds, train_val_test
from geomm.stack.store import TileStore

__all__ = ["eroded_label_masks", "label_masks", "split_masks"]


def label_masks(store: TileStore, cfg: TrainConfig, train_mask: np.ndarray,
                val_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where training and validation may use labels: their blocks, or under the
    label-scarce protocol (``cfg.polygons_per_class``) only the pixels of ``k`` regions per
    class drawn from the training and validation blocks together (a user's whole budget);
    the training labels without their edges as ``cfg.erode_labels`` says (None: where
    that keeps most of them, :func:`~geomm.learn.labelbudget.auto_eroded_labels`).

    Raises:
        RecipeError: the validation blocks keep no labelled pixel of the budget.
    """
    train, val, _ = eroded_label_masks(store, cfg, train_mask, val_mask)
    return train, val


def eroded_label_masks(store: TileStore, cfg: TrainConfig, train_mask: np.ndarray,
                       val_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`label_masks`, and the erosion radius it applied (``cfg.erode_labels`` resolved:
    what a bundle records)."""
    train, val = _budget(store, cfg, train_mask, val_mask)
    radius = cfg.erode_labels
    if radius is None:
        train, radius = auto_eroded_labels(store.labels(), train, ignore_value=store.ignore_value)
    elif radius:
        train = eroded_labels(store.labels(), train, radius, ignore_value=store.ignore_value)
    return train, val, int(radius)


def _budget(store: TileStore, cfg: TrainConfig, train_mask: np.ndarray, val_mask: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    if cfg.polygons_per_class is None:
        return train_mask, val_mask
    budget = polygon_budget_mask(store.labels(), train_mask | val_mask,
                                 cfg.polygons_per_class, seed=cfg.seed,
                                 ignore_value=store.ignore_value)
    if not (budget & val_mask).any() or not (budget & train_mask).any():
        raise RecipeError(f"{store.path}: {cfg.polygons_per_class} polygons per class leave "
                          "the training or the validation blocks without a label (test fold "
                          f"{cfg.test_fold}); use more polygons per class, another --seed or "
                          "a smaller block size")
    return budget & train_mask, budget & val_mask


def split_masks(store: TileStore, cfg: TrainConfig
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, SpatialSplit]:
    """Train, validation and test masks of ``cfg``'s spatial-block split, and the split.

    Blocks are snapped to whole pixels of the coarsest layer, so no coarse pixel straddles
    two folds.
    """
    labels, ignore = store.labels(), store.ignore_value
    split = make_folds(store.grid, labels != ignore, block_size=cfg.block_size,
                       n_folds=cfg.n_folds, seed=cfg.seed, align=_align(store),
                       class_labels=labels, ignore_value=ignore)
    return (*train_val_test(split, cfg.test_fold, cfg.val_fold), split)


def _align(store: TileStore) -> int:
    """Blocks are whole pixels of every layer: a multiple of the lcm of their factors."""
    return math.lcm(*(int(lyr["factor"]) for lyr in store.manifest["layers"]))


def class_coverage(store: TileStore, cfg: TrainConfig
                   ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The store's class names, and per class whether ``cfg``'s (budgeted) training labels
    hold it and whether its test blocks do."""
    train_mask, val_mask, test_mask, _ = split_masks(store, cfg)
    train_labels, _ = label_masks(store, cfg, train_mask, val_mask)
    names = tuple(c["name"] for c in store.manifest["classes"]["classes"])
    labels, k = store.labels(), len(names)
    trained = np.bincount(labels[train_labels].ravel(), minlength=256)[:k] > 0
    tested = np.bincount(labels[test_mask].ravel(), minlength=256)[:k] > 0
    return names, trained, tested


def untrained_classes(store: TileStore, cfg: TrainConfig) -> tuple[str, ...]:
    """The store's classes with no pixel among the training labels of ``cfg``'s split (a
    model keeps them as outputs but cannot learn them)."""
    names, trained, _ = class_coverage(store, cfg)
    return tuple(n for n, t in zip(names, trained, strict=True) if not t)


def small_blocks(store: TileStore, cfg: TrainConfig, patch: int) -> str | None:
    """What is wrong with ``cfg``'s blocks when they are smaller than half a training patch
    of ``patch`` px (every training patch then holds test pixels, and the training labels
    are next to the test labels: the held-out scores are optimistic, down to a per-pixel
    random split at 1 px); None when they are not."""
    side = block_pixels(store.grid, cfg.block_size, align=_align(store))
    if 2 * side >= patch:
        return None
    res = store.grid.resolution
    return (f"blocks of {side} px ({side * res:g} {store.grid.unit}, from --block-size "
            f"{cfg.block_size:g}) are smaller than half a training patch ({patch} px): "
            "training labels lie next to test labels and test pixels inside training "
            "patches, so the held-out scores are optimistic; use --block-size "
            f"{patch * res:g} or more (default 2000)")
