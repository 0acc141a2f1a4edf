"""Model bundles: one folder of safetensors weights and JSON metadata, loaded without pickle.

Layout of a bundle folder::

    weights.safetensors   every array of the model (a JSON header, then raw little-endian bytes)
    bundle.json           what the arrays mean: kind, input layers, classes, normalisation, ...

Loading reads only these two files, with parsers that cannot run code (``json`` and
``safetensors``); nothing from the bundle is imported, unpickled or evaluated. bundle.json
records the weights' sha256, so a damaged or replaced weights file is refused before it is
parsed. A bundle is written into a temporary sibling folder and renamed into place when complete.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from geomm._files import follow_umask, sha256_file
from geomm._version import __version__
from geomm.classes import ClassTable
from geomm.errors import GeommError
from geomm.stack.store import staged_store

__all__ = ["FOREST_PREFIX", "KINDS", "Bundle", "BundleError", "BundleExistsError", "BundleMeta",
           "BundleMismatchError", "check_bundle_target", "layers_from_manifest", "load_bundle",
           "save_bundle"]

FORMAT = 1
WEIGHTS = "weights.safetensors"
META = "bundle.json"
KINDS = ("cnn", "rf", "svm", "cnn+rf")
"""Bundle kinds: the fusion network, the two per-pixel baselines, and the network averaged
with a random forest (the network's arrays, and the forest's under ``rf.``)."""
FOREST_PREFIX = "rf."
"""Name prefix of the forest's arrays in a "cnn+rf" bundle (its settings: ``config.forest``)."""

_FIX = "the bundle is damaged or was not written by geomm; write it again (geomm train)"
_LAYER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "key": str, "modality": str, "bands": list, "resolution": (int, float), "factor": int,
    "dtype": str}
_WORDS = {str: "a string", dict: "an object", list: "a list", int: "an integer"}


class BundleError(GeommError, ValueError):
    """A model bundle is missing, damaged, or not a geomm bundle."""


class BundleMismatchError(BundleError):
    """A bundle's input layers or bands differ from the inputs at hand."""


