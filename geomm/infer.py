"""Class maps of a fusion CNN over a whole tile store, patch by patch, overlaps blended.

Patches overlap by ``overlap`` base pixels; each patch's class probabilities are weighted by a
window that falls off towards the patch edge (so seams carry no edge artefacts) and summed.
This holds the scene's probabilities in memory; streaming, constant-memory prediction to
Cloud-Optimized GeoTIFF is the predict stage's job.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import torch

from geomm.dataset import PatchSampler, StorePatchDataset
from geomm.model import MultiBranchNet
from geomm.normalize import NormStats
from geomm.store import TileStore

__all__ = ["predict_store"]


def _window(p: int, overlap: int) -> np.ndarray:
    ramp = np.ones(p, dtype=np.float32)
    if overlap:
        edge = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        ramp[:overlap], ramp[-overlap:] = edge, edge[::-1]
    return np.outer(ramp, ramp)


@torch.no_grad()
def predict_store(model: MultiBranchNet, store: TileStore, stats: NormStats, *,
                  patch_size: int = 192, overlap: int = 48, batch_size: int = 8,
                  missing: Collection[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Predict every pixel of ``store``.

    Args:
        model: a trained network (put in eval mode here).
        store: the tile store to predict.
        stats: the normalisation statistics the model was trained with.
        patch_size: patch side, base pixels (a multiple of every layer's factor).
        overlap: overlap of neighbouring patches, base pixels.
        batch_size: patches per forward pass.
        missing: modalities to treat as absent (their inputs are not used).

    Returns:
        ``(class ids uint8 (H, W), probabilities float32 (K, H, W))``; invalid pixels hold the
        class table's ignore value in the class map.
    """
    model.eval()
    h, w = store.grid.shape
    p = min(patch_size, h, w)
    everything = np.ones((h, w), dtype=bool)
    sampler = PatchSampler(store, everything, p, min_labelled=0)
    stride = max(sampler.step, (p - overlap) // sampler.step * sampler.step)
    origins = sampler.grid(stride)
    ds = StorePatchDataset(store, origins, p, stats, everything, augment=False)
    keys = [layer.key for layer in model.config.layers if layer.modality not in missing]
    k = model.config.num_classes
    acc = np.zeros((k, h, w), dtype=np.float32)
    wsum = np.zeros((h, w), dtype=np.float32)
    win = _window(p, min(overlap, p // 2))
    for start in range(0, len(origins), batch_size):
        items = [ds[i] for i in range(start, min(start + batch_size, len(origins)))]
        batch = {key: torch.stack([it[key] for it in items]) for key in keys}
        prob = torch.softmax(model(batch, missing=missing), dim=1).numpy()
        for it, pr in zip(items, prob, strict=True):
            r, c = (int(v) for v in it["origin"])
            acc[:, r:r + p, c:c + p] += pr * win
            wsum[r:r + p, c:c + p] += win
    acc /= np.maximum(wsum, 1e-12)
    classes = acc.argmax(axis=0).astype(np.uint8)
    valid = np.asarray(store.base()["valid"].values)
    classes[~valid] = int(store.manifest["classes"]["ignore_value"])
    return classes, acc
