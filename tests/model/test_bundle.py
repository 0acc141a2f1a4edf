"""geomm.model.bundle: safetensors + JSON model bundles that load without pickle."""

from __future__ import annotations

import builtins
import hashlib
import json
import pickle

import numpy as np
import pytest
import torch

from geomm.classes import ClassTable
from geomm.model.bundle import (
    BundleError,
    BundleExistsError,
    BundleMeta,
    BundleMismatchError,
    layers_from_manifest,
    load_bundle,
    save_bundle,
)

LAYERS = [{"key": "visible/10m", "modality": "visible", "bands": ["B02", "B03", "B04"],
           "resolution": 10.0, "factor": 1, "dtype": "uint16"},
          {"key": "infrared/20m", "modality": "infrared", "bands": ["B11", "B12"],
           "resolution": 20.0, "factor": 2, "dtype": "uint16"}]


def _meta(**change):
    doc = {"recipe": "s2-landcover", "layers": LAYERS,
           "classes": ClassTable.from_names(["forest", "water"]).to_dict(),
           "normalisation": {"visible/10m": {"mean": [1.5, 2.5, 3.5], "std": [1.0, 2.0, 3.0]}},
           "config": {"fusion": "concat", "branches": {"visible": "light"}},
           "split": {"kind": "blocks", "block_m": 2000, "fold": 0},
           "metrics": {"val_loss": 0.25, "epochs": 3}, "recipe_raw": {"name": "s2-landcover"}}
    return BundleMeta(**{**doc, **change})


@pytest.fixture
def tensors():
    g = torch.Generator().manual_seed(0)
    return {"visible.conv1.weight": torch.randn(8, 3, 3, 3, generator=g),
            "head.bias": torch.randn(2, generator=g).to(torch.bfloat16),
            "step": torch.tensor(7, dtype=torch.int64)}


def test_round_trip_keeps_tensors_and_meta(tmp_path, tensors):
    meta = _meta()
    path = save_bundle(tmp_path / "model", kind="cnn", tensors=tensors, meta=meta)
    assert sorted(p.name for p in path.iterdir()) == ["bundle.json", "weights.safetensors"]
    bundle = load_bundle(path)
    assert bundle.kind == "cnn" and bundle.meta == meta
    assert bundle.meta.class_table.names == ("forest", "water")
    assert sorted(bundle.tensors) == sorted(tensors)
    for name, t in tensors.items():
        assert bundle.tensors[name].dtype == t.dtype and torch.equal(bundle.tensors[name], t)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left


def test_numpy_arrays_round_trip_without_torch_types(tmp_path):
    arrays = {"threshold": np.array([0.5, np.inf]), "left": np.array([1, 1], np.int32)}
    bundle = load_bundle(save_bundle(tmp_path / "rf", kind="rf", tensors=arrays, meta=_meta()))
    assert all(isinstance(v, np.ndarray) for v in bundle.tensors.values())
    np.testing.assert_array_equal(bundle.tensors["threshold"], arrays["threshold"])
    assert bundle.tensors["left"].dtype == np.int32


def _edit(path, change):
    doc = json.loads((path / "bundle.json").read_text())
    change(doc)
    (path / "bundle.json").write_text(json.dumps(doc))


def test_tampered_band_count_is_refused_naming_the_layer(tmp_path, tensors):
    path = save_bundle(tmp_path / "m", kind="cnn", tensors=tensors, meta=_meta())
    assert load_bundle(path).check_inputs(LAYERS) == []
    _edit(path, lambda d: d["layers"][1]["bands"].append("B8A"))
    bundle = load_bundle(path)  # the JSON itself is well-formed
    with pytest.raises(BundleMismatchError) as info:
        bundle.check_inputs(LAYERS)
    msg = str(info.value)
    assert "'infrared/20m' has 3 band(s) in the bundle (B11, B12, B8A)" in msg
    assert "2 in the inputs (B11, B12)" in msg and str(path) in msg


