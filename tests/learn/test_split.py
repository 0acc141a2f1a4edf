"""Spatial folds: whole blocks per fold, deterministic, balanced, masks disjoint and covering."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geomm.errors import RecipeError
from geomm.learn.split import SpatialSplit, block_ids, block_pixels, make_folds, train_val_test
from geomm.stack.grid import GridSpec, to_crs

CRS = to_crs("EPSG:32633")


def grid(height: int, width: int, res: float = 10.0) -> GridSpec:
    return GridSpec(CRS, res, (500000.0, 5800000.0 - height * res, 500000.0 + width * res,
                               5800000.0))


@pytest.fixture
def clustered_labels() -> np.ndarray:
    """Labels in uneven clumps over a 120 x 150 px scene: some blocks full, many empty."""
    rng = np.random.default_rng(3)
    lab = np.zeros((120, 150), dtype=bool)
    for _ in range(25):
        r, c, s = rng.integers(0, 120), rng.integers(0, 150), rng.integers(3, 25)
        lab[r:r + s, c:c + s] = True
    return lab


def test_block_ids_number_blocks_row_by_row_from_the_top_left():
    ids = block_ids(grid(50, 70), 200.0)  # 20 px blocks: 3 rows x 4 cols, edges cut short
    assert ids.shape == (50, 70) and ids.dtype == np.int32
    assert ids[0, 0] == 0 and ids[0, 19] == 0 and ids[0, 20] == 1 and ids[0, 69] == 3
    assert ids[20, 0] == 4 and ids[49, 69] == 11
    assert np.bincount(ids.ravel()).tolist() == [400, 400, 400, 200] * 2 + [200, 200, 200, 100]


def test_align_snaps_block_edges_to_whole_coarse_pixels():
    g = grid(72, 72)
    assert block_pixels(g, 200.0) == 20 and block_pixels(g, 200.0, align=6) == 18
    assert block_pixels(g, 10.0, align=6) == 6  # never smaller than one coarse pixel
    ids = block_ids(g, 200.0, align=6)
    edges = np.flatnonzero(np.diff(ids[0])) + 1
    assert edges.tolist() == [18, 36, 54]
    # every 6 x 6 coarse pixel lies inside one block
    assert (ids.reshape(12, 6, 12, 6).max(axis=(1, 3)) ==
            ids.reshape(12, 6, 12, 6).min(axis=(1, 3))).all()


def test_folds_are_deterministic_for_a_seed_and_balanced(clustered_labels):
    g = grid(120, 150)
    a = make_folds(g, clustered_labels, block_size=150.0, n_folds=5, seed=7)
    b = make_folds(g, clustered_labels, block_size=150.0, n_folds=5, seed=7)
    assert a == b
    others = {make_folds(g, clustered_labels, block_size=150.0, seed=s).fold_of_block
              for s in range(6)}
    assert len(others) > 1  # the seed does break ties
    per_fold = [int(clustered_labels[a.fold_mask(f)].sum()) for f in range(5)]
    assert per_fold == list(a.labelled_per_fold)
    total = int(clustered_labels.sum())
    assert sum(per_fold) == total
    assert max(per_fold) - min(per_fold) < 0.05 * total  # greedy balance, 80 blocks
    blocks = np.bincount(a.fold_of_block, minlength=5)
    assert blocks.max() - blocks.min() <= 2  # empty blocks are dealt out too


def test_fold_masks_hold_whole_blocks(clustered_labels):
    g = grid(120, 150)
    split = make_folds(g, clustered_labels, block_size=150.0, n_folds=4, seed=1, align=6)
    ids, folds = block_ids(g, 150.0, align=6), split.fold_map()
    for b in np.unique(ids):
        assert len(np.unique(folds[ids == b])) == 1
    assert folds.shape == (120, 150) and set(np.unique(folds)) == {0, 1, 2, 3}


def test_train_val_test_are_disjoint_and_cover_the_scene(clustered_labels):
    split = make_folds(grid(120, 150), clustered_labels, block_size=150.0, n_folds=5)
    train, val, test = train_val_test(split, test_fold=4)
    assert (train.astype(int) + val + test == 1).all()
    assert (test == split.fold_mask(4)).all() and (val == split.fold_mask(0)).all()
    _, val2, _ = train_val_test(split, 1, val_fold=3)
    assert (val2 == split.fold_mask(3)).all()
    assert clustered_labels[train].sum() > 2 * clustered_labels[test].sum()


def test_round_trip_through_json(clustered_labels):
    split = make_folds(grid(120, 150), clustered_labels, block_size=150.0, n_folds=3, seed=2)
    again = SpatialSplit.from_dict(json.loads(json.dumps(split.to_dict())))
    assert again == split
    doc = split.to_dict()
    with pytest.raises(RecipeError, match="does not fit its grid"):
        SpatialSplit.from_dict({**doc, "shape": [240, 150]})
    with pytest.raises(RecipeError, match="fold_of_block"):
        SpatialSplit.from_dict({k: v for k, v in doc.items() if k != "fold_of_block"})


@pytest.mark.parametrize("kwargs,words", [
    ({"block_size": 2000.0, "n_folds": 5}, ["holds 1 blocks of 2000", "smaller block_size",
                                            "fewer folds"]),
    ({"block_size": 400.0, "n_folds": 1}, ["n_folds 1", ">= 2"]),
    ({"block_size": -5.0}, ["block_size -5", "positive"]),
])
def test_bad_fold_requests_say_how_to_fix_them(kwargs, words):
    with pytest.raises(RecipeError) as info:
        make_folds(grid(120, 150), None, **kwargs)
    assert all(w in str(info.value) for w in words), str(info.value)


def test_a_scene_in_degrees_is_told_to_use_a_projected_grid():
    deg = GridSpec(to_crs("EPSG:4326"), 0.0001, (13.0, 52.0, 13.015, 52.012))
    with pytest.raises(RecipeError) as info:
        make_folds(deg, None, block_size=2000.0)
    msg = str(info.value)
    assert "geographic" in msg and "grid: {crs:" in msg and "smaller block_size" not in msg


def test_too_few_labelled_blocks_and_bad_masks_are_refused():
    g = grid(120, 150)
    lab = np.zeros((120, 150), dtype=bool)
    lab[:10, :10] = True
    with pytest.raises(RecipeError, match="only 1 of the 80 blocks"):
        make_folds(g, lab, block_size=150.0)
    with pytest.raises(RecipeError, match="bool mask of shape"):
        make_folds(g, lab.astype(np.uint8), block_size=150.0)
    split = make_folds(g, None, block_size=150.0, n_folds=2)
    with pytest.raises(RecipeError, match="at least 3 folds"):
        train_val_test(split, 0)
    split = make_folds(g, None, block_size=150.0, n_folds=3)
    with pytest.raises(RecipeError, match="both 1"):
        train_val_test(split, 1, val_fold=1)
    with pytest.raises(RecipeError, match="test_fold 3 does not exist"):
        train_val_test(split, 3)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(6, 90), w=st.integers(6, 90), side=st.integers(1, 40),
       folds=st.integers(2, 4), seed=st.integers(0, 9))
def test_every_pixel_is_in_exactly_one_fold(h, w, side, folds, seed):
    g = grid(h, w)
    n_blocks = -(-h // side) * -(-w // side)
    if n_blocks < folds:
        with pytest.raises(RecipeError, match="smaller block_size"):
            make_folds(g, None, block_size=side * 10.0, n_folds=folds, seed=seed)
        return
    split = make_folds(g, None, block_size=side * 10.0, n_folds=folds, seed=seed)
    stacked = np.stack([split.fold_mask(f) for f in range(folds)])
    assert (stacked.sum(axis=0) == 1).all()
    assert all(stacked[f].any() for f in range(folds))


def test_class_balanced_folds_spread_a_rare_class_over_the_folds():
    """A rare class in a few blocks lands in as many folds as it has blocks (up to all)."""
    g = grid(120, 150)
    labels = np.full((120, 150), 255, dtype=np.uint8)
    labels[:, :] = 0  # a common class everywhere
    rare_blocks = [(0, 0), (0, 2), (3, 4), (5, 8), (7, 1)]  # 15 px blocks (150 m)
    for r, c in rare_blocks:
        labels[r * 15:r * 15 + 4, c * 15:c * 15 + 4] = 1
    split = make_folds(g, labels != 255, block_size=150.0, n_folds=5, seed=0,
                       class_labels=labels)
    folds = split.fold_map()
    rare_folds = {int(folds[r * 15, c * 15]) for r, c in rare_blocks}
    assert rare_folds == set(range(5))
    per_fold = np.bincount(folds[labels != 255].ravel(), minlength=5)
    assert per_fold.max() - per_fold.min() <= 0.1 * per_fold.sum()
    assert make_folds(g, labels != 255, block_size=150.0, n_folds=5, seed=0,
                      class_labels=labels) == split
