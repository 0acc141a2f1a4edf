"""The compact random forest of an "rf" bundle: the same predictions, far fewer bytes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from geomm.model.classical import ForestPredictor
from geomm.model.forestcodec import decode_forest, encode_forest


@pytest.fixture(scope="module")
def forest() -> tuple[RandomForestClassifier, np.ndarray]:
    rng = np.random.default_rng(0)
    # reflectance-like float32 features, noisy labels: deep trees with mixed leaves
    X = rng.integers(0, 10000, (6000, 9)).astype(np.float32) * np.float32(1e-4)
    y = ((X[:, 0] + X[:, 3] > 1.0).astype(int) + (X[:, 5] > 0.7) + rng.integers(0, 2, 6000)
         + 3 * (rng.random(6000) < 0.1))
    rf = RandomForestClassifier(n_estimators=20, random_state=0, min_samples_leaf=1,
                                max_features=3).fit(X, y)
    return rf, X


def test_decoded_arrays_are_bit_identical_except_thresholds(forest):
    rf, _ = forest
    pred = ForestPredictor.from_sklearn(rf)
    back = decode_forest(encode_forest(pred), pred.n_features)
    for name in ("left", "right", "leaf", "roots", "classes"):
        np.testing.assert_array_equal(getattr(back, name), getattr(pred, name))
    split = pred.leaf < 0
    np.testing.assert_array_equal(back.feature[split], pred.feature[split])
    np.testing.assert_array_equal(back.leaf_value, pred.leaf_value)
    assert back.consistent()


def test_predictions_are_identical_on_the_thresholds_themselves(forest):
    rf, X = forest
    pred = ForestPredictor.from_sklearn(rf)
    back = decode_forest(encode_forest(pred), pred.n_features)
    # the hardest inputs: float32 values right at and around every threshold
    thr = pred.threshold[pred.leaf < 0].astype(np.float32)
    near = np.concatenate([thr, np.nextafter(thr, np.float32(np.inf)),
                           np.nextafter(thr, np.float32(-np.inf))])
    probe = np.repeat(X[:1], len(near), axis=0)
    probe[:, :] = near[:, None]
    for x in (X, probe):
        np.testing.assert_array_equal(back.predict_proba(x), pred.predict_proba(x))
        np.testing.assert_array_equal(back.predict(x), rf.predict(x))


def test_the_compact_arrays_are_several_times_smaller(forest):
    rf, _ = forest
    pred = ForestPredictor.from_sklearn(rf)
    full = sum(np.asarray(getattr(pred, n)).nbytes for n in pred.ARRAYS)
    compact = sum(a.nbytes for a in encode_forest(pred).values())
    assert compact * 5 < full, (compact, full)


def test_a_damaged_compact_forest_is_refused(forest):
    rf, _ = forest
    arrays = encode_forest(ForestPredictor.from_sklearn(rf))
    arrays["split_right"] = arrays["split_right"][:-1]
    with pytest.raises(ValueError, match="split"):
        decode_forest(arrays, 9)


def test_compiled_walk_equals_the_numpy_walk_and_scikit_learn(forest, monkeypatch):
    """A forest as stored (decoded from the bundle's arrays) is walked by scikit-learn's
    compiled trees: the same probabilities as the numpy walk and as the fitted forest, also
    on the thresholds themselves; without scikit-learn's tree layout the numpy walk answers."""
    rf, X = forest
    back = decode_forest(encode_forest(ForestPredictor.from_sklearn(rf)), X.shape[1])
    rng = np.random.default_rng(1)
    # the stored thresholds themselves, and points on either side of them
    probe = np.concatenate([X, X[rng.permutation(len(X))] * np.float32(1.0000001)])
    assert back._compiled is not None
    fast = back.predict_proba(probe)
    np.testing.assert_array_equal(fast, back.proba_numpy(probe))
    np.testing.assert_allclose(fast, rf.predict_proba(probe), rtol=0, atol=1e-12)
    import geomm.model._sktrees as sk

    monkeypatch.setattr(sk, "sklearn_trees", lambda fp: None)
    plain = decode_forest(encode_forest(ForestPredictor.from_sklearn(rf)), X.shape[1])
    assert plain._compiled is None
    np.testing.assert_array_equal(plain.predict_proba(probe), fast)
