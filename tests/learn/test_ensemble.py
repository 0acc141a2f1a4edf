"""The "cnn+rf" bundle: what geomm predict maps with it is the mean it was scored on."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import rasterio

from geomm.learn.ensemble import save_ensemble_bundle, score_ensemble
from geomm.learn.heldout import score_map
from geomm.learn.pixelfit import fit_pixel_classifier, save_pixel_fit
from geomm.learn.train import fit_cnn, save_cnn_bundle, score_result
from geomm.model.bundle import BundleError, load_bundle
from geomm.model.calibrate import temper
from geomm.model.classicalbundle import classifier_from_bundle
from geomm.predict.scene import PredictOptions, predict_recipe
from geomm.recipe import load_recipe
from tests.learn.test_train import TINY


def _read(folder):
    with rasterio.open(folder / "probabilities.tif") as src:
        probs = src.read()
    with rasterio.open(folder / "classes.tif") as src:
        return probs, src.read(1)


def test_cnn_rf_bundle_maps_the_calibrated_mean_of_both_models(synth, tmp_path):  # noqa: F811
    root, store = synth
    cfg = replace(TINY, max_epochs=2)
    result, _, cnn_probs = score_result(fit_cnn(store, cfg, progress=False), store)
    fit = fit_pixel_classifier(store, cfg, "rf")
    held = score_ensemble(store, cnn_probs, fit)
    ens = save_ensemble_bundle(result, fit, held, store, tmp_path / "ens", recipe_raw=None)
    cnn = save_cnn_bundle(result, store, tmp_path / "cnn")
    rf = save_pixel_fit(tmp_path / "rf", fit, store, {}, False, cfg=cfg)

    b = load_bundle(ens)
    assert b.kind == "cnn+rf"
    assert b.meta.config["ensemble"]["temperature"] == pytest.approx(held.temperature)
    assert b.meta.metrics["test_oa"] == pytest.approx(held.test.overall_accuracy)
    assert "cnn_test_oa" in b.meta.metrics and "rf_test_oa" in b.meta.metrics
    # no figure of the network alone passes for the mean's: its losses are prefixed too
    assert {"val_loss", "train_loss", "epochs", "val_oa"}.isdisjoint(b.meta.metrics)
    assert b.meta.metrics["cnn_val_loss"] == pytest.approx(result.metrics["val_loss"])
    # the settings it was trained with, resolved: networks and label erosion
    training = b.meta.config["training"]
    assert training["members"] == int(result.metrics["members"])
    assert training["erode_labels"] in (0, 1)
    assert load_bundle(rf).meta.config["training"]["erode_labels"] in (0, 1)
    # the forest inside is the forest alone, array for array
    alone = classifier_from_bundle(load_bundle(rf))
    inside = classifier_from_bundle(b)
    x = np.random.default_rng(0).uniform(0, 4000, (500, alone.n_features))
    np.testing.assert_array_equal(inside.predict_proba(x), alone.predict_proba(x))

    recipe = load_recipe(root / "recipe.yaml")
    opts = PredictOptions(device="cpu", threads=1, probabilities="float32", tile_size=96,
                          halo=12)
    maps = {}
    for name, path in (("ens", ens), ("cnn", cnn), ("rf", rf)):
        predict_recipe(path, recipe, tmp_path / f"map-{name}", options=opts)
        maps[name] = _read(tmp_path / f"map-{name}")
    (p_e, c_e), (p_c, _), (p_r, _) = maps["ens"], maps["cnn"], maps["rf"]
    ok = c_e != store.ignore_value
    assert ok.mean() > 0.9
    want = temper(0.5 * p_c + 0.5 * p_r, held.temperature, axis=0)
    np.testing.assert_allclose(p_e[:, ok], want[:, ok], atol=2e-3)  # blended, then mean
    # its map scores on the test blocks what training recorded
    assert score_map(store, c_e, fit.test_mask).overall_accuracy == pytest.approx(
        held.test.overall_accuracy, abs=0.01)


def test_a_cnn_rf_bundle_without_its_forest_settings_is_refused(synth, tmp_path):  # noqa: F811
    _, store = synth
    cfg = replace(TINY, max_epochs=1)
    result, _, cnn_probs = score_result(fit_cnn(store, cfg, progress=False), store)
    fit = fit_pixel_classifier(store, cfg, "rf")
    ens = save_ensemble_bundle(result, fit, score_ensemble(store, cnn_probs, fit), store,
                               tmp_path / "ens", recipe_raw=None)
    doc = json.loads((ens / "bundle.json").read_text())
    del doc["config"]["forest"]
    (ens / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=r"config\.forest` is missing"):
        classifier_from_bundle(load_bundle(ens))


def test_where_a_modality_has_no_data_the_network_maps_alone(synth, tmp_path):  # noqa: F811
    """A cnn+rf bundle whose network was trained with modality dropout: where the coarse band
    has no data the forest cannot answer, and the map there is the network's."""
    import yaml

    root, store = synth
    cfg = replace(TINY, max_epochs=1, modality_dropout=0.3)
    result, _, cnn_probs = score_result(fit_cnn(store, cfg, progress=False), store)
    fit = fit_pixel_classifier(store, cfg, "rf")
    held = score_ensemble(store, cnn_probs, fit)
    ens = save_ensemble_bundle(result, fit, held, store, tmp_path / "ens", recipe_raw=None)
    cnn = save_cnn_bundle(result, store, tmp_path / "cnn")
    with rasterio.open(root / "b60.tif") as src:
        profile, arr = src.profile, src.read()
    arr[:, :, arr.shape[2] // 2:] = 0  # the east half without coarse data
    profile.update(nodata=0)
    with rasterio.open(tmp_path / "b60half.tif", "w", **profile) as dst:
        dst.write(arr)
    doc = yaml.safe_load((root / "recipe.yaml").read_text())
    doc["data_root"] = str(root)
    doc["modalities"]["coarse"]["bands"][0]["file"] = str(tmp_path / "b60half.tif")
    doc.pop("labels")
    (tmp_path / "half.yaml").write_text(yaml.safe_dump(doc))
    recipe = load_recipe(tmp_path / "half.yaml")
    opts = PredictOptions(device="cpu", threads=1, probabilities="float32", tile_size=96,
                          halo=12)
    predict_recipe(ens, recipe, tmp_path / "m-ens", options=opts)
    predict_recipe(cnn, recipe, tmp_path / "m-cnn", options=opts)
    (p_e, c_e), (p_c, _) = _read(tmp_path / "m-ens"), _read(tmp_path / "m-cnn")
    w = p_e.shape[2]
    east = np.s_[:, :, w // 2 + 24:]  # away from the blended seam of the two halves
    assert (c_e[:, w // 2 + 24:] != store.ignore_value).all()  # mapped from fine and mid
    np.testing.assert_allclose(p_e[east], p_c[east], atol=1e-6)
    west = np.s_[:, :, :w // 2 - 24]
    assert np.abs(p_e[west] - p_c[west]).max() > 1e-3  # the forest joins in where it can