class BundleExistsError(GeommError, FileExistsError):
    """The target folder holds something :func:`save_bundle` will not replace."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class BundleMeta:
    """Everything about a model except its arrays (all JSON-able)."""

    recipe: str
    """Name of the recipe the model was trained from."""
    layers: list[dict[str, Any]]
    """Input layers in model order: key, modality, bands, resolution, factor, dtype (and,
    from stores, the nodata, scale and offset the inputs were read with)."""
    classes: dict[str, Any]
    """Class table (:meth:`geomm.classes.ClassTable.to_dict`)."""
    normalisation: dict[str, Any] = field(default_factory=dict)
    """Normalisation statistics, as the model code wrote them (opaque here)."""
    config: dict[str, Any] = field(default_factory=dict)
    """Model configuration, enough to rebuild the model around the arrays (opaque here)."""
    split: dict[str, Any] = field(default_factory=dict)
    """How the training/validation/test pixels were chosen (opaque here)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Training and validation metrics."""
    recipe_raw: dict[str, Any] | None = None
    """The recipe document itself, when given."""
    geomm: str = __version__
    """geomm version that wrote the bundle."""
    created: str = field(default_factory=_now)
    """Creation time, ISO 8601 UTC."""

    @property
    def layer_keys(self) -> list[str]:
        """Input layer keys in model order."""
        return [str(lyr["key"]) for lyr in self.layers]

    @property
    def class_table(self) -> ClassTable:
        """The class table as a :class:`ClassTable`."""
        return ClassTable.from_dict(self.classes)


def layers_from_manifest(manifest: Mapping[str, Any], keys: Sequence[str] | None = None
                         ) -> list[dict[str, Any]]:
    """The bundle description of a tile store's layers (all, or ``keys`` in that order).

    Raises:
        BundleMismatchError: a key is not a layer of the store.
    """
    found = {lyr["key"]: lyr for lyr in manifest["layers"]}
    missing = [k for k in keys or () if k not in found]
    if missing:
        raise BundleMismatchError(f"no layer {missing[0]!r} in the tile store; its layers are "
                                  f"{list(found)}")
    return [{"key": k, "modality": found[k]["modality"], "bands": list(found[k]["bands"]),
             "resolution": found[k]["resolution"], "factor": int(found[k]["factor"]),
             "dtype": str(found[k]["dtype"]), "nodata": found[k].get("nodata"),
             "scale": float(found[k].get("scale", 1.0)),
             "offset": float(found[k].get("offset", 0.0))} for k in (keys or list(found))]


@dataclass(frozen=True)
class Bundle:
    """A loaded model bundle: metadata plus arrays (torch tensors for "cnn", numpy otherwise)."""

    path: Path
    """Bundle folder."""
    kind: str
    """One of :data:`KINDS`."""
    meta: BundleMeta
    """Metadata from bundle.json."""
    tensors: Mapping[str, Any] = field(compare=False, repr=False)
    """Arrays by name, as saved."""

    def check_inputs(self, layers: Sequence[Mapping[str, Any]], *, missing_ok: bool = False
                     ) -> list[str]:
        """Compare the model's input layers with ``layers`` (e.g. a store manifest's "layers").

        Inputs may hold more layers than the model uses; each model layer must have the same
        bands in the same order and the same factor.

        Args:
            layers: the inputs at hand, each with ``key``, ``bands`` and ``factor``.
            missing_ok: allow some (not all) model layers to be absent, e.g. for a model trained
                with modality dropout.

        Returns:
            The model layers the inputs lack (empty unless ``missing_ok``).

        Raises:
            BundleMismatchError: names the layer and band that differ.
        """
        have = {str(lyr.get("key")): lyr for lyr in layers}
        missing: list[str] = []
        for need in self.meta.layers:
            key, want = need["key"], [str(b) for b in need["bands"]]
            got = have.get(key)
            if got is None:
                missing.append(key)
                continue
            got_bands = [str(b) for b in got.get("bands", [])]
            if got_bands != want:
                raise BundleMismatchError(f"{self.path}: {_band_diff(key, want, got_bands)}; the "
                                          f"model was trained on other bands: stack the inputs "
                                          f"with recipe {self.meta.recipe!r}")
            _check_dtype(self.path, key, need.get("dtype"), got.get("dtype"))
            if int(got.get("factor", -1)) != int(need["factor"]):
                raise BundleMismatchError(
                    f"{self.path}: layer {key!r} is at factor {need['factor']} of the base grid "
                    f"in the bundle but {got.get('factor')} in the inputs; stack the inputs on "
                    f"a grid of the bundle's base resolution")
        if missing and (not missing_ok or len(missing) == len(self.meta.layers)):
            need_s = "; ".join(f"{lyr['key']} ({', '.join(lyr['bands'])})"
                               for lyr in self.meta.layers if lyr["key"] in missing)
            mods = {k.split("/")[0] for k in missing}
            other = [k for k in have if k.split("/")[0] in mods]
            unit = {_unit(k) for k in missing}
            if other and {_unit(k) for k in other} == unit:  # same units: another resolution
                res = ", ".join(f"{lyr['resolution']:g}" for lyr in self.meta.layers
                                if lyr["key"] in missing)
                fix = (f"the inputs' {', '.join(other)} are at another resolution, and geomm "
                       f"does not resample on its own: resample the files to {res} first "
                       "(e.g. `gdalwarp -tr RES RES -r average IN OUT`), or train a model on "
                       "inputs like these")
            elif other:
                fix = (f"the inputs' {', '.join(other)} are on another grid: give a recipe "
                       "whose `grid:` has the model's CRS and resolution (e.g. `grid: {crs: "
                       "EPSG:32633, resolution: 10}`) instead of --modality files")
            else:
                fix = f"stack the inputs with recipe {self.meta.recipe!r}"
            raise BundleMismatchError(f"{self.path}: the model needs layer(s) {need_s}, which "
                                      f"the inputs lack (they have {list(have)}); {fix}")
        return missing


def _unit(key: str) -> str:
    """The unit of a layer key's resolution: ``m`` of ``visible/10m``."""
    return key[len(key.rstrip("abcdefghijklmnopqrstuvwxyz")):]


def _check_dtype(path: Path, key: str, want: Any, got: Any) -> None:
    """Refuse integer inputs of another width than the model's (uint8 RGB given to a model of
    uint16 reflectance maps one class everywhere): the values are on another scale."""
    if not want or not got:
        return
    try:
        w, g = np.dtype(str(want)), np.dtype(str(got))
    except TypeError:
        return
    if w.kind in "iu" and g.kind in "iu" and w.itemsize != g.itemsize:
        raise BundleMismatchError(
            f"{path}: layer {key!r} holds {g} values but the model was trained on {w}: the "
            "values are on another scale (another product or processing level); give inputs "
            f"of the kind the model was trained on (recipe {key.split('/')[0]!r}), or train a "
            "model on these")


