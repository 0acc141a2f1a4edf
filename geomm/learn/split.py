"""Spatially disjoint folds: the scene is cut into square blocks and whole blocks go to folds.

Neighbouring pixels are nearly copies of each other, so a random-pixel split leaks the test
set into training and inflates accuracy by some 20 points. Here every base pixel belongs to
one block of ``block_size`` CRS units (anchored at the grid's top-left corner) and every
block to one fold; blocks are dealt to folds so that each fold holds about as many labelled
pixels as the others. Block edges can be snapped to a multiple of ``align`` base pixels (the
lcm of the layer factors), so a coarse pixel never straddles two folds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from geomm.errors import RecipeError
from geomm.stack.grid import GridSpec

__all__ = ["SpatialSplit", "block_ids", "block_pixels", "make_folds", "train_val_test"]


_DEGREES = ("the grid's CRS is geographic (degrees), where spatial blocks of a size in metres "
            "cannot be cut: put the scene on a projected grid, e.g. `grid: {crs: EPSG:32633, "
            "resolution: 10}` in the recipe (its UTM zone)")


def block_pixels(grid: GridSpec, block_size: float, *, align: int = 1) -> int:
    """Side of a block in base pixels: ``block_size`` rounded to a multiple of ``align``.

    Raises:
        RecipeError: ``block_size`` or ``align`` is not positive.
    """
    if not (isinstance(align, int) and align >= 1):
        raise RecipeError(f"align {align!r} must be a positive whole number of base pixels")
    if not (math.isfinite(block_size) and block_size > 0):
        raise RecipeError(f"block_size {block_size!r} must be a positive length in CRS units "
                          "(default 2000 m)")
    return max(1, round(block_size / grid.resolution / align)) * align


def _blocks_shape(shape: tuple[int, int], side: int) -> tuple[int, int]:
    return -(-shape[0] // side), -(-shape[1] // side)


def block_ids(grid: GridSpec, block_size: float = 2000.0, *, align: int = 1) -> np.ndarray:
    """Number every base pixel with its block, row by row from the top-left corner.

    Args:
        grid: the base grid.
        block_size: block side in CRS units; the last row/column of blocks may be cut short.
        align: snap the block side to a multiple of this many base pixels.

    Returns:
        An (H, W) int32 array of block indices ``block_row * n_block_cols + block_col``.
    """
    side = block_pixels(grid, block_size, align=align)
    _, nbx = _blocks_shape(grid.shape, side)
    rows = (np.arange(grid.height) // side).astype(np.int32)
    cols = (np.arange(grid.width) // side).astype(np.int32)
    return rows[:, None] * np.int32(nbx) + cols[None, :]


@dataclass(frozen=True)
class SpatialSplit:
    """Which fold each spatial block of a scene belongs to."""

    block_size: float
    """Requested block side in CRS units."""
    block_pixels: int
    """Block side actually used, in base pixels (after snapping to ``align``)."""
    shape: tuple[int, int]
    """(height, width) of the base grid in pixels."""
    n_folds: int
    """Number of folds."""
    seed: int
    """Seed of the tie-break between equally good assignments."""
    fold_of_block: tuple[int, ...]
    """Fold of every block, in :func:`block_ids` order."""
    labelled_per_fold: tuple[int, ...] = ()
    """Labelled base pixels in each fold (empty when made without labels)."""

    @property
    def blocks_shape(self) -> tuple[int, int]:
        """(rows, cols) of the block grid."""
        return _blocks_shape(self.shape, self.block_pixels)

    def fold_map(self) -> np.ndarray:
        """(H, W) int8 array: the fold of every base pixel."""
        folds = np.asarray(self.fold_of_block, dtype=np.int8).reshape(self.blocks_shape)
        side = self.block_pixels
        full = folds.repeat(side, axis=0).repeat(side, axis=1)
        return full[:self.shape[0], :self.shape[1]]

    def fold_mask(self, fold: int) -> np.ndarray:
        """(H, W) bool mask of the base pixels in ``fold``.

        Raises:
            RecipeError: ``fold`` is not in ``0..n_folds-1``.
        """
        self._check_fold(fold, "fold")
        return self.fold_map() == fold

    def _check_fold(self, fold: int, what: str) -> None:
        if not (isinstance(fold, int | np.integer) and 0 <= fold < self.n_folds):
            raise RecipeError(f"{what} {fold!r} does not exist; the split has folds "
                              f"0..{self.n_folds - 1}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"block_size": self.block_size, "block_pixels": self.block_pixels,
                "shape": list(self.shape), "n_folds": self.n_folds, "seed": self.seed,
                "fold_of_block": list(self.fold_of_block),
                "labelled_per_fold": list(self.labelled_per_fold)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SpatialSplit:
        """Inverse of :meth:`to_dict`.

        Raises:
            RecipeError: a key is missing or the blocks do not match the grid shape.
        """
        try:
            h, w = (int(v) for v in doc["shape"])
            split = cls(float(doc["block_size"]), int(doc["block_pixels"]), (h, w),
                        int(doc["n_folds"]), int(doc["seed"]),
                        tuple(int(v) for v in doc["fold_of_block"]),
                        tuple(int(v) for v in doc.get("labelled_per_fold", ())))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecipeError(f"spatial split: missing or bad key ({exc!r}); expected the "
                              "keys written by SpatialSplit.to_dict()") from None
        nby, nbx = split.blocks_shape
        if len(split.fold_of_block) != nby * nbx or not all(
                0 <= f < split.n_folds for f in split.fold_of_block):
            raise RecipeError(f"spatial split: {len(split.fold_of_block)} block folds for a "
                              f"{nby} x {nbx} block grid (or folds outside "
                              f"0..{split.n_folds - 1}); the split does not fit its grid")
        return split


def _block_counts(mask: np.ndarray, side: int) -> np.ndarray:
    """Sum of ``mask`` over every block, row-major (blocks at the edge may be cut short)."""
    nby, nbx = _blocks_shape(mask.shape, side)
    out = np.zeros((nby, nbx), dtype=np.int64)
    for i in range(nby):  # one row of blocks at a time: no padded copy of the scene
        band = mask[i * side:(i + 1) * side]
        cols = band.sum(axis=0, dtype=np.int64)
        out[i] = np.add.reduceat(cols, np.arange(0, mask.shape[1], side))
    return out.ravel()


def make_folds(grid: GridSpec, labels_present: np.ndarray | None, *,
               block_size: float = 2000.0, n_folds: int = 5, seed: int = 0,
               align: int = 1, class_labels: np.ndarray | None = None,
               ignore_value: int = 255) -> SpatialSplit:
    """Deal the scene's blocks to ``n_folds`` folds with about equal labelled pixels each.

    Blocks are taken from the most to the least labelled (ties in a seeded random order);
    each goes to the fold with the fewest labelled pixels so far (then the fewest blocks).
    With ``class_labels`` every class is balanced instead: blocks are taken by the largest
    share of any one class's pixels they hold, and each goes to the fold that holds the least
    of that block's classes so far (each class counted relative to its total), so a rare class
    is spread over the folds as evenly as its blocks allow. Blocks without labels are dealt to
    the folds with the fewest blocks.

    Args:
        grid: the base grid.
        labels_present: (H, W) bool, True where a pixel is labelled; None balances the
            number of blocks only.
        block_size: block side in CRS units.
        n_folds: number of folds, >= 2.
        seed: seed of the tie-break; the same inputs and seed give the same split.
        align: snap the block side to a multiple of this many base pixels.
        class_labels: (H, W) class ids (``ignore_value`` where unlabelled) to balance by class.
        ignore_value: the unlabelled value of ``class_labels``.

    Raises:
        RecipeError: fewer blocks (or labelled blocks) than folds, a bad ``n_folds``, or a
            mask that is not a bool array of the grid's shape.
    """
    if not (isinstance(n_folds, int) and n_folds >= 2):
        raise RecipeError(f"n_folds {n_folds!r} must be a whole number >= 2")
    if (labels_present is not None and getattr(labels_present, "shape", None) == grid.shape
            and not np.asarray(labels_present).any()):
        raise RecipeError("no labelled pixel inside the scene: the labels do not overlap "
                          "the rasters, or none has a class of the recipe; check the "
                          "label file's area and CRS, `labels.class_column` and "
                          "`labels.classes`")
    side = block_pixels(grid, block_size, align=align)
    nby, nbx = _blocks_shape(grid.shape, side)
    n_blocks = nby * nbx
    if n_blocks < n_folds:
        raise RecipeError(f"the scene holds {n_blocks} blocks of {side * grid.resolution:g} "
                          f"units ({grid.width} x {grid.height} px); "
                          + (_DEGREES if grid.crs.is_geographic else
                             f"use a smaller block_size or fewer folds than {n_folds}"))
    if labels_present is None:
        counts = np.zeros(n_blocks, dtype=np.int64)
    else:
        if labels_present.dtype != bool or labels_present.shape != grid.shape:
            raise RecipeError(f"labels_present must be a bool mask of shape {grid.shape} "
                              f"(e.g. labels != ignore_value), got {labels_present.dtype} "
                              f"{labels_present.shape}")
        counts = _block_counts(labels_present, side)
        n_lab = int((counts > 0).sum())
        if n_lab < n_folds:
            raise RecipeError(f"only {n_lab} of the {n_blocks} blocks of "
                              f"{side * grid.resolution:g} units hold labels, fewer than the "
                              f"{n_folds} folds; " + (_DEGREES if grid.crs.is_geographic else
                                                      "use a smaller block_size or fewer folds"))
    rng = np.random.default_rng(seed)
    tie = rng.permutation(n_blocks)
    fold_rank = rng.permutation(n_folds)
    share = None
    if class_labels is not None and labels_present is not None:
        ids = [c for c in np.unique(class_labels[labels_present]) if c != ignore_value]
        per = np.stack([_block_counts(class_labels == c, side) for c in ids], axis=1)
        share = per / np.maximum(per.sum(axis=0), 1)  # (blocks, classes): share of each class
        order = np.lexsort((tie, -counts, -share.max(axis=1)))
        held = np.zeros((n_folds, len(ids)))
    else:
        order = np.lexsort((tie, -counts))  # most labelled first, seeded ties
    fold_of = np.empty(n_blocks, dtype=np.int64)
    labelled = [0] * n_folds
    blocks = [0] * n_folds
    for b in order:
        c = int(counts[b])
        if c > 0 and share is not None:
            cost = held @ share[b]  # how much of this block's classes each fold holds already
            f = min(range(n_folds), key=lambda k: (round(float(cost[k]), 12), labelled[k],
                                                   blocks[k], fold_rank[k]))
            held[f] += share[b]
        elif c > 0:
            f = min(range(n_folds), key=lambda k: (labelled[k], blocks[k], fold_rank[k]))
        else:
            f = min(range(n_folds), key=lambda k: (blocks[k], labelled[k], fold_rank[k]))
        fold_of[b] = f
        labelled[f] += c
        blocks[f] += 1
    return SpatialSplit(float(block_size), side, grid.shape, n_folds, seed,
                        tuple(int(f) for f in fold_of),
                        tuple(labelled) if labels_present is not None else ())


def train_val_test(split: SpatialSplit, test_fold: int, val_fold: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base-resolution masks of the training, validation and test pixels.

    Args:
        split: the folds.
        test_fold: fold held out for testing.
        val_fold: fold held out for validation (default: the fold after ``test_fold``).

    Returns:
        ``(train, val, test)`` (H, W) bool masks: disjoint, together covering the scene.

    Raises:
        RecipeError: a fold that does not exist, the same fold twice, or fewer than 3 folds.
    """
    if split.n_folds < 3:
        raise RecipeError(f"a train/validation/test split needs at least 3 folds, the split "
                          f"has {split.n_folds}; make the folds with n_folds >= 3")
    split._check_fold(test_fold, "test_fold")
    val = (test_fold + 1) % split.n_folds if val_fold is None else val_fold
    split._check_fold(val, "val_fold")
    if val == test_fold:
        raise RecipeError(f"val_fold and test_fold are both {val}; pick two different folds")
    folds = split.fold_map()
    test, valid = folds == test_fold, folds == val
    return ~(test | valid), valid, test
