"""Build the engine of a model bundle for co-registered inputs, checking they match."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geomm._files import file_stamp
from geomm.errors import GeommError, GeommWarning
from geomm.model.bundle import Bundle, BundleMismatchError, load_bundle
from geomm.predict.engine import ClassicalEngine, Engine, EngineLayer, NetworkEngine

__all__ = ["checked_bundle", "engine_for", "input_layers"]


def input_layers(st: Any) -> list[dict[str, Any]]:
    """The co-registered inputs described like a bundle's layers (key, bands, factor)."""
    return [{"key": key, "modality": lyr.modality, "factor": lyr.factor,
             "bands": [str(b) for b in lyr.data["band"].values], "dtype": str(lyr.data.dtype)}
            for key, lyr in st.layers.items()]


def _missing_modalities(bundle: Bundle, st: Any, asked: tuple[str, ...]) -> list[str]:
    """Modalities of the bundle the inputs lack (or the user leaves out), checked."""
    have = {lyr.modality for lyr in st.layers.values()}
    mods = list(dict.fromkeys(str(lyr["modality"]) for lyr in bundle.meta.layers))
    unknown = [m for m in asked if m not in mods]
    if unknown:
        raise BundleMismatchError(f"{bundle.path}: --missing {unknown[0]!r} is not a modality "
                                  f"of the model (it has {mods})")
    absent = [m for m in mods if m not in have or m in asked]
    if absent and bundle.kind not in ("cnn", "cnn+rf"):
        raise BundleMismatchError(f"{bundle.path}: the {bundle.kind} model needs every "
                                  f"modality it was trained on; the inputs lack {absent}")
    if absent and len(absent) == len(mods):
        left = sorted(set(asked) & have)
        raise BundleMismatchError(
            f"{bundle.path}: a map needs one of the model's modalities {mods}, and "
            + (f"--missing leaves out {left}, the ones the inputs have" if left else
               f"the inputs hold none of them (they have {sorted(have)})"))
    lacking = [m for m in absent if m not in have and m not in asked]
    if lacking:
        dropout = float(bundle.meta.config.get("model", {}).get("modality_dropout", 0.0))
        if dropout <= 0:
            raise BundleMismatchError(
                f"{bundle.path}: the inputs lack modality {lacking} and the model was trained "
                f"without modality dropout; add the files, or pass --missing "
                f"{' --missing '.join(lacking)} to accept a degraded map")
    return absent


_ENGINES: dict[tuple[Any, ...], Engine] = {}
_BUNDLES: dict[tuple[Any, ...], Bundle] = {}
"""Bundles read and network engines built in this process, keyed by the bundle files' stamps
(and the options): a batch worker reads a bundle once and serves every block with it."""
_CACHE_SIZE = 2


def _remember(cache: dict[tuple[Any, ...], Any], key: tuple[Any, ...], make: Any) -> Any:
    if key not in cache:
        while len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def _stamps(folder: Path) -> tuple[Any, ...]:
    return (tuple(file_stamp(p) for p in sorted(folder.iterdir()) if p.is_file())
            if folder.is_dir() else ())


def checked_bundle(path: Path, st: Any, options: Any) -> tuple[Bundle, list[str]]:
    """The bundle at ``path`` (read once per process while its files are unchanged), checked
    against the co-registered inputs ``st``; and the modalities it will go without.

    Raises:
        BundleError: not a bundle, or a damaged one.
        BundleMismatchError: bands, resolutions or modalities differ from the inputs.
    """
    return _checked(Path(path), _stamps(Path(path)), st, options)


def _checked(folder: Path, stamps: tuple[Any, ...], st: Any, options: Any
             ) -> tuple[Bundle, list[str]]:
    bundle: Bundle = (_remember(_BUNDLES, stamps, lambda: load_bundle(folder)) if stamps
                      else load_bundle(folder))
    missing = _missing_modalities(bundle, st, tuple(options.missing))
    bundle.check_inputs(input_layers(st), missing_ok=bool(missing))
    return bundle, missing


