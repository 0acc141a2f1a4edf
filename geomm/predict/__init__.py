"""Stage 4, predict: engines over a bundle, the tiled stream with overlap blending, COG
writing, map files and sidecars, prediction regions, and inference over a tile store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geomm._lazy import lazy_exports

_EXPORTS = {"predict_scene": "scene", "predict_recipe": "scene", "PredictOptions": "scene",
            "PredictSummary": "scene", "plan_tiles": "scene"}
__all__ = ["PredictOptions", "PredictSummary", "plan_tiles", "predict_recipe", "predict_scene"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from geomm.predict.scene import (
        PredictOptions,
        PredictSummary,
        plan_tiles,
        predict_recipe,
        predict_scene,
    )
