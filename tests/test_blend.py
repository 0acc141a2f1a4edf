"""Windowed blending equals blending the whole scene at once, for any window size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geomm.blend import Blender, TilePlan, edge_weights


def _tile_probs(origin: tuple[int, int], k: int, t: int) -> np.ndarray:
    """Deterministic per-tile 'probabilities' that differ between tiles."""
    rng = np.random.default_rng([origin[0], origin[1]])
    p = rng.random((k, t, t)).astype(np.float32)
    return p / p.sum(axis=0)


def _naive(plan: TilePlan, k: int) -> np.ndarray:
    """Blend every tile into one scene-sized accumulator."""
    t, h, w = plan.tile, plan.height, plan.width
    (tr, tc), s = plan.tiles_shape, plan.stride
    size = ((tr - 1) * s + t, (tc - 1) * s + t)
    acc = np.zeros((k, *size), np.float64)
    wsum = np.zeros(size, np.float64)
    wt = np.outer(edge_weights(t, plan.halo), edge_weights(t, plan.halo))
    for i in range(tr):
        for j in range(tc):
            r, c = i * s, j * s
            acc[:, r:r + t, c:c + t] += _tile_probs((r, c), k, t) * wt
            wsum[r:r + t, c:c + t] += wt
    return (acc / wsum)[:, :h, :w]


def _windowed(plan: TilePlan, k: int) -> np.ndarray:
    out = np.full((k, plan.height, plan.width), np.nan, np.float32)
    b = Blender(plan, k)
    for win in plan.windows():
        b.start(win)
        for o in win.tiles:
            b.add(o, _tile_probs(o, k, plan.tile))
        r0, r1, c0, c1 = win.out
        assert np.isnan(out[:, r0:r1, c0:c1]).all(), "a pixel was written twice"
        out[:, r0:r1, c0:c1] = b.finish()
    return out


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 150), w=st.integers(1, 150), stride=st.integers(1, 6).map(lambda v: 6 * v),
       halo=st.integers(0, 3).map(lambda v: 3 * v), window=st.integers(1, 4))
def test_windowed_blend_equals_whole_scene_blend(h, w, stride, halo, window):
    plan = TilePlan(h, w, stride + 2 * halo, halo, window)
    got = _windowed(plan, 3)
    assert not np.isnan(got).any(), "a pixel was never written"
    np.testing.assert_allclose(got, _naive(plan, 3), rtol=1e-5, atol=1e-6)


def test_window_size_does_not_change_the_result():
    a = _windowed(TilePlan(200, 310, 60, 9, 1), 4)
    b = _windowed(TilePlan(200, 310, 60, 9, 5), 4)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_edge_weights_form_a_partition_of_unity_in_the_overlap():
    t, h = 40, 6
    w = edge_weights(t, h)
    s = t - 2 * h
    both = w[s:] + w[:2 * h]  # falling edge of one tile + rising edge of the next
    np.testing.assert_allclose(both, 1.0, atol=1e-6)
    assert (w > 0).all() and w.max() == 1.0


def test_each_tile_is_planned_once_and_tiles_cover_the_scene():
    plan = TilePlan(1000, 777, 516, 24, 3)
    tiles = [o for win in plan.windows() for o in win.tiles]
    assert len(tiles) == len(set(tiles)) == plan.n_tiles
    covered = np.zeros((1000, 777), bool)
    for r, c in tiles:
        covered[r:r + 516, c:c + 516] = True
    assert covered.all()


def test_bad_plans_are_refused():
    with pytest.raises(ValueError, match="larger than twice the halo"):
        TilePlan(10, 10, 48, 24, 1)
