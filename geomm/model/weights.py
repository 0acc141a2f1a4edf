"""Load pretrained weights into a branch encoder: torchgeo weight enums or local tensor files.

Only plain tensors are read: ``.safetensors`` through safetensors, ``.pt``/``.pth``/``.ckpt``
through ``torch.load(weights_only=True)``, which refuses any pickled object that is not a
tensor or a container of tensors, so no code in a weights file ever runs. Keys are matched by
name (ignoring ``module.``/``model.``/``backbone.``/``encoder.`` prefixes) and shape; a first
convolution whose input band count differs is adapted when that is meaningful (matching band
names, or RGB/single-band weights) and refused otherwise.
"""

from __future__ import annotations

import math
import pickle
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from geomm.errors import GeommError, GeommWarning

__all__ = [
    "PretrainedWeightsWarning",
    "WeightsError",
    "WeightsUnavailableError",
    "adapt_first_conv",
    "load_branch_weights",
]

_FILE_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin")
_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "net.")


class WeightsError(GeommError, ValueError):
    """A weights file or name is invalid, or its tensors do not fit the branch."""


class WeightsUnavailableError(GeommError, OSError):
    """Pretrained weights could not be fetched (no network); pass a local file instead."""


class PretrainedWeightsWarning(GeommWarning):
    """Pretrained weights were not (fully) loaded; part of a branch stays randomly initialised."""


def _strip(key: str) -> str:
    """Drop wrapper prefixes so ``backbone.conv1.weight`` matches ``conv1.weight``."""
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def _norm_band(name: str) -> str:
    """Normalise a band name so ``B08``, ``b8`` and ``B8`` compare equal (``B8A`` stays)."""
    name = name.strip().upper()
    if len(name) > 1 and name[0] == "B" and name[1:].rstrip("A").isdigit():
        digits = name[1:].rstrip("A")
        return "B" + str(int(digits)) + name[1 + len(digits):]
    return name


def _tensors_only(obj: Any, source: str) -> dict[str, Tensor]:
    """Pull the flat ``name -> tensor`` mapping out of a loaded checkpoint."""
    if isinstance(obj, Mapping):
        for nested in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(nested), Mapping):
                obj = obj[nested]
                break
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
        if tensors:
            return tensors
    raise WeightsError(f"{source}: holds no tensors keyed by name (expected a state_dict)")


def _read_file(path: Path) -> dict[str, Tensor]:
    """Read a local weights file without running any code from it."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{path}: refused to load; it contains pickled objects other than tensors, which "
            "could run code. Re-save it as a plain state_dict, or as .safetensors") from exc
    except (RuntimeError, OSError, EOFError) as exc:
        raise WeightsError(f"{path}: not a readable torch weights file ({exc})") from exc
    return _tensors_only(obj, str(path))


def _read_enum(name: str) -> tuple[dict[str, Tensor], list[str] | None]:
    """Fetch a torchgeo weight enum's state dict, and the band names it was trained on."""
    from torchgeo.models import get_weight

    try:
        weights = get_weight(name)
    except ValueError as exc:
        raise WeightsError(
            f"{name!r} is neither a weights file nor a torchgeo weight name (e.g. "
            "'ResNet18_Weights.SENTINEL2_ALL_MOCO'; see torchgeo.models.list_models())") from exc
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as exc:  # noqa: BLE001 -- any failure to fetch means "not available here"
        raise WeightsUnavailableError(
            f"could not download pretrained weights {name} from {weights.url} ({exc}). "
            "Download that file on a machine with internet access and pass its local path "
            "instead of the name (e.g. weights: {visible: /path/to/file.pth})") from exc
    bands = weights.meta.get("bands")
    return _tensors_only(state, name), list(bands) if bands else None


