"""The engine of a "cnn+rf" bundle: the calibrated network's and the forest's probabilities,
averaged and calibrated again.

Both models see the same batch: the network's normalised layers, from which the forest's
physical band values are recovered in float64 (``(x * std + mean) * scale + offset``; within
a millionth of a band's standard deviation of the values it was fitted on). Where a modality
has no data (a band with a smaller footprint, a ``--missing`` modality) the forest cannot
answer and the network, trained with modality dropout, maps the pixel alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from geomm.model.calibrate import temper
from geomm.predict.engine import ClassicalEngine, EngineLayer, NetworkEngine

__all__ = ["EnsembleEngine"]


class EnsembleEngine:
    """A network engine and a forest engine on the same batches, their probabilities averaged.

    Args:
        network: the network engine (its temperature already applied).
        forest: the forest engine over physical values of the same layers.
        units: per layer key, ``(scale, offset)``: raw values to physical ones.
        weight: the network's share of the mean (the forest has ``1 - weight``).
        temperature: applied to the mean (fitted on the validation blocks).
    """

    def __init__(self, network: NetworkEngine, forest: ClassicalEngine,
                 units: Mapping[str, tuple[float, float]], *, weight: float = 0.5,
                 temperature: float = 1.0) -> None:
        self.network, self.forest = network, forest
        self.device = network.device
        self.layers: tuple[EngineLayer, ...] = network.layers
        self.num_classes = network.num_classes
        self.lattice = math.lcm(network.lattice, forest.lattice)
        self.context = True
        self.batch_px = min(network.batch_px, forest.batch_px)
        self.partial = network.partial
        self.extra_inputs = network.extra_inputs
        self.weight, self.temperature = float(weight), float(temperature)
        self.usable = not network.missing  # the forest needs every modality
        # per layer, float64 (C, 1, 1): normalised x -> physical (x * std + mean) * scale + offset
        self._to_physical = {
            la.key: (np.asarray([s if s > 0 else 1.0 for s in la.scale], np.float64)[:, None, None],
                     np.asarray(la.shift, np.float64)[:, None, None], *units[la.key])
            for la in self.layers}
        self.description = (f"{network.description}, averaged with a {forest.description}"
                            if self.usable else
                            f"{network.description} (its forest needs every modality)")

    def _physical(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for key, (std, mean, scale, offset) in self._to_physical.items():
            raw = batch[key].astype(np.float64) * std + mean
            out[key] = (raw * scale + offset).astype(np.float32)
        return out

    def __call__(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        p_net = self.network(batch)
        if not self.usable:
            return p_net
        p_rf = self.forest(self._physical(batch))
        mean = temper(self.weight * p_net + (1 - self.weight) * p_rf, self.temperature,
                      axis=1)
        if self.partial:  # the forest only where every modality has data
            every = np.logical_and.reduce([batch[k] > 0 for k in self.extra_inputs])
            return np.where(every, mean, p_net).astype(np.float32)
        return mean


def forest_layers(layers: Sequence[EngineLayer]) -> list[EngineLayer]:
    """The forest engine's view of the network's layers (its values come in physical)."""
    return [EngineLayer(la.key, la.modality, la.factor, (0.0,) * len(la.shift),
                        (1.0,) * len(la.scale), physical=True) for la in layers]
