"""Stage 3, fuse + learn: patch dataset, spatial-block split, normalisation statistics,
Lightning training, multi-label scenes, cross-validation and the per-pixel baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geomm._lazy import lazy_exports

_EXPORTS = {"train_recipe": "train", "TrainConfig": "config", "crossval_recipe": "crossval"}
__all__ = ["TrainConfig", "crossval_recipe", "train_recipe"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from geomm.learn.config import TrainConfig
    from geomm.learn.crossval import crossval_recipe
    from geomm.learn.train import train_recipe
