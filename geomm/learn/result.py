"""A trained network with what is needed to use and judge it, and the bundle it is saved as."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geomm.learn.config import TrainConfig, train_config_dict
from geomm.learn.heldout import HeldOutScores
from geomm.learn.split import SpatialSplit
from geomm.model.members import Network
from geomm.model.netbundle import state_tensors
from geomm.model.network import ModelConfig
from geomm.model.normstats import NormStats
from geomm.stack.store import TileStore

__all__ = ["TrainResult", "save_cnn_bundle"]


@dataclass
class TrainResult:
    """A trained model and what is needed to use and judge it."""

    model: Network
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


def save_cnn_bundle(result: TrainResult, store: TileStore, out: Path, *,
                    recipe_raw: dict[str, Any] | None = None, overwrite: bool = False,
                    extra_metrics: dict[str, Any] | None = None, kind: str = "cnn",
                    extra_arrays: dict[str, np.ndarray] | None = None,
                    extra_config: dict[str, Any] | None = None) -> Path:
    """Write a trained network as a model bundle (safetensors weights + JSON metadata);
    ``extra_metrics`` join the result's metrics (e.g. the ``auto`` model choice);
    ``extra_arrays`` and ``extra_config`` another model's (a "cnn+rf" ``kind``)."""
    from geomm.model.bundle import BundleMeta, layers_from_manifest, save_bundle

    keys = [layer.key for layer in result.config.layers]
    meta = BundleMeta(
        store.manifest.get("recipe", ""), layers_from_manifest(store.manifest, keys),
        store.manifest["classes"], normalisation=result.stats.to_dict(),
        config={"model": result.config.to_dict(),
                "training": train_config_dict(result.train_config),
                **({"calibration": {"temperature": result.heldout.temperature,
                                    "fitted_on": "validation blocks"}}
                   if result.heldout is not None else {}), **(extra_config or {})},
        split=result.split.to_dict(), metrics={**result.metrics, **(extra_metrics or {})},
        recipe_raw=recipe_raw)
    tensors: dict[str, Any] = state_tensors(result.model)
    if extra_arrays:  # one kind of array in a file: numpy (the forest's are unsigned)
        tensors = {**{k: v.numpy() for k, v in tensors.items()}, **extra_arrays}
    return save_bundle(out, kind=kind, tensors=tensors, meta=meta, overwrite=overwrite)
