"""One training variant on bench/quality.py's protocol, beside the defaults' rows:

    .venv/bin/python bench/variant.py NAME [--k all ...] [--folds 0 1 2] [--over JSON]
                                           [--model JSON] [--jitter] [--log] [--light-gate]

``--over`` overrides fields of ``TrainConfig`` (e.g. ``'{"width": 48}'``);
``--model`` overrides fields of ``ModelConfig`` that ``TrainConfig`` does not
set (e.g. ``'{"fusion_factor": 4}'``, :func:`model_over`); ``--jitter`` adds
a radiometric augmentation the package does not have: each training patch's reflectances
multiplied by exp(N(0, 0.1)) for the whole patch and exp(N(0, 0.03)) per band (illumination
and calibration differences between places of a scene); ``--log`` feeds the network log
reflectances, training and mapping alike (:func:`log_inputs`); ``--light-gate`` gives
attention fusion one gate weight per branch and pixel (:func:`light_gate`). Rows
(bench/quality.py's, with the variant's name) go to
``bench/out/quality-<recipe>-variants.jsonl`` (resumable; ``--recipe`` another recipe than
the sample's); compare them fold by fold with
``bench/results/quality-s2-landcover.jsonl`` (``bench/compare.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def jitter(common: float = 0.1, band: float = 0.03) -> None:
    """Patch the training dataset to jitter the reflectances of each augmented patch."""
    import torch

    from geomm.learn.dataset import StorePatchDataset

    plain = StorePatchDataset.__getitem__

    def getitem(self: StorePatchDataset, index: int) -> dict[str, torch.Tensor]:
        out = plain(self, index)
        if not self.augment:
            return out
        rng = np.random.default_rng([self.seed, self.epoch, index, 7])
        s = float(np.exp(rng.normal(0, common)))
        for key in self.keys:
            mean, inv = self._norm[key]
            g = (s * np.exp(rng.normal(0, band, mean.shape[0]))).astype(np.float32)[:, None, None]
            x = out[key].numpy()
            nodata = (x == 0).all(axis=0)
            y = x * g + mean * inv * (g - 1)  # (raw * g - mean) / std in normalised units
            y[:, nodata] = 0
            out[key] = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
        return out

    StorePatchDataset.__getitem__ = getitem  # type: ignore[method-assign]


def log_inputs(floor: float = 0.02) -> None:
    """Patch training and mapping to feed the network log reflectances: each band's
    ``(raw - mean) / std`` becomes ``log(raw / mean) * mean / std`` (the same scale near the
    mean, but band ratios become differences), raw floored at ``floor * mean``."""
    import torch

    from geomm.learn.dataset import StorePatchDataset
    from geomm.predict.engine import EngineLayer

    def logz(z: np.ndarray, mean: np.ndarray, inv: np.ndarray) -> np.ndarray:
        nodata = (z == 0).all(axis=0)
        raw = np.maximum(z / inv + mean, floor * mean)
        y = np.log(raw / mean) * mean * inv
        y[:, nodata] = 0
        return np.ascontiguousarray(y, dtype=np.float32)

    plain = StorePatchDataset.__getitem__

    def getitem(self: StorePatchDataset, index: int) -> dict[str, torch.Tensor]:
        out = plain(self, index)
        for key in self.keys:
            mean, inv = self._norm[key]
            out[key] = torch.from_numpy(logz(out[key].numpy(), mean, inv))
        return out

    prepare = EngineLayer.prepare

    def prep(self: EngineLayer, raw: np.ndarray) -> np.ndarray:
        x = prepare(self, raw)
        if self.physical:
            return x
        mean = np.asarray(self.shift, np.float32)[:, None, None]
        inv = 1 / np.asarray([s if s > 0 else 1.0 for s in self.scale], np.float32)[:, None, None]
        return logz(x, mean, inv)

    StorePatchDataset.__getitem__ = getitem  # type: ignore[method-assign]
    EngineLayer.prepare = prep  # type: ignore[method-assign]


def light_gate() -> None:
    """Patch attention fusion to gate with one weight per branch and pixel (a 1x1
    convolution from every branch's channels to one per branch, softmax over the branches)
    instead of one per branch, channel and pixel."""
    import torch
    from torch import nn

    from geomm.model.network import MultiBranchNet

    init, fuse = MultiBranchNet.__init__, MultiBranchNet._fuse

    def new_init(self: MultiBranchNet, config, **kw) -> None:  # type: ignore[no-untyped-def]
        init(self, config, **kw)
        if config.fusion == "attention":
            self.gate = nn.Conv2d(len(self.branches) * config.width, len(self.branches), 1)

    def new_fuse(self: MultiBranchNet, feats: list[torch.Tensor], mask: torch.Tensor
                 ) -> torch.Tensor:
        if self.config.fusion != "attention":
            return fuse(self, feats, mask)
        cat = torch.cat(feats, dim=1)
        b, _, h, w_ = cat.shape
        gate = self.gate(cat)  # (B, n, H, W)
        present = torch.stack([mask[:, mi] if mi >= 0 else mask.amax(dim=1)
                               for mi in self._mod_of], dim=1)
        gate = gate.masked_fill(present[:, :, None, None] == 0, float("-inf"))
        weight = torch.softmax(gate, dim=1)[:, :, None]
        return self.fuse((cat.reshape(b, len(feats), -1, h, w_) * weight).sum(dim=1))

    MultiBranchNet.__init__ = new_init  # type: ignore[method-assign]
    MultiBranchNet._fuse = new_fuse  # type: ignore[method-assign]


def model_over(over: dict[str, object]) -> None:
    """Patch every :class:`~geomm.model.network.ModelConfig` built from here on (training,
    the bundle read back for mapping) to take ``over``'s fields, e.g. ``fusion_factor``, a
    field that ``TrainConfig`` does not set."""
    from geomm.model.network import ModelConfig

    post = ModelConfig.__post_init__

    def new_post(self: ModelConfig) -> None:
        for key, value in over.items():
            object.__setattr__(self, key, value)
        post(self)

    ModelConfig.__post_init__ = new_post  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    import quality

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name")
    ap.add_argument("--k", nargs="+", default=["all"])
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--over", default="{}", help="TrainConfig overrides, as JSON")
    ap.add_argument("--jitter", action="store_true")
    ap.add_argument("--log", action="store_true", help="log reflectances (log_inputs)")
    ap.add_argument("--light-gate", action="store_true",
                    help="attention fusion with one gate weight per branch (light_gate)")
    ap.add_argument("--model", default="{}",
                    help="ModelConfig overrides, as JSON (model_over), e.g. fusion_factor")
    ap.add_argument("--recipe", default="s2-landcover", help="a bundled recipe or a file")
    args = ap.parse_args(argv)
    if args.jitter:
        jitter()
    if args.log:
        log_inputs()
    if args.light_gate:
        light_gate()
    model = json.loads(args.model)
    if model:
        model_over(model)
    quality.OUT.mkdir(exist_ok=True)
    log = quality.OUT / f"quality-{Path(args.recipe).stem}-variants.jsonl"
    quality._run(args.recipe, args.k, args.folds, log, None, json.loads(args.over),
                 args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
