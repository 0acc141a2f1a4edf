"""The contract between training and prediction: the fusion network (pure torch, no
Lightning), pretrained branch weights, the numpy classical predictors, normalisation statistics,
temperature calibration and the model bundle format."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geomm._lazy import lazy_exports

_EXPORTS = {"load_bundle": "bundle", "Bundle": "bundle", "BundleMeta": "bundle",
            "MultiBranchNet": "network", "ModelConfig": "network", "NormStats": "normstats"}
__all__ = ["Bundle", "BundleMeta", "ModelConfig", "MultiBranchNet", "NormStats", "load_bundle"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from geomm.model.bundle import Bundle, BundleMeta, load_bundle
    from geomm.model.network import ModelConfig, MultiBranchNet
    from geomm.model.normstats import NormStats