def test_check_inputs_names_the_band_the_factor_and_missing_layers(tmp_path, tensors):
    bundle = load_bundle(save_bundle(tmp_path / "m", kind="cnn", tensors=tensors, meta=_meta()))
    swapped = [{**LAYERS[0], "bands": ["B02", "B04", "B03"]}, LAYERS[1]]
    with pytest.raises(BundleMismatchError, match="band 2 is 'B03' in the bundle but 'B04'"):
        bundle.check_inputs(swapped)
    with pytest.raises(BundleMismatchError, match="'infrared/20m' is at factor 2 .* but 3"):
        bundle.check_inputs([LAYERS[0], {**LAYERS[1], "factor": 3}])
    extra = [*LAYERS, {"key": "sar/10m", "bands": ["VV"], "factor": 1}]
    assert bundle.check_inputs(extra) == []  # more inputs than the model uses is fine
    with pytest.raises(BundleMismatchError, match=r"needs layer\(s\) infrared/20m \(B11, B12\)"):
        bundle.check_inputs(LAYERS[:1])
    assert bundle.check_inputs(LAYERS[:1], missing_ok=True) == ["infrared/20m"]
    degrees = [LAYERS[0], {**LAYERS[1], "key": "infrared/0.00018deg"}]  # inputs in EPSG:4326
    with pytest.raises(BundleMismatchError, match=r"infrared/0.00018deg are on another grid.*"
                                                  r"`grid:` has the model's CRS"):
        bundle.check_inputs(degrees)
    coarse = [LAYERS[0], {**LAYERS[1], "key": "infrared/40m", "resolution": 40}]
    with pytest.raises(BundleMismatchError, match=r"infrared/40m are at another resolution, "
                                                  r"and geomm does not resample on its own: "
                                                  r"resample the files to 20 first"):
        bundle.check_inputs(coarse)
    with pytest.raises(BundleMismatchError, match="visible/10m"):
        bundle.check_inputs([], missing_ok=True)  # a map needs at least one input


@pytest.mark.parametrize("change,words", [
    (lambda d: d.pop("layers"), ["`layers` is missing"]),
    (lambda d: d["recipe"].pop("name"), ["`recipe.name` is missing"]),
    (lambda d: d["layers"][1].pop("bands"), ["`layers[1].bands` is missing"]),
    (lambda d: d["layers"][0].update(factor="2"), ["`layers[0].factor` must be an integer"]),
    (lambda d: d.update(kind="xgboost"), ["`kind` is 'xgboost'", "cnn, rf, svm"]),
    (lambda d: d["classes"].update(classes=[{"name": "a"}, {"name": "a"}]),
     ["`classes`", "more than once"]),
    (lambda d: d["weights"].pop("sha256"), ["`weights.sha256` is missing"]),
    (lambda d: d.update(format=2), ["format 2"]),
])
def test_bad_bundle_json_names_the_file_and_key(tmp_path, tensors, change, words):
    path = save_bundle(tmp_path / "m", kind="cnn", tensors=tensors, meta=_meta())
    _edit(path, change)
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path / "bundle.json") in msg
    assert all(w in msg for w in words), msg


