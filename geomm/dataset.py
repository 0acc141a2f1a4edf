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
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from geomm.errors import LabelError, RecipeError
from geomm.store import TileStore

__all__ = ["LayerStats", "NormStats", "PatchSampler", "StorePatchDataset", "class_weights",
           "compute_norm_stats", "patch_lattice"]


class _TileReader:
    """Windows of a store's Zarr arrays, cut from decoded chunks (tiles) kept in an LRU cache.

    Random patches revisit the same tiles; decoding each once per worker, instead of once
    per patch, keeps the loader well ahead of a CPU model.
    """

    def __init__(self, store_path: Path, max_bytes: int = 0) -> None:
        import zarr

        self.group: Any = zarr.open_group(str(store_path / "store.zarr"), mode="r")
        self.max_bytes, self.nbytes = max_bytes, 0
        self.arrays: dict[str, Any] = {}
        self.tiles: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()

    def read(self, name: str, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Rows ``[r0, r1)`` x cols ``[c0, c1)`` of array ``name`` (e.g. ``"base/labels"``)."""
        if name not in self.arrays:
            self.arrays[name] = self.group[name]
        arr = self.arrays[name]
        (th, tw), lead = arr.chunks[-2:], (slice(None),) * (arr.ndim - 2)
        if not self.max_bytes:  # a streamed pass: read straight through, chunks in parallel
            return np.asarray(arr[(*lead, slice(r0, r1), slice(c0, c1))])
        out = np.empty((*arr.shape[:-2], r1 - r0, c1 - c0), dtype=arr.dtype)
        for tr in range(r0 // th, (r1 - 1) // th + 1):
            for tc in range(c0 // tw, (c1 - 1) // tw + 1):
                key = (name, tr, tc)
                tile = self.tiles.get(key)
                if tile is None:
                    tile = self.tiles[key] = np.asarray(
                        arr[(*lead, slice(tr * th, (tr + 1) * th), slice(tc * tw, (tc + 1) * tw))])
                    self.nbytes += tile.nbytes
                    while self.nbytes > self.max_bytes and len(self.tiles) > 1:
                        self.nbytes -= self.tiles.popitem(last=False)[1].nbytes
                self.tiles.move_to_end(key)
                y0, y1 = max(r0, tr * th), min(r1, (tr + 1) * th)
                x0, x1 = max(c0, tc * tw), min(c1, (tc + 1) * tw)
                out[..., y0 - r0:y1 - r0, x0 - c0:x1 - c0] = \
                    tile[..., y0 - tr * th:y1 - tr * th, x0 - tc * tw:x1 - tc * tw]
        return out


def _classes(store: TileStore, reader: _TileReader) -> tuple[int, int]:
    """(number of classes, ignore value); 0 classes when the store has no label raster."""
    table = store.manifest.get("classes") or {}
    n = len(table.get("classes", [])) if "labels" in reader.group["base"] else 0
    return n, int(table.get("ignore_value", 255))


def _row_bands(store: TileStore, step: int) -> Iterator[tuple[int, int]]:
    """Base-row ranges of one row of tiles each (a multiple of ``step`` rows)."""
    rows = max(step, store.tile_size // step * step)
    height = store.grid.height
    for r0 in range(0, height, rows):
        yield r0, min(r0 + rows, height)


def _check_mask(store: TileStore, mask: np.ndarray, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != store.grid.shape:
        raise RecipeError(f"{what} must be a bool mask of the base grid {store.grid.shape} "
                          f"of {store.path}, got {mask.dtype} {mask.shape}")
    return mask


def _usable(reader: _TileReader, n_classes: int, r0: int, r1: int, c0: int, c1: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, valid mask and where labels count (valid and a class id) of a window."""
    valid = reader.read("base/valid", r0, r1, c0, c1).astype(bool, copy=False)
    if not n_classes:
        return np.zeros(valid.shape, np.uint8), valid, np.zeros(valid.shape, bool)
    labels = reader.read("base/labels", r0, r1, c0, c1)
    return labels, valid, valid & (labels < n_classes)


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


@dataclass(frozen=True)
class LayerStats:
    """Mean and standard deviation of one layer's raw values, per band."""

    key: str
    """Layer key, e.g. ``"visible/10m"``."""
    bands: tuple[str, ...]
    """Band names, in the layer's order."""
    mean: tuple[float, ...]
    """Mean raw value per band."""
    std: tuple[float, ...]
    """Standard deviation (population) of the raw values per band."""
    count: int
    """Valid pixels the statistics were taken over."""


@dataclass(frozen=True)
class NormStats:
    """Normalisation statistics of every layer, taken on the training pixels only."""

    layers: tuple[LayerStats, ...]
    """One entry per layer."""

    def __getitem__(self, key: str) -> LayerStats:
        for lyr in self.layers:
            if lyr.key == key:
                return lyr
        raise KeyError(f"no statistics for layer {key!r}; have {[s.key for s in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"layers": [{"key": s.key, "bands": list(s.bands), "mean": list(s.mean),
                            "std": list(s.std), "count": s.count} for s in self.layers]}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> NormStats:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(tuple(LayerStats(str(d["key"]), tuple(map(str, d["bands"])),
                                        tuple(map(float, d["mean"])),
                                        tuple(map(float, d["std"])), int(d["count"]))
                             for d in doc["layers"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecipeError(f"normalisation statistics: missing or bad key ({exc!r}); "
                              "expected the keys written by NormStats.to_dict()") from None


def _bands(store: TileStore, key: str) -> tuple[str, ...]:
    return tuple(next(lyr["bands"] for lyr in store.manifest["layers"] if lyr["key"] == key))


def compute_norm_stats(store: TileStore, mask: np.ndarray) -> NormStats:
    """Per-band mean/std of every layer's raw values over the valid pixels inside ``mask``.

    A coarse pixel counts when all the base pixels it covers are in ``mask``; nodata (the
    layer's ``valid`` mask) and non-finite values are left out. Streams one row of tiles.

    Raises:
        RecipeError: a bad mask, or a layer without a valid pixel inside it.
    """
    mask = _check_mask(store, mask, "mask")
    reader, step = _TileReader(store.path), math.lcm(*(store.factor(k) for k in store.layer_keys))
    out = []
    for key in store.layer_keys:
        f, nb_ = store.factor(key), len(_bands(store, key))
        n, mean, m2, w = 0, np.zeros(nb_), np.zeros(nb_), store.grid.width // f
        for r0, r1 in _row_bands(store, step):
            m = mask[r0:r1].reshape((r1 - r0) // f, f, -1, f).all(axis=(1, 3))
            data = reader.read(f"{key}/data", r0 // f, r1 // f, 0, w)
            sel = m & reader.read(f"{key}/valid", r0 // f, r1 // f, 0, w).astype(bool)
            if data.dtype.kind == "f":
                sel &= np.isfinite(data).all(axis=0)
            x = data[:, sel].astype(np.float64)
            nb = x.shape[1]
            if not nb:
                continue
            mb = x.mean(axis=1)
            delta, tot = mb - mean, n + nb  # Chan et al.: merge chunk moments exactly
            m2 += ((x - mb[:, None]) ** 2).sum(axis=1) + delta ** 2 * n * nb / tot
            mean += delta * nb / tot
            n = tot
        if not n:
            raise RecipeError(f"{store.path}: layer {key} has no valid pixel inside the mask; "
                              "normalisation statistics need training pixels with data")
        out.append(LayerStats(key, _bands(store, key), tuple(map(float, mean)),
                              tuple(map(float, np.sqrt(m2 / n))), n))
    return NormStats(tuple(out))


def class_weights(store: TileStore, mask: np.ndarray) -> np.ndarray:
    """Square-root inverse class frequency over the labelled pixels inside ``mask``.

    Returns:
        (K,) float64 weights, scaled to mean 1 over those pixels; 0 for absent classes.

    Raises:
        LabelError: the store has no label raster, or no labelled pixel inside ``mask``.
    """
    mask = _check_mask(store, mask, "mask")
    reader = _TileReader(store.path)
    n_classes, _ = _classes(store, reader)
    counts = np.zeros(n_classes, dtype=np.int64)
    for r0, r1 in _row_bands(store, 1):
        labels, _, usable = _usable(reader, n_classes, r0, r1, 0, store.grid.width)
        counts += np.bincount(labels[usable & mask[r0:r1]], minlength=256)[:n_classes]
    if not counts.sum():
        raise LabelError(f"{store.path}: no labelled pixel inside the mask; class weights "
                         "need a store with pixel labels and training pixels that have them")
    w = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
    return np.asarray(w * counts.sum() / (counts * w).sum())


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
        want = {k: _bands(store, k) for k in self.keys}
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
