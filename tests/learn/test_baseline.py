"""geomm.learn.baseline: per-pixel features, a forest / SVM baseline, and its pickle-free bundle."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from shapely.geometry import box
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from geomm.learn.baseline import (
    ForestPredictor,
    PixelSelectionError,
    SVMPredictor,
    fit_classifier,
    pixel_features,
    predict_pixels,
    sample_training_pixels,
    save_classifier,
)
from geomm.model.bundle import BundleError, BundleMismatchError, load_bundle, save_bundle
from geomm.model.classicalbundle import classifier_from_bundle
from geomm.recipe import load_recipe
from geomm.stack.build import stack
from geomm.stack.store import open_store

X0, Y0 = 500000.0, 5800000.0
EDGES = (0, 36, 72, 120)  # class column ranges, on the 60 m grid too


def _write(path, arr, res, nodata=None):
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype=arr.dtype, crs="EPSG:32633", nodata=nodata,
                       transform=Affine(res, 0, X0, 0, -res, Y0)) as dst:
        dst.write(arr[None])


def _by_class(shape, factor, rng, spread):
    """Each class's columns get mean 1000 * (class + 1) plus noise."""
    out = np.zeros(shape, np.uint16)
    for c, (a, b) in enumerate(zip(EDGES[:-1], EDGES[1:], strict=True)):
        sl = np.s_[:, a // factor:b // factor]
        out[sl] = 1000 * (c + 1) + rng.normal(0, spread, out[sl].shape)
    return out


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """120 x 120 px at 10 m: bands at 10/20/60 m that separate three column-strip classes,
    a nodata hole in the 10 m band, scale/offset on the 60 m one."""
    root = tmp_path_factory.mktemp("baseline")
    rng = np.random.default_rng(7)
    b10 = _by_class((120, 120), 1, rng, 250)
    b10[10:15, 10:15] = 0
    arrays = {"b10": b10, "b20": _by_class((60, 60), 2, rng, 250),
              "c60": _by_class((20, 20), 6, rng, 100)}
    for name, res in (("b10", 10), ("b20", 20), ("c60", 60)):
        _write(root / f"{name}.tif", arrays[name], res, nodata=0 if name == "b10" else None)
    polys = [box(X0 + 10 * a, Y0 - 1140, X0 + 10 * b, Y0 - 60)
             for a, b in zip(EDGES[:-1], EDGES[1:], strict=True)]
    gpd.GeoDataFrame({"cls": ["crop", "forest", "water"]}, geometry=polys,
                     crs="EPSG:32633").to_file(root / "labels.gpkg")
    doc = {"name": "synth-baseline", "data_root": ".",
           "modalities": {"optical": {"nodata": 0, "bands": [
               {"file": "b10.tif", "name": "B1"}, {"file": "b20.tif", "name": "B2"}]},
               "coarse": {"file": "{band}.tif", "bands": ["c60"], "scale": 0.5,
                          "offset": 10.0}},
           "labels": {"vector": "labels.gpkg", "class_column": "cls"},
           "tiling": {"size": 60, "halo": 0}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    stack(load_recipe(root / "recipe.yaml"), out=root / "store")
    return open_store(root / "store"), arrays


def test_features_are_physical_values_on_the_base_grid_without_nodata(scene):
    store, arrays = scene
    X, names = pixel_features(store)
    assert names == ["optical/10m:B1", "optical/20m:B2", "coarse/60m:c60"]
    assert X.dtype == np.float32 and X.shape == (120 * 120 - 25, 3)  # the hole is left out
    rows, cols = np.nonzero(arrays["b10"] > 0)  # raster order, as documented
    np.testing.assert_array_equal(X[:, 0], arrays["b10"][rows, cols])
    np.testing.assert_array_equal(X[:, 1], arrays["b20"][rows // 2, cols // 2])
    np.testing.assert_allclose(X[:, 2], arrays["c60"][rows // 6, cols // 6] * 0.5 + 10.0)
    pick = (np.array([119, 0, 59, 60, 7]), np.array([3, 119, 100, 0, 50]))
    Xp, _ = pixel_features(store, rows_cols=pick, layers=["coarse/60m", "optical/10m"])
    np.testing.assert_array_equal(Xp[:, 1], arrays["b10"][pick])  # the caller's order
    np.testing.assert_allclose(Xp[:, 0], arrays["c60"][pick[0] // 6, pick[1] // 6] * 0.5 + 10)
    with pytest.raises(PixelSelectionError, match="nodata"):
        pixel_features(store, rows_cols=(np.array([12]), np.array([12])))
    with pytest.raises(PixelSelectionError, match="does not match the base grid"):
        pixel_features(store, np.ones((10, 10), bool))


def test_training_pixels_are_balanced_labelled_and_inside_the_mask(scene):
    store, _ = scene
    train = np.zeros((120, 120), bool)
    train[:60] = True
    s = sample_training_pixels(store, train, max_per_class=2000, seed=3)
    labels = store.base()["labels"].values
    assert (s.rows < 60).all() and (labels[s.rows, s.cols] == s.labels).all()
    # labelled valid pixels in the top half: crop 36 x 54 less the hole, forest 36 x 54 (all
    # taken), water 48 x 54 (capped)
    assert np.bincount(s.labels).tolist() == [36 * 54 - 25, 36 * 54, 2000]
    assert len(set(zip(s.rows.tolist(), s.cols.tolist(), strict=True))) == len(s.rows)
    again = sample_training_pixels(store, train, max_per_class=2000, seed=3)
    assert np.array_equal(s.rows, again.rows) and np.array_equal(s.cols, again.cols)


@pytest.mark.parametrize("kind", ["rf", "svm"])
def test_baseline_separates_classes_and_its_bundle_predicts_identically(scene, tmp_path, kind):
    store, _ = scene
    top = np.zeros((120, 120), bool)
    top[:60] = True
    s = sample_training_pixels(store, top, max_per_class=800)
    X, _ = pixel_features(store, rows_cols=(s.rows, s.cols))
    model = fit_classifier(kind, X, s.labels, n_estimators=15, svm_max_samples=1500)
    pred = predict_pixels(model, store, ~top)
    labels = store.base()["labels"].values
    held = ~top & (labels != 255) & store.base()["valid"].values
    assert held.sum() > 5000 and (pred[held] == labels[held]).mean() >= 0.95
    assert (pred[top] == 255).all()
    path = save_classifier(tmp_path / "b", model, store, split={"train": "top half"})
    bundle = load_bundle(path)
    assert bundle.kind == kind and bundle.meta.split == {"train": "top half"}
    assert bundle.meta.layer_keys == store.layer_keys
    assert not any(p.suffix in (".pkl", ".joblib") for p in path.iterdir())
    np.testing.assert_array_equal(predict_pixels(bundle, store, ~top), pred)


def test_bundle_with_edited_feature_count_is_refused(scene, tmp_path):
    store, _ = scene
    s = sample_training_pixels(store, None, max_per_class=200)
    X, _ = pixel_features(store, rows_cols=(s.rows, s.cols))
    path = save_classifier(tmp_path / "rf", fit_classifier("rf", X, s.labels, n_estimators=3),
                           store)
    doc = json.loads((path / "bundle.json").read_text())
    doc["layers"][2]["bands"].append("c61")
    (path / "bundle.json").write_text(json.dumps(doc))
    bundle = load_bundle(path)
    with pytest.raises(BundleError, match="takes 3 features but bundle.json lists 4 bands"):
        classifier_from_bundle(bundle)
    with pytest.raises(BundleMismatchError, match="'coarse/60m' has 2 band"):
        predict_pixels(bundle, store)


def _tabular(rng, n, n_classes, integer=False):
    X = rng.normal(size=(n, 5)).astype(np.float32)
    if integer:  # repeated values put samples exactly on split thresholds
        X = np.round(X * 3).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 0.3) * (n_classes - 2)
    return X, np.array([1, 3, 4, 6])[y] if n_classes > 2 else y


@pytest.mark.parametrize("integer", [False, True])
def test_forest_from_arrays_matches_sklearn_predict_proba(integer):
    rng = np.random.default_rng(0)
    X, y = _tabular(rng, 1500, 4, integer)
    forest = RandomForestClassifier(n_estimators=25, random_state=0, n_jobs=1,
                                    min_samples_leaf=2).fit(X[:1000], y[:1000])
    pred = ForestPredictor.from_sklearn(forest)
    np.testing.assert_allclose(pred.predict_proba(X[1000:]), forest.predict_proba(X[1000:]),
                               atol=1e-6, rtol=0)
    np.testing.assert_array_equal(pred.predict(X[1000:]), forest.predict(X[1000:]))
    assert set(pred.classes.tolist()) == {1, 3, 4, 6}


@pytest.mark.parametrize("n_classes,kernel,scaled", [(4, "rbf", True), (2, "rbf", True),
                                                     (4, "linear", False)])
def test_svm_from_arrays_matches_sklearn_predict(n_classes, kernel, scaled):
    rng = np.random.default_rng(1)
    X, y = _tabular(rng, 1600, n_classes)
    if scaled:
        X[:, 3] *= 1000  # a feature on another scale: the scaler matters
    svc = SVC(kernel=kernel, gamma="scale", C=3.0)
    model = make_pipeline(StandardScaler(), svc) if scaled else svc
    model.fit(X[:600], y[:600])
    pred = SVMPredictor.from_sklearn(model)
    test = X[600:]
    np.testing.assert_array_equal(pred.predict(test), model.predict(test))
    np.testing.assert_allclose(pred.decision_function(test), model.decision_function(test),
                               atol=1e-8)
    proba = pred.predict_proba(test)
    assert proba.shape == (1000, n_classes) and np.allclose(proba.sum(axis=1), 1.0)


def _small_forest(store, tmp_path):  # type: ignore[no-untyped-def]
    """Pixels X, a 2-tree forest fitted on them, and its bundle, loaded."""
    s = sample_training_pixels(store, None, max_per_class=200)
    X, _ = pixel_features(store, rows_cols=(s.rows, s.cols))
    model = fit_classifier("rf", X, s.labels, n_estimators=2)
    return X, model, load_bundle(save_classifier(tmp_path / "rf", model, store))


def test_forest_arrays_that_would_loop_are_refused(scene, tmp_path):
    store, _ = scene
    X, model, good = _small_forest(store, tmp_path)
    np.testing.assert_array_equal(classifier_from_bundle(good).predict(X), model.predict(X))
    right = np.array(good.tensors["split_right"])
    right[0] = 0  # the root's right child is the root itself: a walk that never ends
    bad = save_bundle(tmp_path / "bad", kind="rf", meta=good.meta,
                      tensors={**good.tensors, "split_right": right})
    with pytest.raises(BundleError, match="rf arrays disagree"):
        classifier_from_bundle(load_bundle(bad))


def test_a_bundle_of_full_forest_arrays_still_loads(scene, tmp_path):
    from geomm.model.classical import ForestPredictor

    store, _ = scene
    X, model, good = _small_forest(store, tmp_path)
    pred = ForestPredictor.from_sklearn(model)
    old = save_bundle(tmp_path / "old", kind="rf", meta=good.meta,
                      tensors={n: np.asarray(getattr(pred, n)) for n in pred.ARRAYS})
    np.testing.assert_array_equal(classifier_from_bundle(load_bundle(old)).predict(X),
                                  model.predict(X))
