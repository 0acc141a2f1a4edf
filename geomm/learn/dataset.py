"""Patches of a tile store as torch tensors: the one place where store rasters meet torch.

A patch is ``patch_size`` base pixels square, with its origin on the lattice of whole pixels
of every layer (the lcm of the layer factors), so each layer is cut at its native resolution
without resampling. Only the pixels of an *allowed* mask (the training blocks of a spatial
split) carry labels: everywhere else in a patch the label is the ignore value, so pixels of
test blocks never reach the loss, while the model still sees the imagery around them.
Patches are sliced straight from the store's Zarr arrays (one chunk per tile); whole-scene
passes (statistics, eligibility) stream one row of tiles at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from geomm.errors import LabelError, RecipeError
from geomm.model.normstats import NormStats
from geomm.stack._tiles import _check_mask, _classes, _row_bands, _TileReader, _usable, layer_bands
from geomm.stack.store import TileStore

__all__ = ["PatchSampler", "StorePatchDataset", "patch_lattice"]


def patch_lattice(store: TileStore, patch_size: int) -> int:
    """Check ``patch_size`` against the store; return the origin step (lcm of the factors).

    Raises:
        RecipeError: the patch is not whole pixels of every layer, or larger than the scene.
    """
    factors = sorted({store.factor(k) for k in store.layer_keys})
    step = math.lcm(*factors)
    if not isinstance(patch_size, int | np.integer) or patch_size < step or patch_size % step:
        lower, upper = (patch_size // step) * step, (patch_size // step + 1) * step
        hint = f"{lower} or {upper}" if lower else str(upper)
        raise RecipeError(f"patch_size {patch_size!r} is not a multiple of {step}, the lcm of "
                          f"the layer factors {factors} of {store.path}; use e.g. {hint}")
    h, w = store.grid.shape
    if patch_size > min(h, w):
        raise RecipeError(f"patch_size {patch_size} is larger than the scene of {w} x {h} px "
                          f"({store.path}); use a patch_size of at most {min(h, w)}")
    return int(step)


class PatchSampler:
    """Patch origins on the lattice whose patch holds enough labelled, allowed pixels."""

    def __init__(self, store: TileStore, allowed: np.ndarray, patch_size: int, *,
                 min_labelled: int = 1) -> None:
        """Count the labelled, valid, allowed pixels of every candidate patch.

        Args:
            store: the tile store.
            allowed: (H, W) bool mask of the pixels whose labels may be used.
            patch_size: patch side in base pixels, a multiple of every layer factor.
            min_labelled: a patch is eligible with at least this many such pixels (0: all).

        Raises:
            RecipeError: a bad patch size or mask.
            LabelError: no patch is eligible.
        """
        self.patch_size, self.step = patch_size, patch_lattice(store, patch_size)
        self.min_labelled = min_labelled
        allowed = _check_mask(store, allowed, "allowed")
        reader, s = _TileReader(store.path), self.step
        n_classes, _ = _classes(store, reader)
        h, w = store.grid.shape
        cells = np.zeros((h // s, w // s), dtype=np.int64)
        for r0, r1 in _row_bands(store, s):
            _, _, usable = _usable(reader, n_classes, r0, r1, 0, w)
            usable &= allowed[r0:r1]
            cells[r0 // s:r1 // s] = usable.reshape((r1 - r0) // s, s, w // s, s).sum((1, 3))
        n = patch_size // s
        sat = np.zeros((cells.shape[0] + 1, cells.shape[1] + 1), dtype=np.int64)
        sat[1:, 1:] = cells.cumsum(0).cumsum(1)
        self.counts = sat[n:, n:] - sat[:-n, n:] - sat[n:, :-n] + sat[:-n, :-n]
        """Usable pixels of the patch at every lattice origin, indexed by origin // step."""
        self.eligible = np.argwhere(self.counts >= min_labelled).astype(np.int64) * s
        """(N, 2) (row, col) origins of the eligible patches."""
        if not len(self.eligible):
            raise LabelError(f"{store.path}: no patch of {patch_size} px holds >= "
                             f"{min_labelled} labelled pixels inside the allowed area "
                             f"({int(cells.sum())} labelled pixels there); lower min_labelled "
                             "or patch_size, or check the split and the labels")

    def grid(self, stride: int | None = None) -> np.ndarray:
        """Eligible origins of a regular grid (the last row/column flush with the scene edge).

        Args:
            stride: grid step in base pixels, a multiple of the lattice (default: patch_size).
        """
        stride = self.patch_size if stride is None else stride
        if stride < self.step or stride % self.step:
            raise RecipeError(f"stride {stride} is not a positive multiple of {self.step}, "
                              "the lattice of whole pixels of every layer")
        axes = []
        for n in self.counts.shape:
            last = (n - 1) * self.step
            pos = list(range(0, last + 1, stride))
            axes.append(np.array(pos + ([last] if pos[-1] != last else []), dtype=np.int64))
        rr, cc = np.meshgrid(*axes, indexing="ij")
        keep = self.counts[rr // self.step, cc // self.step] >= self.min_labelled
        return np.stack([rr[keep], cc[keep]], axis=1)

    def random(self, n: int, *, seed: int, epoch: int = 0) -> np.ndarray:
        """``n`` eligible origins drawn at random, the same for the same seed and epoch."""
        rng = np.random.default_rng([seed, epoch])
        idx = rng.choice(len(self.eligible), size=n, replace=n > len(self.eligible))
        return self.eligible[idx]


class StorePatchDataset(Dataset[dict[str, torch.Tensor]]):
    """Patches of a tile store: every layer normalised at its native resolution, plus labels.

    Items are dicts: ``{layer_key: float32 (C, P/f, P/f), "labels": int64 (P, P),
    "valid": bool (P, P), "weight": float32 (P, P), "origin": int64 (2,)}``; torch's default
    collate batches them.
    """

    def __init__(self, store: TileStore, origins: np.ndarray | Sequence[tuple[int, int]],
                 patch_size: int, stats: NormStats, allowed_mask: np.ndarray, *,
                 augment: bool, weights: np.ndarray | None = None, seed: int = 0,
                 cache_bytes: int = 256 * 2**20) -> None:
        """Set up the patches.

        Args:
            store: the tile store.
            origins: (N, 2) (row, col) base-pixel origins on the lattice (:class:`PatchSampler`).
            patch_size: patch side in base pixels.
            stats: normalisation statistics (from the training pixels).
            allowed_mask: (H, W) bool; labels outside it are the ignore value.
            augment: random flips and 90-degree rotations, the same for every array.
            weights: (K,) per-class loss weights (:func:`class_weights`); default 1.
            seed: seed of the augmentations (each item draws from ``(seed, epoch, index)``).
            cache_bytes: decoded tiles kept per worker (least recently used go first).

        Raises:
            RecipeError: a bad patch size, origin, mask, weights, or statistics that do not
                match the store's layers and bands.
        """
        self.step, self.patch_size = patch_lattice(store, patch_size), patch_size
        self.path, self.keys = store.path, list(store.layer_keys)
        self.factors = {k: store.factor(k) for k in self.keys}
        self.shape = store.grid.shape
        self.allowed = _check_mask(store, allowed_mask, "allowed_mask")
        have = {s.key: s.bands for s in stats.layers}
        want = {k: layer_bands(store, k) for k in self.keys}
        if have != want:
            raise RecipeError(f"normalisation statistics are for layers {have}, the store "
                              f"{store.path} has {want}; compute them on this store")
        self._norm = {k: (np.asarray(stats[k].mean, np.float32)[:, None, None],
                          1 / np.asarray([s if s > 0 else 1.0 for s in stats[k].std],
                                         np.float32)[:, None, None]) for k in self.keys}
        self.n_classes, self.ignore = _classes(store, _TileReader(store.path))
        w = np.ones(self.n_classes) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (self.n_classes,):
            raise RecipeError(f"weights: expected one per class ({self.n_classes}), "
                              f"got shape {w.shape}")
        self.weights = np.append(w, 0.0).astype(np.float32)  # last entry: unlabelled
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.set_origins(origins)
        self.cache_bytes = cache_bytes
        self._reader: _TileReader | None = None

    def set_origins(self, origins: np.ndarray | Sequence[tuple[int, int]]) -> None:
        """Replace the patch origins (e.g. a fresh random draw each epoch)."""
        o = np.asarray(origins, dtype=np.int64).reshape(-1, 2)
        p, (h, w) = self.patch_size, self.shape
        bad = (o % self.step != 0).any(1) | (o < 0).any(1) | (o[:, 0] > h - p) | (o[:, 1] > w - p)
        if bad.any():
            r, c = o[np.argmax(bad)]
            raise RecipeError(f"patch origin ({r}, {c}) is off the {self.step}-px lattice or "
                              f"its {p}-px patch leaves the {w} x {h} px scene; take origins "
                              "from PatchSampler")
        self.origins = o

    def set_epoch(self, epoch: int) -> None:
        """Draw other augmentations (call once per epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.origins)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_reader": None}  # each worker opens the store itself

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self._reader is None:
            self._reader = _TileReader(self.path, self.cache_bytes)
        rd, p = self._reader, self.patch_size
        r, c = (int(v) for v in self.origins[index])
        arrays: dict[str, np.ndarray] = {}
        for key in self.keys:
            f = self.factors[key]
            win = (r // f, (r + p) // f, c // f, (c + p) // f)
            mean, inv = self._norm[key]
            raw = rd.read(f"{key}/data", *win)
            invalid = ~rd.read(f"{key}/valid", *win).astype(bool)
            if raw.dtype.kind == "f":
                invalid |= ~np.isfinite(raw).all(axis=0)
            x = (raw.astype(np.float32) - mean) * inv
            x[:, invalid] = 0.0
            arrays[key] = x
        labels, valid, usable = _usable(rd, self.n_classes, r, r + p, c, c + p)
        usable &= self.allowed[r:r + p, c:c + p]
        cls = np.where(usable, labels, self.n_classes).astype(np.int64)
        arrays["weight"] = self.weights[cls]
        arrays["labels"] = np.where(usable, cls, self.ignore)
        arrays["valid"] = valid
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            k, flip_h, flip_v = int(rng.integers(4)), bool(rng.integers(2)), bool(rng.integers(2))
            arrays = {n: _dihedral(a, k, flip_h, flip_v) for n, a in arrays.items()}
        out = {n: torch.from_numpy(np.ascontiguousarray(a)) for n, a in arrays.items()}
        out["origin"] = torch.tensor([r, c], dtype=torch.int64)
        return out


def _dihedral(a: np.ndarray, k: int, flip_h: bool, flip_v: bool) -> np.ndarray:
    """Rotate by ``k`` quarter turns, then flip: on the last two axes, whatever the size."""
    a = np.rot90(a, k, axes=(-2, -1))
    if flip_h:
        a = a[..., ::-1]
    if flip_v:
        a = a[..., ::-1, :]
    return a