def _band_diff(key: str, want: list[str], got: list[str]) -> str:
    if len(want) != len(got):
        return (f"layer {key!r} has {len(want)} band(s) in the bundle ({', '.join(want)}) but "
                f"{len(got)} in the inputs ({', '.join(got)})")
    i = next(i for i, (a, b) in enumerate(zip(want, got, strict=True)) if a != b)
    return f"layer {key!r}: band {i + 1} is {want[i]!r} in the bundle but {got[i]!r} in the inputs"


def _need(doc: Mapping[str, Any], key: str, types: type | tuple[type, ...], where: str,
          at: str = "") -> Any:
    """``doc[key]``, checked to be present and of ``types`` (bool is never a number)."""
    if key not in doc:
        raise BundleError(f"{where}: key `{at}{key}` is missing; {_FIX}")
    value = doc[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in
                                        (types if isinstance(types, tuple) else (types,))):
        want = _WORDS.get(types, "a number") if isinstance(types, type) else "a number"
        raise BundleError(f"{where}: key `{at}{key}` must be {want}, not "
                          f"{type(value).__name__} {str(value)[:40]!r}; {_FIX}")
    return value


def _parse_meta(doc: Mapping[str, Any], where: str) -> tuple[str, BundleMeta]:
    """Validate a bundle.json document (all but its `weights` entry)."""
    fmt = _need(doc, "format", int, where)
    if fmt != FORMAT:
        raise BundleError(f"{where}: bundle format {fmt} is not the format {FORMAT} this geomm "
                          f"{__version__} reads; use the geomm version that wrote it")
    kind = _need(doc, "kind", str, where)
    if kind not in KINDS:
        raise BundleError(f"{where}: key `kind` is {kind!r}; allowed: {', '.join(KINDS)}")
    recipe = _need(doc, "recipe", dict, where)
    raw = recipe.get("raw")
    if raw is not None and not isinstance(raw, dict):
        raise BundleError(f"{where}: key `recipe.raw` must be an object or null; {_FIX}")
    layers = _need(doc, "layers", list, where)
    if not layers:
        raise BundleError(f"{where}: key `layers` is empty; a model needs at least one input")
    for i, lyr in enumerate(layers):
        if not isinstance(lyr, dict):
            raise BundleError(f"{where}: key `layers[{i}]` must be an object; {_FIX}")
        for name, types in _LAYER_FIELDS.items():
            _need(lyr, name, types, where, f"layers[{i}].")
        if not lyr["bands"] or not all(isinstance(b, str) and b for b in lyr["bands"]):
            raise BundleError(f"{where}: key `layers[{i}].bands` must be a non-empty list of "
                              f"band names; {_FIX}")
        if lyr["factor"] < 1:
            raise BundleError(f"{where}: key `layers[{i}].factor` is {lyr['factor']}; it must "
                              f"be 1 or more")
    keys = [lyr["key"] for lyr in layers]
    if len(set(keys)) != len(keys):
        raise BundleError(f"{where}: key `layers` lists a layer twice ({keys}); {_FIX}")
    classes = _need(doc, "classes", dict, where)
    try:
        ClassTable.from_dict(classes)
    except GeommError as e:
        raise BundleError(f"{where}: key `classes`: {e}") from None
    opaque = {k: _need(doc, k, dict, where)
              for k in ("normalisation", "config", "split", "metrics")}
    meta = BundleMeta(_need(recipe, "name", str, where, "recipe."), layers, classes,
                      recipe_raw=raw, geomm=_need(doc, "geomm", str, where),
                      created=_need(doc, "created", str, where), **opaque)
    return kind, meta


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON-able: {type(v).__name__}")


def _document(kind: str, meta: BundleMeta) -> dict[str, Any]:
    doc = {"format": FORMAT, "kind": kind, "geomm": meta.geomm, "created": meta.created,
           "recipe": {"name": meta.recipe, "raw": meta.recipe_raw}, "layers": meta.layers,
           "classes": meta.classes, "normalisation": meta.normalisation, "config": meta.config,
           "split": meta.split, "metrics": meta.metrics}
    try:
        canonical: dict[str, Any] = json.loads(json.dumps(doc, default=_jsonable))
    except (TypeError, ValueError) as e:
        raise BundleError(f"bundle metadata is not JSON-able ({e}); pass plain numbers, "
                          "strings, lists and dicts") from None
    _parse_meta(canonical, "bundle metadata")
    return canonical


