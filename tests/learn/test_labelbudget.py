"""The label-scarce protocol: k labelled regions per class, drawn from the allowed blocks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from geomm.errors import RecipeError
from geomm.learn.labelbudget import polygon_budget_mask


def _regions() -> np.ndarray:
    """Three classes, each in 6 separate 5 x 5 squares; 255 elsewhere."""
    lab = np.full((60, 60), 255, dtype=np.uint8)
    for i in range(6):
        for c in range(3):
            r0, c0 = 10 * i, 20 * c
            lab[r0:r0 + 5, c0:c0 + 5] = c
    return lab


def test_k_regions_per_class_inside_the_allowed_area():
    lab = _regions()
    allowed = np.ones_like(lab, dtype=bool)
    allowed[:20] = False  # the first two rows of squares are test blocks
    m = polygon_budget_mask(lab, allowed, 2, seed=1)
    assert not m[:20].any()
    for c in range(3):
        n = ndimage.label(m & (lab == c))[1]
        assert n == 2 and (m & (lab == c)).sum() == 2 * 25  # whole regions, never parts
    assert (lab[m] != 255).all()


def test_the_draw_is_seeded_and_a_small_class_keeps_what_it_has():
    lab = _regions()
    allowed = np.ones_like(lab, dtype=bool)
    a = polygon_budget_mask(lab, allowed, 3, seed=5)
    assert np.array_equal(a, polygon_budget_mask(lab, allowed, 3, seed=5))
    assert any(not np.array_equal(a, polygon_budget_mask(lab, allowed, 3, seed=s))
               for s in range(6, 12))
    everything = polygon_budget_mask(lab, allowed, 50, seed=0)
    assert np.array_equal(everything, lab != 255)


def test_a_bad_budget_is_refused():
    with pytest.raises(RecipeError, match="polygons_per_class"):
        polygon_budget_mask(_regions(), np.ones((60, 60), bool), 0)



def test_eroded_labels_drop_polygon_edges_but_keep_tiny_polygons():
    from geomm.learn.labelbudget import eroded_labels

    labels = np.full((20, 20), 255, np.uint8)
    labels[2:12, 2:12] = 0      # a 10 x 10 polygon
    labels[2:12, 12:18] = 1     # its neighbour of another class
    labels[15:17, 15:17] = 0    # a 2 x 2 polygon: erosion would empty it
    mask = np.ones_like(labels, bool)
    out = eroded_labels(labels, mask, 1)
    assert out[3:11, 3:11].all() and not out[2, 2:12].any()  # the edge ring goes
    assert not out[3:11, 11].any() and not out[3:11, 12].any()  # both sides of a class border
    assert out[15:17, 15:17].all()  # kept whole
    assert not out[labels == 255].any()
    assert (eroded_labels(labels, mask, 0) == mask).all()
    half = mask.copy()
    half[:, 10:] = False  # only where the mask allows
    assert not (eroded_labels(labels, half, 1) & ~half).any()


def test_automatic_erosion_only_where_it_keeps_most_labels():
    from geomm.learn.labelbudget import auto_eroded_labels

    big = np.full((40, 40), 255, np.uint8)
    big[2:38, 2:20], big[2:38, 20:38] = 0, 1  # large polygons: erosion keeps ~80 %
    out, radius = auto_eroded_labels(big, np.ones_like(big, bool))
    assert radius == 1 and out.sum() < (big != 255).sum()
    small = np.full((40, 40), 255, np.uint8)
    for r in range(2, 38, 6):
        for c in range(2, 38, 6):
            small[r:r + 4, c:c + 4] = (r + c) % 2  # 4 x 4 polygons: erosion keeps 25 %
    mask = np.ones_like(small, bool)
    out, radius = auto_eroded_labels(small, mask)
    assert radius == 0 and (out == mask).all()
