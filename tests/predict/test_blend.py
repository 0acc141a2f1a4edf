"""Windowed blending equals blending the whole scene at once, for any window size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geomm.predict.blend import Blender, TilePlan, edge_weights


def _tile_probs(origin: tuple[int, int], k: int, t: tuple[int, int]) -> np.ndarray:
    """Deterministic per-tile 'probabilities' that differ between tiles."""
    rng = np.random.default_rng([origin[0], origin[1]])
    p = rng.random((k, *t)).astype(np.float32)
    return p / p.sum(axis=0)


def _naive(plan: TilePlan, k: int) -> np.ndarray:
    """Blend every tile into one scene-sized accumulator."""
    (ty, tx), h, w = plan.tile, plan.height, plan.width
    (tr, tc), (sy, sx) = plan.tiles_shape, plan.stride
    size = ((tr - 1) * sy + ty, (tc - 1) * sx + tx)
    acc = np.zeros((k, *size), np.float64)
    wsum = np.zeros(size, np.float64)
    for i in range(tr):
        for j in range(tc):
            r, c = i * sy, j * sx
            wt = np.outer(edge_weights(ty, plan.halo, open_start=i == 0, open_end=r + ty >= h),
                          edge_weights(tx, plan.halo, open_start=j == 0, open_end=c + tx >= w))
            acc[:, r:r + ty, c:c + tx] += _tile_probs((r, c), k, (ty, tx)) * wt
            wsum[r:r + ty, c:c + tx] += wt
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
@given(h=st.integers(1, 150), w=st.integers(1, 150), sy=st.integers(1, 6).map(lambda v: 6 * v),
       sx=st.integers(1, 6).map(lambda v: 6 * v), halo=st.integers(0, 3).map(lambda v: 3 * v),
       window=st.integers(1, 4))
def test_windowed_blend_equals_whole_scene_blend(h, w, sy, sx, halo, window):
    plan = TilePlan(h, w, (sy + 2 * halo, sx + 2 * halo), halo, window)
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
    assert (w[:h // 2] == 0).all() and (w[h // 2:2 * h] > 0).all() and w.max() == 1.0
    assert (edge_weights(t, h, open_start=True)[:2 * h] == 1).all()


def test_every_scene_pixel_gets_weight():
    plan = TilePlan(131, 97, 40, 8, 2)
    wsum = np.zeros((131 + 40, 97 + 40))
    for win in plan.windows():
        for r, c in win.tiles:
            wsum[r:r + 40, c:c + 40] += plan.weights((r, c))
    assert (wsum[:131, :97] > 0.99).all()


def test_each_tile_is_planned_once_and_tiles_cover_the_scene():
    plan = TilePlan(1000, 777, 516, 24, 3)
    tiles = [o for win in plan.windows() for o in win.tiles]
    assert len(tiles) == len(set(tiles)) == plan.n_tiles
    covered = np.zeros((1000, 777), bool)
    for r, c in tiles:
        covered[r:r + 516, c:c + 516] = True
    assert covered.all()


def test_planned_tiles_end_at_the_scene_edge():
    from geomm.predict.scene import STRIDE_SLACK, PredictOptions, plan_tiles

    for h, w in ((768, 1536), (3072, 6144), (1000, 777), (204, 276)):
        for size in (256, 512, 768):
            plan = plan_tiles(h, w, 12, PredictOptions(tile_size=size, halo=48))
            assert all(v % 12 == 0 for v in (*plan.stride, plan.halo))
            assert max(plan.stride) <= STRIDE_SLACK * (size - 96) + 12
            (tr, tc), (sy, sx) = plan.tiles_shape, plan.stride
            over = ((tr - 1) * sy + plan.tile[0] - h, (tc - 1) * sx + plan.tile[1] - w)
            assert 0 <= over[0] < 12 * tr and 0 <= over[1] < 12 * tc, (h, w, size, plan)


def test_the_planner_prefers_tiles_that_end_exactly_at_the_edge():
    from geomm.predict.scene import PredictOptions, plan_tiles

    # the real sample (768 x 1536): a 256 request fits 4 x 10 strides of 168 x 144 exactly,
    # rather than 5 strides of 144 rows ending 48 px past the edge
    plan = plan_tiles(768, 1536, 12, PredictOptions(tile_size=256, halo=48))
    assert plan.stride == (168, 144) and plan.tiles_shape == (4, 10)


def test_bad_plans_are_refused():
    with pytest.raises(ValueError, match="larger than twice the halo"):
        TilePlan(10, 10, 48, 24, 1)
