"""Test-time flips: a network's logits averaged over mirrored copies of its input.

Every layer of a patch is flipped along the same axes (a tile side is a multiple of every
layer's factor, so a coarse pixel lands exactly on the coarse pixel that covers the mirrored
base pixels), the network runs on each copy, each output is flipped back, and the logits are
averaged. The prediction no longer depends on which way the network happens to be biased
along a direction, at the cost of one forward pass per copy.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch
from torch import Tensor, nn

__all__ = ["FLIP_SETS", "FlipAverage"]

FLIP_SETS: dict[int, tuple[tuple[int, ...], ...]] = {
    1: ((),),
    2: ((), (-1,)),
    4: ((), (-1,), (-2,), (-2, -1)),
}
"""Number of copies -> the axes flipped in each copy (none, columns, rows, both)."""


class FlipAverage(nn.Module):
    """Wrap a :class:`~geomm.model.network.MultiBranchNet` so that its forward pass averages the
    logits of ``n`` flipped copies (1, 2 or 4) of the input; the rest of its interface
    (``config``, ``lattice``) is the wrapped network's."""

    def __init__(self, model: nn.Module, n: int = 4) -> None:
        super().__init__()
        if n not in FLIP_SETS:
            raise ValueError(f"test-time flips: {n} is not one of {sorted(FLIP_SETS)}")
        self.model, self.flips = model, FLIP_SETS[n]

    @property
    def config(self):  # type: ignore[no-untyped-def]
        return self.model.config

    @property
    def lattice(self) -> int:
        return int(self.model.lattice)

    def forward(self, inputs: Mapping[str, Tensor], missing: Collection[str] = (),
                valid: Mapping[str, Tensor] | None = None) -> Tensor:
        total: Tensor | None = None
        for dims in self.flips:
            def flip(x: Tensor, dims: tuple[int, ...] = dims) -> Tensor:
                return torch.flip(x, dims) if dims else x

            out = self.model({k: flip(v) for k, v in inputs.items()}, missing=missing,
                             valid={k: flip(v) for k, v in valid.items()} if valid else None)
            out = flip(out)
            total = out if total is None else total + out
        assert total is not None
        return total / len(self.flips)
