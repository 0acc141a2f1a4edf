"""Class maps of a fusion CNN over a tile store, through the same tiled loop as geomm predict.

Cross-validation scores models on a stacked store; this runs the store's layers through
:func:`geomm.predict._stream.stream` (tiles with overlap, smooth blending, every tile once)
and keeps the small scene's outputs in memory instead of writing COGs.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from geomm.model.members import Network
from geomm.model.normstats import NormStats
from geomm.predict._stream import ArraySink, StoreSource, stream
from geomm.predict.engine import EngineLayer, NetworkEngine
from geomm.stack.store import TileStore

__all__ = ["predict_store"]


def predict_store(model: Network, store: TileStore, stats: NormStats, *,
                  patch_size: int = 192, overlap: int = 48, batch_size: int = 8,
                  missing: Collection[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Predict every pixel of ``store``.

    Args:
        model: a trained network (put in eval mode here).
        store: the tile store to predict.
        stats: the normalisation statistics the model was trained with.
        patch_size: tile side, base pixels (snapped to the model's lattice).
        overlap: overlap of neighbouring tiles, base pixels (blended).
        batch_size: tiles per forward pass.
        missing: modalities to treat as absent (their inputs are not used).

    Returns:
        ``(class ids uint8 (H, W), probabilities float32 (K, H, W))``; invalid pixels hold the
        class table's ignore value in the class map.
    """
    from geomm.predict.scene import PredictOptions, plan_tiles

    layers = [EngineLayer(la.key, la.modality, la.factor, stats[la.key].mean, stats[la.key].std)
              for la in model.config.layers]
    engine = NetworkEngine(model, layers, device="cpu", channels_last=False, amp=False,
                           missing=missing)
    h, w = store.grid.shape
    plan = plan_tiles(h, w, engine.lattice,
                      PredictOptions(tile_size=patch_size, halo=overlap // 2, window=2048))
    sink = ArraySink(h, w, engine.num_classes,
                     int(store.manifest["classes"]["ignore_value"]))
    stream(engine, plan, StoreSource(store), sink, batch_size)
    return sink.classes, sink.probs
