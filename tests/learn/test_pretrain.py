"""Self-supervised pretraining (masked reconstruction) on the small synthetic scene."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import torch

from geomm.learn.config import TrainConfig, model_config_for
from geomm.learn.normalize import compute_norm_stats
from geomm.learn.pretrain import _blank, pretrained_state
from geomm.learn.train import fit_cnn
from geomm.model.network import LayerSpec, ModelConfig, MultiBranchNet

TINY = TrainConfig(patch_size=48, batch_size=4, steps_per_epoch=3, max_epochs=2,
                   block_size=600.0, n_folds=3, width=8, seed=3)


def _losses(lines: list[str]) -> list[float]:
    return [float(re.search(r"loss ([0-9.]+)", line).group(1)) for line in lines]


def test_blanking_is_on_whole_pixels_of_every_layer_and_never_blanks_every_modality():
    config = ModelConfig((LayerSpec("a/10m", "a", 2, 1), LayerSpec("b/60m", "b", 1, 6)), 3)
    inputs = {"a/10m": torch.ones(64, 2, 96, 96), "b/60m": torch.ones(64, 1, 16, 16)}
    out, counted = _blank(inputs, config, 12, 96, torch.Generator().manual_seed(0))
    a, b = out["a/10m"][:, 0] > 0, out["b/60m"][:, 0] > 0
    # a 12 px cell is 12 pixels of the 10 m layer and 2 of the 60 m one: blanked whole
    a_cells = a.reshape(64, 8, 12, 8, 12).float().mean((2, 4))
    b_cells = b.reshape(64, 8, 2, 8, 2).float().mean((2, 4))
    assert set(a_cells.unique().tolist()) == {0.0, 1.0}
    assert set(b_cells.unique().tolist()) == {0.0, 1.0}
    # where both modalities keep data, they keep the same cells
    both = a.flatten(1).any(1) & b.flatten(1).any(1)
    assert torch.equal(a_cells[both], b_cells[both])
    # some samples lose a whole modality, none loses both (64 cells are never all blanked)
    whole_a, whole_b = ~a.flatten(1).any(1), ~b.flatten(1).any(1)
    assert whole_a.any() and whole_b.any() and not (whole_a & whole_b).any()
    # the loss counts every blanked pixel: all of a sample that lost a modality, else the
    # blanked cells only
    assert (counted[:, 0][~a] == 1).all()
    assert (counted[whole_a | whole_b] == 1).all()
    assert torch.equal(counted[both, 0] == 1, ~a[both])


def test_pretraining_lowers_the_reconstruction_loss_and_is_deterministic(synth):
    _, store = synth
    config = model_config_for(store, TINY)
    stats = compute_norm_stats(store, np.ones(store.grid.shape, bool))
    lines: list[str] = []
    a = pretrained_state(store, config, stats, patch=48, steps=40, batch_size=4, seed=1,
                         echo=lines.append)
    losses = _losses(lines)
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], lines
    b = pretrained_state(store, config, stats, patch=48, steps=40, batch_size=4, seed=1)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the heads start fresh: the state has no classifier, and fits the supervised network
    assert not any(k.startswith(("classifier.", "spectral.")) for k in a)
    net = MultiBranchNet(config)
    missing, unexpected = net.load_state_dict(a, strict=False)
    assert not unexpected
    assert {k.split(".")[0] for k in missing} == {"classifier", "spectral"}


def test_train_starts_from_the_pretrained_weights(synth, monkeypatch):
    import geomm.learn.pretrain as pretrain

    _, store = synth
    seen: dict[str, dict[str, torch.Tensor]] = {}
    original = pretrain.pretrained_state

    def marked(*args, **kwargs):  # the real pretraining, with one tensor made recognisable
        state = original(*args, **kwargs)
        conv = next(k for k in state if k.startswith("branches.") and k.endswith("weight"))
        state[conv] = torch.full_like(state[conv], 0.0123)
        seen[conv] = state
        return state

    monkeypatch.setattr(pretrain, "pretrained_state", marked)
    cfg = replace(TINY, max_epochs=1, steps_per_epoch=1, lr=1e-9, pretrain_steps=4)
    res = fit_cnn(store, cfg, progress=False)
    (conv,) = seen
    # one step at a vanishing learning rate: the branch still has the pretrained weights
    assert torch.allclose(res.model.state_dict()[conv], torch.tensor(0.0123), atol=1e-6)
    plain = fit_cnn(store, replace(cfg, pretrain_steps=0), progress=False)
    assert not torch.allclose(plain.model.state_dict()[conv], torch.tensor(0.0123), atol=1e-3)
