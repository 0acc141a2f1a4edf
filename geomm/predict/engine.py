"""Tile predictors: batches of normalised layer arrays in, class probabilities out.

The network engine is pure torch (it knows no file or CRS): it moves a batch to the device,
runs the model under ``torch.inference_mode`` (with bf16 autocast on CUDA, channels-last
memory layout where it helps) and returns float32 probabilities. The classical engine applies
an RF/SVM bundle's numpy predictor to every pixel of the same batches, so both kinds of bundle
share one prediction path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["ClassicalEngine", "Engine", "EngineLayer", "NetworkEngine", "default_threads"]


@dataclass(frozen=True)
class EngineLayer:
    """An input layer as an engine sees it, and how its raw values are prepared."""

    key: str
    """Layer key, e.g. ``"infrared/20m"``."""
    modality: str
    """Modality name."""
    factor: int
    """Pixel size in base pixels."""
    shift: tuple[float, ...]
    """Per band: the mean (network) or the physical offset (``physical``)."""
    scale: tuple[float, ...]
    """Per band: the standard deviation (network) or the physical scale (``physical``)."""
    physical: bool = False
    """Prepare ``raw * scale + shift`` (float64, as the per-pixel baselines were fitted)
    instead of the network's ``(raw - mean) / std`` (float32, as in training)."""

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """``(C, h, w)`` raw values -> float32 model inputs."""
        if self.physical:
            scale = np.asarray(self.scale, np.float64)[:, None, None]
            return (raw.astype(np.float64) * scale
                    + np.asarray(self.shift, np.float64)[:, None, None]).astype(np.float32)
        mean = np.asarray(self.shift, np.float32)[:, None, None]
        inv = 1 / np.asarray([s if s > 0 else 1.0 for s in self.scale], np.float32)
        x = raw.astype(np.float32)  # a copy: prepared in place (same float32 steps as training)
        x -= mean
        x *= inv[:, None, None]
        return x


class Engine(Protocol):
    """What the predict stage needs from a model."""

    layers: tuple[EngineLayer, ...]
    num_classes: int
    lattice: int
    """Tile sides and origins must be multiples of this (base pixels)."""
    context: bool
    """Whether a pixel's prediction depends on its neighbours (tiles then need a halo)."""
    batch_px: int
    """Most pixels per forward pass (keeps the device busy without wasting memory)."""
    description: str

    def __call__(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        """``key -> (N, C, T/f, T/f)`` float32 normalised arrays -> ``(N, K, T, T)``."""
        ...


def default_threads() -> int:
    """CPU threads for torch: the cores this process may use (cgroup/affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover  (not Linux)
        return max(1, os.cpu_count() or 1)


class NetworkEngine:
    """A :class:`~geomm.model.network.MultiBranchNet` as an engine.

    Args:
        model: the network (moved to ``device``, put in eval mode).
        layers: its input layers with normalisation.
        device: ``"cpu"``, ``"cuda"``, or ``"auto"`` (CUDA when available).
        amp: bf16 autocast on CUDA (ignored on CPU).
        channels_last: NHWC memory layout (faster convolutions on most CPUs and GPUs).
        compile: wrap the model in ``torch.compile`` (pays a compile once per tile shape).
        missing: modalities absent at inference (the model must allow it).
        threads: torch intra-op threads on CPU (default: the usable cores).
        temperature: the logits are divided by it before the softmax (calibration).
    """

    def __init__(self, model: Any, layers: Sequence[EngineLayer], *, device: str = "auto",
                 amp: bool = True, channels_last: bool = True, compile: bool = False,
                 missing: Collection[str] = (), threads: int | None = None,
                 temperature: float = 1.0) -> None:
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cpu":
            torch.set_num_threads(threads or default_threads())
        self.amp = amp and self.device.type == "cuda"
        self.channels_last = channels_last
        self.context = True
        self.batch_px = 2**23 if self.device.type == "cuda" else 2**20
        self.missing = frozenset(missing)
        self.temperature = float(temperature)
        config = model.config
        present = [m for m in config.modalities if m not in self.missing]
        # a network trained with modality dropout maps a pixel from the modalities that have
        # data there (a band with a smaller footprint); without it, every layer must have data
        self.partial = float(config.modality_dropout) > 0 and len(present) > 1
        self.extra_inputs: tuple[str, ...] = (tuple(f"valid:{m}" for m in present)
                                              if self.partial else ())
        self.layers = tuple(la for la in layers if la.modality not in self.missing)
        self.num_classes = int(model.config.num_classes)
        self.lattice = int(model.lattice)
        model = model.eval().to(self.device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = torch.compile(model) if compile else model
        variant = "compiled" if compile else "channels-last" if channels_last else "eager"
        n = int(config.members)
        self.description = (f"{f'mean of {n} networks' if n > 1 else 'network'} on "
                            f"{self.device.type}"
                            f"{' (bf16 autocast)' if self.amp else ''}, {variant}"
                            + (f", {torch.get_num_threads()} threads"
                               if self.device.type == "cpu" else ""))

    def __call__(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        import torch

        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        inputs = {la.key: torch.from_numpy(batch[la.key]).to(
            self.device, non_blocking=True).contiguous(memory_format=fmt) for la in self.layers}
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.amp):
            valid = {k.split(":", 1)[1]: torch.from_numpy(batch[k]).to(self.device)
                     for k in self.extra_inputs}
            logits = self.model(inputs, missing=self.missing, valid=valid or None)
            logits = logits.float()
            if self.temperature != 1.0:
                logits = logits / self.temperature
            probs = torch.softmax(logits, dim=1)
        return probs.to("cpu").numpy()


class ClassicalEngine:
    """A per-pixel RF/SVM predictor applied to every pixel of a batch.

    Features are the layers' physical band values (raw * scale + offset), coarse layers
    repeated onto the base grid: the features the classifier was fitted on.
    """

    def __init__(self, predictor: Any, layers: Sequence[EngineLayer], num_classes: int) -> None:
        self.predictor, self.layers, self.num_classes = predictor, tuple(layers), num_classes
        self.lattice = _lcm([la.factor for la in layers])
        self.context = False
        self.batch_px = 2**20
        self.classes = np.asarray(predictor.classes, dtype=np.int64)
        self.description = f"{type(predictor).__name__} per pixel (numpy)"

    def __call__(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        feats = []
        for la in self.layers:
            x = batch[la.key]
            feats.append(np.repeat(np.repeat(x, la.factor, axis=2), la.factor, axis=3)
                         if la.factor > 1 else x)
        x = np.concatenate(feats, axis=1)  # (N, F, T, T)
        n, f, h, w = x.shape
        proba = self.predictor.predict_proba(x.transpose(0, 2, 3, 1).reshape(-1, f))
        out = np.zeros((n * h * w, self.num_classes), dtype=np.float32)
        out[:, self.classes] = proba
        return out.reshape(n, h, w, self.num_classes).transpose(0, 3, 1, 2)


def _lcm(values: Sequence[int]) -> int:
    return math.lcm(*(int(v) for v in values))
