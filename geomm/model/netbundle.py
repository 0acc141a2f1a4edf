"""A fusion network to and from a model bundle (no Lightning or torchgeo needed to load one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from geomm.model.bundle import FOREST_PREFIX, Bundle, BundleError, load_bundle
from geomm.model.members import Network, build_network
from geomm.model.network import ModelConfig
from geomm.model.normstats import NormStats

__all__ = ["load_cnn_bundle", "state_tensors"]


def state_tensors(model: torch.nn.Module) -> dict[str, Tensor]:
    """A model's tensors, detached, on the CPU, contiguous: what a bundle stores."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def load_cnn_bundle(path: str | Path) -> tuple[Network, NormStats, Bundle]:
    """Rebuild a network from a "cnn" or "cnn+rf" bundle: (model in eval mode, stats, bundle).

    Raises:
        BundleError: a bundle without a network, or weights that do not fit its bundle.json.
    """
    bundle = load_bundle(path)
    if bundle.kind not in ("cnn", "cnn+rf"):
        raise BundleError(f"{path}: a {bundle.kind!r} bundle holds no network")
    tensors = {k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v)
               for k, v in bundle.tensors.items() if not k.startswith(FOREST_PREFIX)}
    config = ModelConfig.from_dict(bundle.meta.config["model"])
    n_table = len(bundle.meta.class_table)
    if config.head == "segmentation" and n_table != config.num_classes:
        raise BundleError(f"{path}: the class table names {n_table} classes but the network "
                          f"has {config.num_classes} outputs; the bundle is damaged or was "
                          "edited: train it again or restore bundle.json")
    model = build_network(config, load_weights=False)
    state = model.state_dict()
    bad = sorted(set(state) ^ set(tensors)) or [
        k for k in state if tuple(state[k].shape) != tuple(tensors[k].shape)]
    if bad:
        raise BundleError(f"{path}: weights do not fit the model described in bundle.json "
                          f"(first mismatch: {bad[0]!r}); the bundle is damaged or was edited")
    model.load_state_dict(tensors)
    return model.eval(), NormStats.from_dict(bundle.meta.normalisation), bundle
