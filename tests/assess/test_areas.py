"""Error-adjusted area estimates: the published example, hand values, and sampling behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _evaldata import OLOFSSON_COUNTS, OLOFSSON_MAPPED_PX, OLOFSSON_NAMES

from geomm.assess.areas import EstimationError, estimate_areas


def _olofsson():
    return estimate_areas(np.array(OLOFSSON_COUNTS), OLOFSSON_MAPPED_PX, OLOFSSON_NAMES,
                          pixel_area_m2=900.0)


def test_table_9_area_proportions_of_olofsson_2014():
    e = _olofsson()
    table_9 = [[0.0176, 0.0000, 0.0013, 0.0011], [0.0000, 0.0110, 0.0016, 0.0024],
               [0.0019, 0.0000, 0.2967, 0.0213], [0.0040, 0.0020, 0.0179, 0.6212]]
    assert np.round(e.proportions, 4).tolist() == table_9
    assert e.proportions.sum() == pytest.approx(1.0)


def test_deforestation_in_pixels_as_published():
    # Olofsson et al. (2014), section 5.2: 235,086 ± 68,418 pixels of deforestation
    a = _olofsson().area_px[0]
    assert (round(a.value), round(a.ci95)) == (235086, 68418)


def test_a_census_has_no_error():
    # every pixel sampled and the map right everywhere: areas are the mapped ones, SE 0
    counts = np.diag([40, 30, 30])
    e = estimate_areas(counts, [400, 300, 300], ["a", "b", "c"])
    assert [x.value for x in e.area_px] == pytest.approx([400, 300, 300])
    assert [x.se for x in e.area_px] == pytest.approx([0, 0, 0])
    assert e.overall.value == 1.0 and e.overall.se == 0.0


def test_simple_random_design_uses_sample_proportions():
    counts = np.array([[30, 10], [20, 40]])
    e = estimate_areas(counts, [500, 500], ["a", "b"], design="simple")
    # area share of reference class a: (30 + 20) / 100, SE sqrt(p(1-p)/(n-1))
    assert e.area_px[0].value == pytest.approx(500)
    assert e.area_px[0].se == pytest.approx(1000 * math.sqrt(0.25 / 99))
    assert e.users[0].value == pytest.approx(30 / 40)
    assert e.producers[1].value == pytest.approx(40 / 50)
    assert e.overall.value == pytest.approx(0.7)


def test_stratified_and_simple_differ_when_the_sample_is_not_proportional():
    counts = np.array([[45, 5], [10, 40]])  # 50 points in each stratum
    strat = estimate_areas(counts, [9000, 1000], ["a", "b"])
    simple = estimate_areas(counts, [9000, 1000], ["a", "b"], design="simple")
    # weighting by the strata: 0.9 * 45/50 + 0.1 * 10/50 = 0.83 of the area is class a
    assert strat.area_px[0].value == pytest.approx(8300)
    assert simple.area_px[0].value == pytest.approx(5500)


def test_a_map_class_without_sample_cannot_be_estimated():
    with pytest.raises(EstimationError, match="'b' have mapped pixels but no reference"):
        estimate_areas(np.array([[5, 1], [0, 0]]), [100, 50], ["a", "b"])


def test_a_single_sample_stratum_gives_no_standard_error():
    e = estimate_areas(np.array([[5, 1], [0, 1]]), [100, 50], ["a", "b"])
    assert math.isnan(e.area_px[0].se) and math.isnan(e.overall.se)
    assert not math.isnan(e.area_px[0].value)


def test_reference_only_class_gets_an_area_but_no_users_accuracy():
    # class c is never mapped; the reference finds it inside stratum a
    counts = np.array([[8, 0, 2], [0, 10, 0], [0, 0, 0]])
    e = estimate_areas(counts, [1000, 1000, 0], ["a", "b", "c"])
    assert e.area_px[2].value == pytest.approx(200)
    assert math.isnan(e.users[2].value) and e.producers[2].value == 0.0


def test_stratified_estimator_is_unbiased_and_its_intervals_cover():
    """Draw many stratified samples from a known population: the mean estimate is the truth
    and about 95 % of the 95 % intervals hold it."""
    rng = np.random.default_rng(7)
    sizes = np.array([2000, 6000, 12000])
    confusion = np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05], [0.02, 0.08, 0.9]])
    truth = np.concatenate([rng.choice(3, s, p=confusion[k]) for k, s in enumerate(sizes)])
    true_area = np.bincount(truth, minlength=3)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    estimates, covered = [], 0
    runs = 400
    for _ in range(runs):
        counts = np.zeros((3, 3), dtype=np.int64)
        for k in range(3):
            idx = starts[k] + rng.choice(sizes[k], 60, replace=False)
            counts[k] = np.bincount(truth[idx], minlength=3)
        e = estimate_areas(counts, sizes, ["a", "b", "c"]).area_px[0]
        estimates.append(e.value)
        covered += abs(e.value - true_area[0]) <= e.ci95
    assert np.mean(estimates) == pytest.approx(true_area[0], rel=0.03)
    assert 0.90 <= covered / runs <= 0.99
