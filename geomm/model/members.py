"""A mean of fusion networks: several members trained alike, their class probabilities averaged.

With few labels one network's map depends much on its random start and on the patches it
happened to draw; the mean of a few such networks is steadier and better (bench/quality.md).
:func:`build_network` builds what a :class:`~geomm.model.network.ModelConfig` describes: one
:class:`~geomm.model.network.MultiBranchNet`, or a :class:`MemberMean` of ``config.members``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

import torch
from torch import Tensor, nn

from geomm.model.network import ModelConfig, ModelInputError, MultiBranchNet

__all__ = ["MemberMean", "Network", "build_network"]


class MemberMean(nn.Module):
    """Networks of one architecture whose softmax probabilities are averaged.

    Its ``forward`` returns the log of the mean probabilities, so a softmax of its output
    (what the prediction engine and the calibration apply, after a temperature) gives them
    back. Members share the config, the lattice and the input checks of one network.

    Args:
        members: the trained networks (one config, ``members`` apart).
    """

    def __init__(self, members: Sequence[MultiBranchNet]) -> None:
        super().__init__()
        if not members:
            raise ModelInputError("a mean of networks needs at least one network")
        one = replace(members[0].config, members=1)
        for m in members:
            if replace(m.config, members=1) != one:
                raise ModelInputError("the networks of a mean must share one architecture")
        self.members = nn.ModuleList(members)
        self.config = replace(one, members=len(members))
        self.modalities = members[0].modalities

    @property
    def lattice(self) -> int:
        """The members' lattice (see :attr:`MultiBranchNet.lattice`)."""
        first: MultiBranchNet = self.members[0]  # type: ignore[assignment]
        return first.lattice

    def forward(self, inputs: Mapping[str, Tensor], missing: Collection[str] = (),
                valid: Mapping[str, Tensor] | None = None) -> Tensor:
        """Log of the members' mean class probabilities, in float32: (B, K, P, Q) or (B, K)."""
        logp = [m(inputs, missing, valid).float().log_softmax(dim=1) for m in self.members]
        return torch.logsumexp(torch.stack(logp), dim=0) - math.log(len(logp))


Network = MultiBranchNet | MemberMean
"""What a CNN bundle holds: one network or a mean of them (the same interface)."""


def build_network(config: ModelConfig, *, load_weights: bool = True) -> Network:
    """The network ``config`` describes: one, or the mean of ``config.members`` networks."""
    if config.members == 1:
        return MultiBranchNet(config, load_weights=load_weights)
    one = replace(config, members=1)
    return MemberMean([MultiBranchNet(one, load_weights=load_weights)
                       for _ in range(config.members)])