def adapt_first_conv(weight: Tensor, in_chans: int, *, source_bands: Sequence[str] | None = None,
                     bands: Sequence[str] | None = None) -> Tensor:
    """Adapt a first-convolution weight ``(O, C, k, k)`` to ``in_chans`` input bands.

    In order of preference: pick the channels whose band names match (when both band lists
    are known and every branch band is among the source bands); sum to one band when the
    branch has one; repeat a one-band or RGB weight cyclically. The result is scaled by
    ``C / in_chans`` so the first layer's response keeps about the same magnitude (as timm's
    ``adapt_input_conv``).

    Args:
        weight: Pretrained first-conv weight.
        in_chans: Band count of the branch.
        source_bands: Band names the weights were trained on, if known.
        bands: Band names of the branch, if known.

    Returns:
        A weight of shape ``(O, in_chans, k, k)``.

    Raises:
        WeightsError: When the band counts differ and no meaningful mapping exists.
    """
    src = weight.shape[1]
    if src == in_chans and not (source_bands and bands):
        return weight
    scale = src / in_chans
    if source_bands and bands and len(source_bands) == src:
        lookup = {_norm_band(b): i for i, b in enumerate(source_bands)}
        picked = [lookup.get(_norm_band(b)) for b in bands]
        if all(i is not None for i in picked):
            idx = torch.tensor([i for i in picked if i is not None])
            return weight[:, idx] * scale
        if src == in_chans:
            return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    if src in (1, 3):
        reps = math.ceil(in_chans / src)
        return weight.repeat(1, reps, 1, 1)[:, :in_chans] * scale
    raise WeightsError(
        f"the pretrained first convolution takes {src} bands but the branch has {in_chans}, "
        "and there is no band-name mapping to adapt it. Use weights trained on the same "
        f"{in_chans} bands, give the layer's band names (LayerSpec.bands) when the weights "
        "carry theirs, or drop the weights for this branch")


def load_branch_weights(module: nn.Module, source: str | Path, *, in_chans: int,
                        bands: Sequence[str] | None = None,
                        source_bands: Sequence[str] | None = None) -> list[str]:
    """Copy pretrained tensors from ``source`` into ``module``, matched by name and shape.

    Args:
        module: The branch encoder (e.g. a timm ResNet) to fill in place.
        source: A torchgeo weight enum name (``"ResNet18_Weights.SENTINEL2_ALL_MOCO"``,
            downloaded to the torch hub cache) or a local ``.safetensors``/``.pt``/``.pth``
            file (read with ``weights_only=True``; no pickled code runs).
        in_chans: Band count of the branch; the module's first convolution must take it.
        bands: Band names of the branch, used to pick matching channels of the first conv.
        source_bands: Band names the weights were trained on (torchgeo enums carry their own).

    Returns:
        The keys of ``module.state_dict()`` that were loaded.

    Raises:
        WeightsError: Unknown name, unreadable or unsafe file, or a first convolution whose
            band count cannot be adapted.
        WeightsUnavailableError: A torchgeo weight could not be downloaded.
    """
    path = Path(source)
    if isinstance(source, Path) or path.suffix in _FILE_SUFFIXES or path.exists():
        state, label = _read_file(path), str(path)
    else:
        state, enum_bands = _read_enum(str(source))
        source_bands, label = source_bands or enum_bands, str(source)
    target = module.state_dict()
    first = next((k for k, v in target.items() if v.ndim == 4), None)
    if first is None or target[first].shape[1] != in_chans:
        raise WeightsError(f"{type(module).__name__} has no first convolution taking "
                           f"{in_chans} bands; is in_chans right?")
    by_name = {_strip(k): k for k in target}
    new: dict[str, Tensor] = {}
    skipped: list[str] = []
    for key, tensor in state.items():
        tkey = by_name.get(_strip(key))
        if tkey is None:
            continue
        want = target[tkey]
        if tkey == first:
            if tensor.ndim != 4 or tensor.shape[0] != want.shape[0]:
                skipped.append(tkey)
                continue
            tensor = adapt_first_conv(tensor, in_chans, source_bands=source_bands, bands=bands)
        if tensor.shape != want.shape:
            skipped.append(tkey)
            continue
        new[tkey] = tensor.to(dtype=want.dtype)
    if not new:
        warnings.warn(PretrainedWeightsWarning(
            f"no tensor in {label} matches a parameter of the branch by name and shape; the "
            "branch stays randomly initialised"), stacklevel=2)
        return []
    module.load_state_dict(new, strict=False)
    left = [k for k in target if k not in new and not k.endswith("num_batches_tracked")]
    if left:
        warnings.warn(PretrainedWeightsWarning(
            f"{label}: loaded {len(new)} tensors; {len(left)} stay randomly initialised "
            f"(e.g. {', '.join(left[:3])}){'; shape mismatch: ' + skipped[0] if skipped else ''}"),
            stacklevel=2)
    return list(new)
