"""Multi-branch fusion CNN: one encoder per layer at its native resolution, fused on one grid.

A *layer* is one modality at one resolution factor (``multispectral/60m``: 2 bands, 6× coarser
than the base grid). Each layer gets its own encoder; strided convolutions bring fine layers
down to the fusion grid (``fusion_factor`` base pixels) and coarse ones are upsampled onto it.
The fused features go through a dilated context stage one stride further and, for
segmentation, a light decoder back to per-pixel logits on the base grid. Pure torch: tensors
in, tensors out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geomm.errors import GeommError, RecipeError
from geomm.model.branches import LightBranch, ResBlock, ResNetBranch, conv_bn_relu, resize

__all__ = ["LayerSpec", "ModelConfig", "ModelInputError", "MultiBranchNet"]

Head = Literal["segmentation", "classification"]
Fusion = Literal["concat", "weighted", "attention", "early"]
HEADS: tuple[str, ...] = Head.__args__  # type: ignore[attr-defined]
FUSIONS: tuple[str, ...] = Fusion.__args__  # type: ignore[attr-defined]
EARLY_KEY = "early"
_RESNET = re.compile(r"^resnet\d+$")


class ModelInputError(GeommError, ValueError):
    """The tensors given to the model do not match its layers (absent, channels, size)."""


@dataclass(frozen=True)
class LayerSpec:
    """One modality at one resolution factor: one encoder branch."""

    key: str
    """Layer name, e.g. ``"multispectral/60m"``; the key of its tensor in the inputs."""
    modality: str
    """Modality the layer belongs to (dropped or missing as a whole)."""
    channels: int
    """Band count of the layer."""
    factor: int
    """Pixel size in base pixels (1 = base grid, 6 = 60 m on a 10 m grid)."""
    bands: tuple[str, ...] = ()
    """Band names, optional; used to pick matching channels of pretrained weights."""

    def __post_init__(self) -> None:
        if self.channels < 1 or self.factor < 1:
            raise RecipeError(f"layer {self.key!r}: channels ({self.channels}) and factor "
                              f"({self.factor}) must be positive integers")
        if self.bands and len(self.bands) != self.channels:
            raise RecipeError(f"layer {self.key!r}: {len(self.bands)} band names for "
                              f"{self.channels} channels")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a :class:`MultiBranchNet` (JSON-serialisable)."""

    layers: tuple[LayerSpec, ...]
    """The input layers, one encoder branch each (in this order)."""
    num_classes: int
    """Number of output classes K."""
    head: Head = "segmentation"
    """``segmentation``: (B, K, P, P) logits on the base grid; ``classification``: (B, K)."""
    multilabel: bool = False
    """Classification with independent labels (the caller applies a sigmoid)."""
    fusion: Fusion = "concat"
    """How branch features are combined; ``early`` stacks all bands into one branch."""
    backbone: str = "light"
    """Branch encoder: ``light`` (small CNN) or a timm ResNet name (``resnet18``, ...)."""
    width: int = 32
    """Channels of each branch's output; the fused trunk has twice as many."""
    fusion_factor: int = 2
    """Fusion grid stride in base pixels; the context stage works at twice this stride."""
    modality_dropout: float = 0.0
    """Training only: probability of dropping each modality of each sample (never all)."""
    spectral: int = 0
    """Hidden width of the per-pixel spectral pathway (segmentation only; 0: none): every
    band of every layer, brought to the base grid, through 1x1 convolutions to class logits
    that are added to the spatial logits, so the network holds a per-pixel classifier."""
    spatial_dropout: float = 0.0
    """Training only, with ``spectral``: probability of leaving a sample's spatial logits out,
    so the spectral pathway must classify alone."""
    weights: dict[str, str] = field(default_factory=dict, hash=False)
    """Pretrained weights for ResNet branches: layer key or modality -> torchgeo name or file."""
    members: int = 1
    """Networks of this architecture whose class probabilities are averaged
    (:func:`geomm.model.members.build_network`); 1: a single network."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise RecipeError("model: `layers` is empty; give at least one input layer")
        keys = [layer.key for layer in self.layers]
        if len(set(keys)) != len(keys):
            raise RecipeError(f"model: layer keys must be unique, got {keys}")
        for name, value, allowed in (("head", self.head, HEADS), ("fusion", self.fusion, FUSIONS)):
            if value not in allowed:
                raise RecipeError(f"model.{name}: {value!r} is not one of {', '.join(allowed)}")
        if self.backbone != "light" and not _RESNET.match(self.backbone):
            raise RecipeError(f"model.backbone: {self.backbone!r} is not supported; use 'light' "
                              "or a ResNet name such as 'resnet18', 'resnet34', 'resnet50'")
        for name in ("num_classes", "width", "fusion_factor"):
            if int(getattr(self, name)) < 1:
                raise RecipeError(f"model.{name}: {getattr(self, name)} must be >= 1")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise RecipeError(f"model.modality_dropout: {self.modality_dropout} must be in [0, 1)")
        if int(self.members) < 1 or (self.members > 1 and self.multilabel):
            raise RecipeError(f"model.members: {self.members} must be >= 1, and 1 with "
                              "multi-label scene classification")
        if int(self.spectral) < 0 or not 0.0 <= self.spatial_dropout < 1.0:
            raise RecipeError(f"model.spectral ({self.spectral}) must be >= 0 and "
                              f"model.spatial_dropout ({self.spatial_dropout}) in [0, 1)")
        known = {*keys, *self.modalities, *([EARLY_KEY] if self.fusion == "early" else [])}
        for key in self.weights:
            if key not in known:
                raise RecipeError(f"model.weights: {key!r} is neither a layer nor a modality; "
                                  f"use one of {', '.join(sorted(known))}")
        if self.weights and self.backbone == "light":
            raise RecipeError("model.weights: pretrained weights need a ResNet backbone, "
                              "not 'light'; set model.backbone to e.g. 'resnet18'")

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality names in the order their first layer appears."""
        return tuple(dict.fromkeys(layer.modality for layer in self.layers))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (``from_dict`` rebuilds the same config)."""
        out = asdict(self)
        out["layers"] = [dict(layer, bands=list(layer["bands"])) for layer in out["layers"]]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build a config from :meth:`to_dict` output (e.g. read back from JSON).

        Raises:
            RecipeError: On an unknown or missing key, or an invalid value.
        """
        allowed = {f.name for f in fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise RecipeError(f"model config: unknown key(s) {sorted(unknown)}; "
                              f"allowed: {sorted(allowed)}")
        try:
            layers = tuple(LayerSpec(**dict(layer, bands=tuple(layer.get("bands", ()))))
                           for layer in data["layers"])
            return cls(**{**data, "layers": layers, "weights": dict(data.get("weights", {}))})
        except (KeyError, TypeError) as exc:
            raise RecipeError(f"model config: missing or malformed entry ({exc})") from exc


class MultiBranchNet(nn.Module):
    """Fuse co-registered layers, each encoded at its native resolution, into class logits.

    Args:
        config: Architecture description (see :class:`ModelConfig`).
        load_weights: Load ``config.weights`` into ResNet branches (turn off when the whole
            model's weights are about to be loaded from a bundle).
    """

    def __init__(self, config: ModelConfig, *, load_weights: bool = True) -> None:
        super().__init__()
        if config.members != 1:
            raise ModelInputError(f"a config of {config.members} members describes a mean of "
                                  "networks: build it with geomm.model.members.build_network")
        self.config = config
        self.modalities = config.modalities
        w, cf = config.width, 2 * config.width
        ff = config.fusion_factor
        if config.fusion == "early":
            specs = [LayerSpec(EARLY_KEY, EARLY_KEY, sum(la.channels for la in config.layers), 1,
                               tuple(b for la in config.layers for b in la.bands)
                               if all(la.bands for la in config.layers) else ())]
        else:
            specs = list(config.layers)
        self.branches = nn.ModuleDict()
        self._skip_ch: list[int] = []
        for spec in specs:
            stride = max(1, ff // spec.factor)
            if config.backbone == "light":
                branch: LightBranch | ResNetBranch = LightBranch(spec.channels, w, stride)
            else:
                branch = ResNetBranch(config.backbone, spec.channels, w, stride)
                source = config.weights.get(spec.key) or config.weights.get(spec.modality)
                if source and load_weights:
                    from geomm.model.weights import load_branch_weights

                    load_branch_weights(branch.backbone, source, in_chans=spec.channels,
                                        bands=spec.bands or None)
            self.branches[spec.key.replace(".", "_")] = branch
            self._skip_ch.append(branch.skip_channels)
        n_skip = sum(c for c, s in zip(self._skip_ch, specs, strict=True) if s.factor == 1)
        half = max(1, w // 2)
        seg = config.head == "segmentation"
        self.skip_proj = conv_bn_relu(n_skip, half, k=1) if n_skip and seg else None
        n = len(specs)
        if config.fusion == "weighted":
            self.mod_proj = nn.ModuleList(
                nn.Conv2d(w * sum(la.modality == m for la in specs), w, 1) for m in self.modalities)
            self.mod_logits = nn.Parameter(torch.zeros(len(self.modalities)))
            self.fuse = conv_bn_relu(w, cf, k=1)
        elif config.fusion == "attention":
            self.gate = nn.Conv2d(n * w, n * w, 1)
            self.fuse = conv_bn_relu(w, cf, k=1)
        else:
            self.fuse = conv_bn_relu(n * w, cf, k=1)
        self.context = nn.Sequential(conv_bn_relu(cf, cf, stride=2), ResBlock(cf, 2),
                                     ResBlock(cf, 4))
        self.refine = conv_bn_relu(cf, cf)
        self.classifier: nn.Module
        if seg:
            self.squeeze = conv_bn_relu(cf, half, k=1)
            self.decode = conv_bn_relu(half * (2 if self.skip_proj is not None else 1), half)
            self.classifier = nn.Conv2d(half, config.num_classes, 1)
        else:
            self.classifier = nn.Linear(cf, config.num_classes)
        self.spectral: nn.Module | None = None
        if seg and config.spectral:
            n_bands, hid = sum(la.channels for la in config.layers), int(config.spectral)
            self.spectral = nn.Sequential(
                nn.Conv2d(n_bands, hid, 1), nn.BatchNorm2d(hid), nn.ReLU(inplace=True),
                nn.Conv2d(hid, hid, 1), nn.BatchNorm2d(hid), nn.ReLU(inplace=True),
                nn.Conv2d(hid, config.num_classes, 1))
        self._mod_of = [self.modalities.index(s.modality) if s.key != EARLY_KEY else -1
                        for s in specs]

    @property
    def lattice(self) -> int:
        """Base-pixel step that a patch may be shifted by without changing the prediction of
        the pixels it shares with the unshifted patch (away from the edges): every layer's
        factor and the coarsest internal grid (the context path, twice the fusion factor)."""
        return math.lcm(*(la.factor for la in self.config.layers),
                        2 * self.config.fusion_factor)

    def modality_mask(self, batch: int, *, missing: Collection[str] = (),
                      device: torch.device | None = None) -> Tensor:
        """Return which modalities each sample keeps, ``(batch, M)`` of 0/1 floats.

        Missing modalities are 0. In training mode each available modality is also dropped
        with probability ``modality_dropout``, but never all of a sample's modalities.
        """
        avail = torch.tensor([m not in missing for m in self.modalities], device=device)
        mask = avail.expand(batch, -1).clone()
        p = self.config.modality_dropout
        if self.training and p > 0:
            mask &= torch.rand(mask.shape, device=device) >= p
            # branch-free rescue (compile-friendly): a sample that lost everything keeps one
            choice = torch.multinomial(avail.float().expand(batch, -1), 1)
            rescue = torch.zeros_like(mask).scatter_(1, choice, True)
            mask |= rescue & ~mask.any(dim=1, keepdim=True)
        return mask.float()

    def _check(self, inputs: Mapping[str, Tensor], missing: Collection[str]
               ) -> tuple[Tensor, tuple[int, int]]:
        """Validate inputs; return one present input tensor and the base size (P, Q)."""
        unknown = set(missing) - set(self.modalities)
        if unknown:
            raise ModelInputError(f"missing modality {sorted(unknown)} is not one of the "
                                  f"model's modalities {list(self.modalities)}")
        if set(self.modalities) <= set(missing):
            raise ModelInputError("every modality is listed as missing; keep at least one")
        ref: tuple[str, int, tuple[int, int]] | None = None
        for layer in self.config.layers:
            if layer.modality in missing:
                continue
            x = inputs.get(layer.key)
            if x is None:
                raise ModelInputError(f"input layer {layer.key!r} is absent; pass it, or list "
                                      f"{layer.modality!r} in `missing`")
            if x.ndim != 4 or x.shape[1] != layer.channels:
                raise ModelInputError(f"input layer {layer.key!r} has shape {tuple(x.shape)}; "
                                      f"expected (B, {layer.channels}, H, W)")
            base = (x.shape[2] * layer.factor, x.shape[3] * layer.factor)
            if ref is None:
                ref = (layer.key, x.shape[0], base)
            elif (x.shape[0], base) != ref[1:]:
                raise ModelInputError(
                    f"input layer {layer.key!r} is {x.shape[0]}x{x.shape[2]}x{x.shape[3]} at "
                    f"factor {layer.factor} (batch {x.shape[0]}, {base[0]}x{base[1]} base px) but "
                    f"{ref[0]!r} implies batch {ref[1]}, {ref[2][0]}x{ref[2][1]} base px")
        if ref is None:  # unreachable: at least one modality is present (checked above)
            raise ModelInputError("no input layer given")
        ff = self.config.fusion_factor
        if ref[2][0] % ff or ref[2][1] % ff:
            raise ModelInputError(f"patch of {ref[2][0]}x{ref[2][1]} base px is not a multiple "
                                  f"of the fusion factor {ff}")
        return inputs[ref[0]], ref[2]

    def forward(self, inputs: Mapping[str, Tensor], missing: Collection[str] = (),
                valid: Mapping[str, Tensor] | None = None) -> Tensor:
        """Compute class logits from a dict of layer tensors (spatial + spectral pathways).

        Args:
            inputs: ``layer.key -> (B, channels, P/factor, Q/factor)`` float tensors. Layers of
                missing modalities may be left out.
            missing: Modality names absent at inference; their features are zeroed.
            valid: Per-pixel data masks of modalities, ``modality -> (B, 1, P, Q)`` on the base
                grid (1 where it has data): a modality's features are zeroed where it has none
                (a band with a smaller footprint), as ``missing`` does for whole samples.

        Returns:
            ``(B, K, P, Q)`` logits (segmentation) or ``(B, K)`` logits (classification).

        Raises:
            ModelInputError: A needed layer is absent or has the wrong channels or size.
        """
        return self.combine(*self.forward_parts(inputs, missing, valid))

    def combine(self, spatial: Tensor, spectral: Tensor | None) -> Tensor:
        """Sum the two pathways' logits (in training, a sample's spatial logits are left out
        with probability ``spatial_dropout``)."""
        if spectral is None:
            return spatial
        p = self.config.spatial_dropout
        if self.training and p > 0:
            keep = (torch.rand(spatial.shape[0], 1, 1, 1, device=spatial.device) >= p)
            spatial = spatial * keep.to(spatial.dtype)
        return spatial + spectral

    def forward_parts(self, inputs: Mapping[str, Tensor], missing: Collection[str] = (),
                      valid: Mapping[str, Tensor] | None = None
                      ) -> tuple[Tensor, Tensor | None]:
        """Logits of the spatial pathway and of the per-pixel spectral one (None without it)."""
        missing = set(missing)
        ref, base = self._check(inputs, missing)
        batch, device, dtype = ref.shape[0], ref.device, ref.dtype
        mask = self.modality_mask(batch, missing=missing, device=device)
        fgrid = (base[0] // self.config.fusion_factor, base[1] // self.config.fusion_factor)
        pix = {m: v.to(dtype) for m, v in (valid or {}).items() if m not in missing}
        # a fusion cell counts as having data only where every base pixel in it has
        cell = {m: -F.adaptive_max_pool2d(-v, fgrid) for m, v in pix.items()}
        early = self.config.fusion == "early"
        # every band on the base grid: the spectral pathway's and early fusion's one input
        on_base = (torch.cat(self._on_base(inputs, mask, missing, base, pix), dim=1)
                   if early or self.spectral is not None else None)
        spectral = self.spectral(on_base) if self.spectral is not None else None
        feats, skips = [], []
        if early:
            feat, skip = self.branches[EARLY_KEY](on_base)
            feats, skips = [resize(feat, fgrid)], [resize(skip, base)]
        else:
            for layer, branch, mi, n_skip in zip(self.config.layers, self.branches.values(),
                                                 self._mod_of, self._skip_ch, strict=True):
                m = mask[:, mi, None, None, None].to(dtype)
                use_skip = layer.factor == 1 and self.skip_proj is not None
                if layer.modality in missing:
                    feat = ref.new_zeros(batch, self.config.width, *fgrid)
                    skip = ref.new_zeros(batch, n_skip, *base)
                else:
                    feat, skip = branch(inputs[layer.key])
                    feat = resize(feat, fgrid) * m
                    skip = resize(skip, base) * m if use_skip else skip
                    if layer.modality in pix:
                        feat = feat * cell[layer.modality]
                        skip = skip * pix[layer.modality] if use_skip else skip
                feats.append(feat)
                if use_skip:
                    skips.append(skip)
        fused = self._fuse(feats, mask)
        ctx = resize(self.context(fused), fgrid)
        x = self.refine(fused + ctx)
        if self.config.head == "classification":
            return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)), None
        x = F.interpolate(self.squeeze(x), size=base, mode="bilinear", align_corners=False)
        if self.skip_proj is not None:
            x = torch.cat([x, self.skip_proj(torch.cat(skips, dim=1))], dim=1)
        return self.classifier(self.decode(x)), spectral

    def _on_base(self, inputs: Mapping[str, Tensor], mask: Tensor, missing: Collection[str],
                 base: tuple[int, int], pix: Mapping[str, Tensor] | None = None
                 ) -> list[Tensor]:
        """Every layer on the base grid (bilinear), zero where its modality is dropped, missing
        or (``pix``) has no data."""
        ref = next(inputs[la.key] for la in self.config.layers if la.modality not in missing)
        out = []
        for layer in self.config.layers:
            if layer.modality in missing:
                out.append(ref.new_zeros(ref.shape[0], layer.channels, *base))
                continue
            m = mask[:, self.modalities.index(layer.modality), None, None, None]
            x = inputs[layer.key]
            up = x if layer.factor == 1 else F.interpolate(
                x, size=base, mode="bilinear", align_corners=False)
            up = up * m.to(ref.dtype)
            if pix and layer.modality in pix:
                up = up * pix[layer.modality]
            out.append(up)
        return out

    def _fuse(self, feats: list[Tensor], mask: Tensor) -> Tensor:
        """Combine the aligned branch features on the fusion grid."""
        fusion = self.config.fusion
        if fusion == "weighted":
            per_mod = [proj(torch.cat([f for f, mi in zip(feats, self._mod_of, strict=True)
                                       if mi == k], dim=1))
                       for k, proj in enumerate(self.mod_proj)]
            logits = self.mod_logits.expand_as(mask).masked_fill(mask == 0, float("-inf"))
            weight = torch.softmax(logits, dim=1)[:, :, None, None, None]
            return self.fuse((torch.stack(per_mod, dim=1) * weight).sum(dim=1))
        cat = torch.cat(feats, dim=1)
        if fusion == "attention":
            b, _, h, w_ = cat.shape
            n = len(feats)
            gate = self.gate(cat).reshape(b, n, -1, h, w_)
            present = torch.stack([mask[:, mi] if mi >= 0 else mask.amax(dim=1)
                                   for mi in self._mod_of], dim=1)
            gate = gate.masked_fill(present[:, :, None, None, None] == 0, float("-inf"))
            weight = torch.softmax(gate, dim=1)
            return self.fuse((cat.reshape(b, n, -1, h, w_) * weight).sum(dim=1))
        return self.fuse(cat)
