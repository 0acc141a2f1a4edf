"""A mean of fusion networks: its output, its config, and what it refuses."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from geomm.errors import RecipeError
from geomm.model.members import MemberMean, build_network
from geomm.model.network import LayerSpec, ModelConfig, ModelInputError, MultiBranchNet

LAYERS = (LayerSpec("visible/10m", "visible", 3, 1), LayerSpec("infrared/20m", "infrared", 2, 2))
CONFIG = ModelConfig(LAYERS, 4, width=8, spectral=8)


def _inputs(batch: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"visible/10m": torch.randn(batch, 3, 24, 24, generator=g),
            "infrared/20m": torch.randn(batch, 2, 12, 12, generator=g)}


def test_the_mean_gives_back_the_members_mean_probabilities():
    torch.manual_seed(0)
    nets = [MultiBranchNet(CONFIG).eval() for _ in range(3)]
    mean = MemberMean(nets).eval()
    x = _inputs()
    with torch.no_grad():
        want = torch.stack([n(x).softmax(1) for n in nets]).mean(0)
        got = mean(x).softmax(1)
        # a modality left out reaches every member
        want_without = torch.stack([n(x, missing={"infrared"}).softmax(1) for n in nets]).mean(0)
        got_without = mean(x, missing={"infrared"}).softmax(1)
    assert got.shape == (2, 4, 24, 24)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got_without, want_without, atol=1e-6)
    assert not torch.allclose(got, nets[0](x).softmax(1), atol=1e-3)  # members differ
    assert mean.config.members == 3 and mean.lattice == nets[0].lattice


def test_build_network_follows_the_config_and_the_state_round_trips():
    assert isinstance(build_network(CONFIG), MultiBranchNet)
    torch.manual_seed(1)
    two = build_network(replace(CONFIG, members=2))
    assert isinstance(two, MemberMean) and len(two.members) == 2
    again = build_network(ModelConfig.from_dict(two.config.to_dict()))
    again.load_state_dict(two.state_dict())  # strict: the same keys and shapes
    x = _inputs(1)
    with torch.no_grad():
        assert torch.equal(two.eval()(x), again.eval()(x))
    # a config written before members existed reads as one network
    old = CONFIG.to_dict()
    del old["members"]
    assert ModelConfig.from_dict(old).members == 1


def test_bad_member_configs_are_refused():
    with pytest.raises(RecipeError, match="members"):
        ModelConfig(LAYERS, 4, members=0)
    with pytest.raises(RecipeError, match="multi-label"):
        ModelConfig(LAYERS, 4, head="classification", multilabel=True, members=2)
    with pytest.raises(ModelInputError, match="build_network"):
        MultiBranchNet(replace(CONFIG, members=2))
    with pytest.raises(ModelInputError, match="one architecture"):
        MemberMean([MultiBranchNet(CONFIG), MultiBranchNet(replace(CONFIG, width=16))])
    with pytest.raises(ModelInputError, match="at least one"):
        MemberMean([])