class _Payload:
    """Unpickling this creates ``path``: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return builtins.open, (self.path, "w")


@pytest.mark.parametrize("kind", ["cnn", "rf"])
@pytest.mark.parametrize("fix_checksum", [False, True])
def test_pickle_payload_in_weights_is_never_executed(tmp_path, tensors, kind, fix_checksum):
    live = tmp_path / "live-marker"
    pickle.loads(pickle.dumps(_Payload(live)))
    assert live.exists()  # the payload works when unpickled
    marker = tmp_path / "marker"
    path = save_bundle(tmp_path / "m", kind=kind, meta=_meta(),
                       tensors={k: v.float().numpy() for k, v in tensors.items()})
    payload = pickle.dumps({"weight": _Payload(marker)})
    (path / "weights.safetensors").write_bytes(payload)
    if fix_checksum:  # a forger who also edits bundle.json still gets no code run
        _edit(path, lambda d: d["weights"].update(sha256=hashlib.sha256(payload).hexdigest()))
    with pytest.raises(BundleError, match="weights.safetensors") as info:
        load_bundle(path)
    assert ("sha256" in str(info.value)) != fix_checksum
    assert not marker.exists()


def test_weights_swapped_from_another_bundle_are_refused(tmp_path, tensors):
    path = save_bundle(tmp_path / "m", kind="cnn", tensors=tensors, meta=_meta())
    other = save_bundle(tmp_path / "o", kind="cnn", meta=_meta(),
                        tensors={k: v + 1 for k, v in tensors.items()})
    (path / "weights.safetensors").write_bytes((other / "weights.safetensors").read_bytes())
    with pytest.raises(BundleError, match="do not match the sha256 recorded in bundle.json"):
        load_bundle(path)
    (path / "weights.safetensors").unlink()
    with pytest.raises(BundleError, match="weights.safetensors is missing"):
        load_bundle(path)
    with pytest.raises(BundleError, match="not a geomm model bundle"):
        load_bundle(tmp_path)


def test_save_never_replaces_a_folder_that_is_not_a_bundle(tmp_path, tensors):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for overwrite in (False, True):  # callers may catch the built-in FileExistsError
        with pytest.raises(FileExistsError, match="not a geomm model bundle"):
            save_bundle(mine, kind="cnn", tensors=tensors, meta=_meta(), overwrite=overwrite)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert (mine / "notes.txt").read_text() == "keep me"


def test_existing_bundle_needs_overwrite(tmp_path, tensors):
    path = save_bundle(tmp_path / "m", kind="cnn", tensors=tensors, meta=_meta())
    with pytest.raises(BundleExistsError, match="overwrite=True"):
        save_bundle(path, kind="cnn", tensors={}, meta=_meta(recipe="other"))
    assert load_bundle(path).meta.recipe == "s2-landcover"
    save_bundle(path, kind="svm", tensors=None, meta=_meta(recipe="other"), overwrite=True)
    again = load_bundle(path)
    assert again.kind == "svm" and again.meta.recipe == "other" and dict(again.tensors) == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize("meta,words", [
    (_meta(layers=[]), "`layers` is empty"),
    (_meta(metrics={"when": object()}), "not JSON-able"),
    (_meta(layers=[{**LAYERS[0], "bands": []}]), "`layers[0].bands` must be a non-empty"),
])
def test_invalid_meta_writes_nothing(tmp_path, tensors, meta, words):
    with pytest.raises(BundleError) as info:
        save_bundle(tmp_path / "m", kind="cnn", tensors=tensors, meta=meta)
    assert words in str(info.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BundleError, match="allowed: cnn, rf, svm"):
        save_bundle(tmp_path / "m", kind="gbm", tensors=tensors, meta=_meta())


def test_layers_from_manifest_describes_store_layers():
    manifest = {"layers": [{**LAYERS[1], "files": ["x.tif"], "nodata": None, "scale": 1e-4},
                           {**LAYERS[0], "warped": {}, "nodata": 0, "offset": -0.1}]}
    read_as = [{"nodata": None, "scale": 1e-4, "offset": 0.0},  # how the inputs were read
               {"nodata": 0, "scale": 1.0, "offset": -0.1}]
    want = [{**LAYERS[1], **read_as[0]}, {**LAYERS[0], **read_as[1]}]
    assert layers_from_manifest(manifest) == want
    assert layers_from_manifest(manifest, ["visible/10m"]) == [want[1]]
    with pytest.raises(BundleMismatchError, match="no layer 'sar/10m'"):
        layers_from_manifest(manifest, ["sar/10m"])
