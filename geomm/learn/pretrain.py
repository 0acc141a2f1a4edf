"""Self-supervised pretraining of the fusion network on the scene's own pixels (no labels).

Masked reconstruction: patches are drawn from the whole scene (labelled or not, every block:
no label is read); in each, about half of the cells of the layers' common lattice are blanked
in every layer and, with some probability, a whole modality is blanked too. The network, with
its classifier swapped for a per-band regression head, rebuilds every band on the base grid,
and the loss counts the blanked pixels only: to fill them it must learn what the neighbouring
pixels and the other modalities say about a pixel. The branches, the fusion trunk and the
decoder then start the supervised training from these weights (:func:`pretrained_state`);
the classifier and the per-pixel spectral pathway start fresh.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from geomm.learn.dataset import PatchSampler, StorePatchDataset
from geomm.model.network import ModelConfig, MultiBranchNet
from geomm.model.normstats import NormStats
from geomm.stack.store import TileStore

__all__ = ["MASK_RATIO", "MODALITY_BLANK", "pretrained_state"]

MASK_RATIO = 0.5
"""Share of the lattice cells blanked in every layer of a patch."""
MODALITY_BLANK = 0.25
"""Probability that a whole modality of a patch is blanked as well (never every one)."""
_FRESH = ("classifier.", "spectral.")
"""Parameters the supervised training starts afresh (the heads)."""


def _blank(inputs: dict[str, Tensor], config: ModelConfig, cell: int, base: int,
           gen: torch.Generator) -> tuple[dict[str, Tensor], Tensor]:
    """Blank random lattice cells of every layer, and some whole modalities; return the
    blanked inputs and the (B, 1, P, P) base-grid mask of what the loss counts."""
    ref = next(iter(inputs.values()))
    batch, n = ref.shape[0], base // cell
    keep = (torch.rand(batch, 1, n, n, generator=gen) >= MASK_RATIO).float()
    mods = config.modalities
    drop = torch.rand(batch, len(mods), generator=gen) < MODALITY_BLANK
    if len(mods) > 1:  # a sample never loses every modality
        drop &= ~drop.all(dim=1, keepdim=True)
    else:
        drop[:] = False
    out = {}
    for layer in config.layers:
        side = base // layer.factor
        k = F.interpolate(keep, size=(side, side), mode="nearest")
        k = k * (~drop[:, mods.index(layer.modality), None, None, None]).float()
        out[layer.key] = inputs[layer.key] * k
    counted = 1.0 - F.interpolate(keep, size=(base, base), mode="nearest")
    any_drop = drop.any(dim=1).float()[:, None, None, None]
    return out, torch.maximum(counted, any_drop)


def pretrained_state(store: TileStore, config: ModelConfig, stats: NormStats, *,
                     patch: int, steps: int, batch_size: int = 16, lr: float = 3e-3,
                     weight_decay: float = 1e-4, seed: int = 0,
                     echo: Callable[[str], object] | None = None) -> dict[str, Tensor]:
    """Pretrain the network ``config`` describes by masked reconstruction on every pixel of
    ``store`` (normalised with ``stats``); return the weights the supervised network starts
    from (every parameter but the heads', see :data:`_FRESH`).

    Runs on the CPU, deterministically for a given ``seed``.
    """
    t0 = time.perf_counter()
    n_bands = sum(layer.channels for layer in config.layers)
    pcfg = replace(config, head="segmentation", multilabel=False, num_classes=n_bands,
                   spectral=0, spatial_dropout=0.0, modality_dropout=0.0)
    torch.manual_seed(seed)
    net = MultiBranchNet(pcfg).to(memory_format=torch.channels_last).train()
    h, w = store.grid.shape
    everywhere = np.ones((h, w), bool)
    sampler = PatchSampler(store, everywhere, patch, min_labelled=0)
    origins = sampler.random(steps * batch_size, seed=seed, epoch=10_000)
    ds = StorePatchDataset(store, origins, patch, stats, ~everywhere, augment=True, seed=seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(2, steps),
                                                pct_start=0.1, anneal_strategy="cos")
    gen = torch.Generator().manual_seed(seed)
    cell = math.lcm(4, *(layer.factor for layer in config.layers))
    keys = [layer.key for layer in config.layers]
    avail = torch.ones(batch_size, len(pcfg.modalities))
    total, every = 0.0, max(1, steps // 4)
    for i, batch in enumerate(DataLoader(ds, batch_size=batch_size, drop_last=True)):
        inputs = {k: batch[k] for k in keys}
        with torch.no_grad():
            target = torch.cat(net._on_base(inputs, avail, (), (patch, patch)), dim=1)
        blanked, counted = _blank(inputs, pcfg, cell, patch, gen)
        pred = net({k: v.contiguous(memory_format=torch.channels_last)
                    for k, v in blanked.items()})
        weight = counted * batch["valid"][:, None].float()
        err = ((pred - target) ** 2).mean(dim=1, keepdim=True)
        loss = (err * weight).sum() / weight.sum().clamp_min(1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total += float(loss.detach())
        if (i + 1) % every == 0:
            if echo is not None:  # the mean over the steps since the last line
                echo(f"pretraining: step {i + 1}/{steps}, reconstruction loss "
                     f"{total / every:.3f} ({time.perf_counter() - t0:.0f} s)")
            total = 0.0
    net = net.to(memory_format=torch.contiguous_format)
    return {k: v.detach().clone() for k, v in net.state_dict().items()
            if not k.startswith(_FRESH)}
