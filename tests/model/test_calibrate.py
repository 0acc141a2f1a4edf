"""Temperature scaling and the expected calibration error."""

from __future__ import annotations

import numpy as np

from geomm.model.calibrate import expected_calibration_error, fit_temperature, temper


def _overconfident(n: int = 20000, k: int = 4, seed: int = 0):
    """Logits whose true temperature is 3: softmax(z) is over-confident, softmax(z/3) is not."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, (n, k)) * 3.0
    true_p = np.exp(z / 3.0)
    true_p /= true_p.sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(k, p=p) for p in true_p])
    over = np.exp(z)
    over /= over.sum(axis=1, keepdims=True)
    return over, labels


def test_temperature_recovers_the_true_scale_and_lowers_the_ece():
    probs, labels = _overconfident()
    t = fit_temperature(probs, labels)
    assert 2.6 < t < 3.4
    before = expected_calibration_error(probs, labels)
    after = expected_calibration_error(temper(probs, t), labels)
    assert before > 0.1 and after < 0.02


def test_tempering_keeps_the_class_and_sums_to_one():
    probs, _ = _overconfident(500)
    p = temper(probs, 2.0)
    assert np.array_equal(p.argmax(1), probs.argmax(1))
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(temper(probs, 1.0), probs, atol=1e-5)


def test_a_perfectly_calibrated_model_has_a_small_ece():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, 50000)
    right = rng.uniform(size=conf.size) < conf
    probs = np.stack([conf, 1 - conf], axis=1)
    labels = np.where(right, 0, 1)
    assert expected_calibration_error(probs, labels) < 0.01
    assert np.isnan(expected_calibration_error(probs[:0], labels[:0]))