def engine_for(path: Path, st: Any, options: Any) -> tuple[Engine, Bundle]:
    """Load the bundle at ``path`` and wrap it as an engine for the stack ``st`` (both cached
    in the process while the bundle's files are unchanged).

    Raises:
        BundleError: not a bundle, or a scene classifier (no per-pixel map).
        BundleMismatchError: bands, resolutions or modalities differ from the inputs.
    """
    folder = Path(path)
    stamps = _stamps(folder)
    bundle, missing = _checked(folder, stamps, st, options)
    if missing:
        _warn_missing(missing, float(bundle.meta.config.get("model", {})
                                    .get("modality_dropout", 0.0)))
    if bundle.kind in ("rf", "svm"):  # cheap to build; may take scale/offset from the inputs
        return _build(folder, bundle, st, options, missing), bundle
    key = (*stamps, tuple(missing), options.device, options.amp, options.channels_last,
           options.compile, options.threads)
    engine: Engine = _remember(_ENGINES, key,
                               lambda: _build(folder, bundle, st, options, missing))
    device = getattr(engine, "device", None)
    if options.threads and device is not None and device.type == "cpu":
        import torch

        torch.set_num_threads(options.threads)  # another engine here may have set others
    return engine, bundle


def _build(path: Path, bundle: Bundle, st: Any, options: Any, missing: list[str]) -> Engine:
    if bundle.kind == "cnn":
        return _network(path, bundle, options, missing)
    from geomm.model.classicalbundle import classifier_from_bundle

    units = {}
    for lyr in bundle.meta.layers:
        attrs = st.layers[lyr["key"]].data.attrs  # bundles without scale: the inputs' own
        units[lyr["key"]] = (float(lyr.get("scale", attrs.get("scale", 1.0))),
                             float(lyr.get("offset", attrs.get("offset", 0.0))))
    forest = classifier_from_bundle(bundle)
    n_classes = len(bundle.meta.class_table)
    if bundle.kind == "cnn+rf":
        from geomm.predict.ensemble import EnsembleEngine, forest_layers

        net = _network(path, bundle, options, missing)
        how = bundle.meta.config.get("ensemble") or {}
        return EnsembleEngine(net, ClassicalEngine(forest, forest_layers(net.layers), n_classes),
                              units, weight=float(how.get("weight", 0.5)),
                              temperature=float(how.get("temperature", 1.0)))
    layers = [EngineLayer(lyr["key"], lyr["modality"], int(lyr["factor"]),
                          (units[lyr["key"]][1],) * len(lyr["bands"]),
                          (units[lyr["key"]][0],) * len(lyr["bands"]), physical=True)
              for lyr in bundle.meta.layers]
    return ClassicalEngine(forest, layers, n_classes)


def _network(path: Path, bundle: Bundle, options: Any, missing: list[str]) -> NetworkEngine:
    from geomm.model.bundle import BundleError
    from geomm.model.netbundle import load_cnn_bundle

    model, stats, _ = load_cnn_bundle(path)
    if model.config.head != "segmentation":
        raise BundleError(f"{path}: a scene classifier ({model.config.head} head) makes no "
                          "per-pixel map; geomm predict needs a segmentation bundle")
    layers = []
    for lyr in bundle.meta.layers:
        s = stats[lyr["key"]]
        layers.append(EngineLayer(lyr["key"], lyr["modality"], int(lyr["factor"]),
                                  tuple(s.mean), tuple(s.std)))
    return NetworkEngine(model, layers, device=_device(options.device), amp=options.amp,
                         channels_last=options.channels_last, compile=options.compile,
                         missing=missing, threads=options.threads,
                         temperature=_temperature(path, bundle.meta.config))


def _temperature(path: Any, config: dict[str, Any]) -> float:
    """The bundle's calibration temperature (1 without one); a :class:`BundleError` naming
    the key when it is not a positive number."""
    from geomm.model.bundle import BundleError

    value = (config.get("calibration") or {}).get("temperature", 1.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 \
            or not math.isfinite(value):
        raise BundleError(f"{path}: bundle.json config.calibration.temperature is {value!r}, "
                          "not a positive number; the bundle was edited or damaged: train it "
                          "again, or set a number such as 1.0")
    return float(value)


def _device(device: str) -> str:
    """``device``, once CUDA is known to be there when asked for."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise GeommError("--device cuda: torch sees no CUDA device on this machine (no GPU, "
                          "no driver, or a CPU-only torch); use --device cpu, or auto")
    return device


def _warn_missing(missing: Sequence[str], dropout: float) -> None:
    """Say that a map is made without some modalities (and how reliable that is)."""
    how = (f"the model was trained with modality dropout {dropout:g}" if dropout > 0 else
           "the model was trained WITHOUT modality dropout: expect a much worse map")
    warnings.warn(f"predicting without {', '.join(missing)}; {how}", GeommWarning,
                  stacklevel=3)