def _write_tensors(path: Path, tensors: Mapping[str, Any], kind: str) -> None:
    info = {"format": "geomm-bundle", "kind": kind}
    if all(isinstance(v, np.ndarray) for v in tensors.values()):
        from safetensors.numpy import save_file

        # (not np.ascontiguousarray: it makes a 0-d array 1-d)
        save_file({k: v if v.flags.c_contiguous else v.copy(order="C")
                   for k, v in tensors.items()}, str(path), info)
        return
    import torch
    from safetensors.torch import save_file as save_torch

    save_torch({k: (torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                    ).detach().cpu().contiguous() for k, v in tensors.items()}, str(path), info)


def _looks_like_bundle(path: Path) -> bool:
    try:
        doc = json.loads((path / META).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and "format" in doc and "kind" in doc and "weights" in doc


def check_bundle_target(out: Path, overwrite: bool) -> None:
    """Refuse a bundle folder :func:`save_bundle` would not write (checked before training).

    Raises:
        BundleExistsError: ``out`` holds a bundle (without ``overwrite``) or something else.
    """
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not out.is_dir() or not _looks_like_bundle(out):
            raise BundleExistsError(f"{out} exists and is not a geomm model bundle; geomm will "
                                    "not replace it: move it away or choose another --out")
        if not overwrite:
            raise BundleExistsError(f"{out} already holds a model bundle; pass overwrite=True "
                                    "(--overwrite) to replace it, or choose another --out")


def save_bundle(path: str | Path, *, kind: str, tensors: Mapping[str, Any] | None,
                meta: BundleMeta, overwrite: bool = False) -> Path:
    """Write a model bundle (arrays to safetensors, metadata to JSON) atomically.

    Args:
        path: bundle folder to create.
        kind: one of :data:`KINDS`.
        tensors: arrays by name (torch tensors or numpy arrays); None for none.
        meta: the metadata; checked as strictly as :func:`load_bundle` checks it.
        overwrite: replace an existing bundle (never a folder that is not a bundle).

    Returns:
        The bundle folder.

    Raises:
        BundleError: ``kind`` or ``meta`` is invalid (nothing is written).
        BundleExistsError: ``path`` holds a bundle (without ``overwrite``) or something else.
    """
    out = Path(path)
    doc = _document(kind, meta)
    check_bundle_target(out, overwrite)
    with staged_store(out, command="geomm train") as tmp:
        _write_tensors(tmp / WEIGHTS, dict(tensors or {}), kind)
        follow_umask(tmp / WEIGHTS)  # safetensors writes it private
        doc["weights"] = {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS)}
        (tmp / META).write_text(json.dumps(doc, indent=2))
    return out


def load_bundle(path: str | Path) -> Bundle:
    """Read a model bundle: JSON and safetensors only, never pickle or code from the bundle.

    Raises:
        BundleError: the folder is no bundle, bundle.json misses a key or has a wrong type
            (the message names the file and key), or the weights file is not the one whose
            sha256 bundle.json records, or is not safetensors.
    """
    p = Path(path)
    meta_file, weights = p / META, p / WEIGHTS
    if not meta_file.is_file():
        raise BundleError(f"{p}: not a geomm model bundle (no {META}); make one with "
                          "`geomm train RECIPE --out DIR`")
    try:
        doc = json.loads(meta_file.read_text())
    except (OSError, ValueError) as e:
        raise BundleError(f"{meta_file}: not readable JSON ({e}); {_FIX}") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{meta_file}: must hold a JSON object; {_FIX}")
    kind, meta = _parse_meta(doc, str(meta_file))
    listing = _need(doc, "weights", dict, str(meta_file))
    sha = _need(listing, "sha256", str, str(meta_file), "weights.")
    if not weights.is_file():
        raise BundleError(f"{p}: {WEIGHTS} is missing; {_FIX}")
    if sha256_file(weights) != sha:
        raise BundleError(f"{weights}: contents do not match the sha256 recorded in {META} "
                          f"(damaged or replaced); {_FIX}")
    try:
        if kind == "cnn":  # (a "cnn+rf" bundle's arrays are numpy: the forest's are unsigned)
            from safetensors.torch import load_file
        else:
            from safetensors.numpy import load_file  # type: ignore[assignment]
        tensors = load_file(str(weights))
    except Exception as e:  # the parser's own errors: SafetensorError, ValueError, TypeError
        raise BundleError(f"{weights}: not readable as safetensors ({e}); {_FIX}") from None
    return Bundle(p, kind, meta, tensors)
