"""Normalisation statistics of a model's input layers: the numbers training writes into a bundle
and prediction applies, so both sides normalise alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geomm.errors import RecipeError

__all__ = ["LayerStats", "NormStats"]


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
