"""Store patches as tensors: eligibility, test labels kept out, statistics, aligned augments."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from affine import Affine
from torch.utils.data import DataLoader

from geomm.errors import LabelError, RecipeError
from geomm.learn.dataset import PatchSampler, StorePatchDataset
from geomm.learn.normalize import class_weights, compute_norm_stats
from geomm.learn.split import make_folds
from geomm.model.normstats import NormStats
from geomm.recipe import load_recipe
from geomm.stack.build import stack
from geomm.stack.store import TileStore, open_store

X0, Y0 = 500000.0, 5800000.0
BRIGHT = 60000
# the bright spot: base rows 30:36, cols 42:48 = 20 m pixels 15:18 x 21:24 = 60 m pixel (5, 7)
SPOT = (slice(30, 36), slice(42, 48))


def _build(root: Path, layers: dict[str, tuple[int, np.ndarray, float | None]],
           labels: np.ndarray, values: dict[int, str]) -> TileStore:
    """Write one GeoTIFF per layer and a class raster, stack them, open the store."""
    root.mkdir(exist_ok=True)
    mods = {}
    for name, (res, arr, nodata) in layers.items():
        with rasterio.open(root / f"{name}.tif", "w", driver="GTiff", width=arr.shape[2],
                           height=arr.shape[1], count=arr.shape[0], dtype=arr.dtype,
                           crs="EPSG:32633", transform=Affine(res, 0, X0, 0, -res, Y0)) as dst:
            dst.write(arr)
        mods[name] = {"bands": [{"file": f"{name}.tif", "name": f"{name}{i}", "index": i + 1}
                                for i in range(arr.shape[0])]}
        if nodata is not None:
            mods[name]["nodata"] = nodata
    with rasterio.open(root / "labels.tif", "w", driver="GTiff", width=labels.shape[1],
                       height=labels.shape[0], count=1, dtype=np.uint8, crs="EPSG:32633",
                       transform=Affine(10, 0, X0, 0, -10, Y0)) as dst:
        dst.write(labels[None])
    doc = {"name": "synth", "data_root": ".", "modalities": mods,
           "labels": {"raster": "labels.tif", "values": values},
           "tiling": {"size": 36, "halo": 0}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    stack(load_recipe(root / "recipe.yaml"), out=root / "store")
    return open_store(root / "store")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """72 x 72 px at 10 m: two 10 m bands with a nodata hole, a 20 m and a 60 m band, a bright
    spot at the same place in every layer, classes a/c everywhere and b only on the spot."""
    rng = np.random.default_rng(0)
    vis = rng.integers(100, 5000, (2, 72, 72), dtype=np.uint16)
    vis[0, 60:66, 0:12] = 0  # nodata hole
    ir = rng.integers(100, 5000, (1, 36, 36), dtype=np.uint16)
    ms = rng.integers(100, 5000, (1, 12, 12), dtype=np.uint16)
    vis[:, 30:36, 42:48] = BRIGHT
    ir[:, 15:18, 21:24] = BRIGHT
    ms[:, 5, 7] = BRIGHT
    labels = np.where(rng.random((72, 72)) < 0.7, 0, 2).astype(np.uint8)
    labels[:12, 48:] = 9  # a code no class maps to: unlabelled
    labels[SPOT] = 1
    store = _build(tmp_path_factory.mktemp("scene"), {"vis": (10, vis, 0.0),
                                                      "ir": (20, ir, None),
                                                      "ms": (60, ms, None)},
                   labels, {0: "a", 1: "b", 2: "c"})
    truth = np.where(labels == 9, 255, labels)
    truth[60:66, 0:12] = 255  # invalid base pixels carry no label
    return store, {"vis": vis, "ir": ir, "ms": ms}, truth


@pytest.fixture(scope="module")
def all_class_a(tmp_path_factory):
    """36 x 72 px, one 10 m band, every pixel labelled class 0."""
    img = np.arange(36 * 72, dtype=np.uint16).reshape(1, 36, 72) + 1
    return _build(tmp_path_factory.mktemp("flat"), {"vis": (10, img, None),
                                                    "ms": (60, img[:, ::6, ::6].copy(), None)},
                  np.zeros((36, 72), np.uint8), {0: "a"})


def _stats(store: TileStore) -> NormStats:
    return compute_norm_stats(store, np.ones(store.grid.shape, bool))


def test_patch_size_must_be_whole_pixels_of_every_layer(scene):
    store, _, _ = scene
    allowed = np.ones(store.grid.shape, bool)
    with pytest.raises(RecipeError) as info:
        PatchSampler(store, allowed, 32)
    assert "patch_size 32 is not a multiple of 6" in str(info.value)
    assert "[1, 2, 6]" in str(info.value) and "30 or 36" in str(info.value)
    with pytest.raises(RecipeError, match="not a multiple of 6"):
        StorePatchDataset(store, [(0, 0)], 20, _stats(store), allowed, augment=False)
    with pytest.raises(RecipeError, match="larger than the scene of 72 x 72"):
        PatchSampler(store, allowed, 78)


def test_eligible_patches_hold_enough_labelled_pixels_inside_the_allowed_mask(scene):
    store, _, truth = scene
    allowed = np.zeros((72, 72), bool)
    allowed[:, :30] = True
    usable = allowed & (truth != 255)
    sampler = PatchSampler(store, allowed, 24, min_labelled=1)
    got = {tuple(o) for o in sampler.eligible}
    want = {(r, c) for r in range(0, 49, 6) for c in range(0, 49, 6)
            if usable[r:r + 24, c:c + 24].sum() >= 1}
    assert got == want and all(c < 30 for _, c in got)
    full = PatchSampler(store, allowed, 24, min_labelled=24 * 24)
    assert {tuple(o) for o in full.eligible} == {
        (r, c) for r in range(0, 49, 6) for c in (0, 6) if usable[r:r + 24, c:c + 24].all()}
    assert len(full.eligible) and all(c + 24 <= 30 for _, c in full.eligible)
    a, b = sampler.random(10, seed=1, epoch=0), sampler.random(10, seed=1, epoch=0)
    assert (a == b).all() and not (a == sampler.random(10, seed=1, epoch=1)).all()
    assert {tuple(o) for o in a} <= got
    grid = sampler.grid(stride=24)
    assert {tuple(o) for o in grid} == {o for o in [(r, c) for r in (0, 24, 48)
                                                    for c in (0, 24, 48)] if o in got}
    with pytest.raises(RecipeError, match="stride 10"):
        sampler.grid(stride=10)
    with pytest.raises(LabelError, match="no patch of 24 px"):
        PatchSampler(store, np.zeros((72, 72), bool), 24)


def test_labels_outside_the_allowed_mask_never_reach_the_loss(all_class_a):
    store = all_class_a
    allowed = np.zeros((36, 72), bool)
    allowed[:, :36] = True  # left half only
    ds = StorePatchDataset(store, [(0, 24)], 24, _stats(store), allowed, augment=False)
    item = ds[0]  # columns 24..47: straddles the edge of the allowed half at 36
    assert (item["labels"][:, :12] == 0).all() and (item["labels"][:, 12:] == 255).all()
    assert (item["weight"][:, :12] == 1).all() and (item["weight"][:, 12:] == 0).all()
    assert item["valid"].all()
    img = store.layer("vis/10m")["data"].values[0, :24, 24:48]
    s = ds._norm["vis/10m"]
    np.testing.assert_allclose(item["vis/10m"][0].numpy(), (img - s[0][0]) * s[1][0], rtol=1e-5)


def test_norm_stats_are_masked_valid_pixel_moments_without_nodata(scene):
    store, arrays, _ = scene
    split = make_folds(store.grid, None, block_size=180.0, n_folds=3, seed=0, align=6)
    mask = ~split.fold_mask(0)
    stats = compute_norm_stats(store, mask)
    vis, valid = arrays["vis"].astype(np.float64), (arrays["vis"] != 0).all(axis=0)
    sel = mask & valid
    assert stats["vis/10m"].count == sel.sum() and stats["vis/10m"].bands == ("vis0", "vis1")
    np.testing.assert_allclose(stats["vis/10m"].mean, vis[:, sel].mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(stats["vis/10m"].std, vis[:, sel].std(axis=1), rtol=1e-9)
    assert stats["vis/10m"].mean[0] > vis[0, mask].mean()  # the zeros are left out
    coarse = mask[::6, ::6]  # block edges on the 60 m lattice: whole coarse pixels
    ms = arrays["ms"][0].astype(np.float64)[coarse]
    assert stats["ms/60m"].count == coarse.sum()
    np.testing.assert_allclose((stats["ms/60m"].mean[0], stats["ms/60m"].std[0]),
                               (ms.mean(), ms.std()), rtol=1e-9)
    assert NormStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    with pytest.raises(RecipeError, match="no valid pixel inside the mask"):
        hole = np.zeros((72, 72), bool)
        hole[60:66, 0:12] = True
        compute_norm_stats(store, hole)


def test_class_weights_are_inverse_frequency_to_a_power_with_mean_one(scene):
    store, _, truth = scene
    mask = np.zeros((72, 72), bool)
    mask[:, 24:] = True
    w = class_weights(store, mask, power=0.5)
    n = np.bincount(truth[mask & (truth != 255)], minlength=3)[:3]
    assert (n > 0).all() and w.shape == (3,)
    assert (n * w).sum() / n.sum() == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(np.sqrt(n[0] / n[1]))
    left = np.zeros((72, 72), bool)
    left[:, :12] = True  # no class b here
    assert class_weights(store, left, power=0.5)[1] == 0
    flat = class_weights(store, mask)  # the default: every labelled pixel alike
    assert flat.tolist() == [1.0, 1.0, 1.0]
    assert class_weights(store, left)[1] == 0
    inv = class_weights(store, mask, power=1.0)
    assert inv[1] / inv[0] == pytest.approx(n[0] / n[1])


def test_augmentations_keep_every_layer_aligned(scene):
    store, _, _ = scene
    allowed = np.ones((72, 72), bool)
    w = class_weights(store, allowed, power=0.5)  # classes weigh differently
    ds = StorePatchDataset(store, [(24, 30)] * 24, 24, _stats(store), allowed, augment=True,
                           weights=w, seed=5)
    seen = set()
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            vis = item["vis/10m"][0] == item["vis/10m"][0].max()
            r, c = (int(v.min()) for v in torch.nonzero(vis, as_tuple=True))
            assert vis.sum() == 36 and vis[r:r + 6, c:c + 6].all() and r % 6 == 0 == c % 6
            ir = item["ir/20m"][0] == item["ir/20m"][0].max()
            assert ir.sum() == 9 and ir[r // 2:r // 2 + 3, c // 2:c // 2 + 3].all()
            ms = item["ms/60m"][0]
            assert ms[r // 6, c // 6] == ms.max() and (ms == ms.max()).sum() == 1
            assert ((item["labels"] == 1) == vis).all()
            assert (item["weight"][vis] == float(w[1])).all()
            seen.add((r, c))
    assert len(seen) >= 4  # the augmentations did move the spot around
    again = StorePatchDataset(store, [(24, 30)] * 24, 24, _stats(store), allowed, augment=True,
                              weights=w, seed=5)
    again.set_epoch(1)  # the same seed, epoch and index give the same augmentation
    assert all(torch.equal(again[i]["vis/10m"], ds[i]["vis/10m"]) for i in range(len(ds)))


def test_items_have_native_shapes_and_batch_with_default_collate(scene):
    store, _, truth = scene
    allowed = np.ones((72, 72), bool)
    sampler = PatchSampler(store, allowed, 36)
    ds = StorePatchDataset(store, sampler.grid(), 36, _stats(store), allowed, augment=False)
    assert len(ds) == 4
    item = ds[2]  # rows 36..71, cols 0..35: holds the nodata hole
    assert item["vis/10m"].shape == (2, 36, 36) and item["vis/10m"].dtype == torch.float32
    assert item["ir/20m"].shape == (1, 18, 18) and item["ms/60m"].shape == (1, 6, 6)
    assert item["labels"].dtype == torch.int64 and item["labels"].shape == (36, 36)
    assert item["valid"].dtype == torch.bool and item["weight"].dtype == torch.float32
    assert not item["valid"][24:30, 0:12].any() and item["valid"].sum() == 36 * 36 - 72
    assert (item["vis/10m"][:, 24:30, 0:12] == 0).all()  # invalid: 0 after normalising
    np.testing.assert_array_equal(item["labels"].numpy(), truth[36:, :36])
    tiny = StorePatchDataset(store, sampler.grid(), 36, _stats(store), allowed, augment=False,
                             cache_bytes=1)  # evicts every tile at once: same items
    assert all(torch.equal(tiny[i][k], ds[i][k]) for i in range(4) for k in item)
    batch = next(iter(DataLoader(pickle.loads(pickle.dumps(ds)), batch_size=4)))
    assert batch["vis/10m"].shape == (4, 2, 36, 36) and batch["labels"].shape == (4, 36, 36)
    assert batch["origin"].tolist() == [[0, 0], [0, 36], [36, 0], [36, 36]]


def test_bad_origins_statistics_and_weights_are_refused(scene, all_class_a):
    store, _, _ = scene
    allowed, stats = np.ones((72, 72), bool), _stats(store)
    with pytest.raises(RecipeError, match=r"origin \(3, 0\) is off the 6-px lattice"):
        StorePatchDataset(store, [(0, 0), (3, 0)], 24, stats, allowed, augment=False)
    with pytest.raises(RecipeError, match=r"origin \(0, 54\)"):
        StorePatchDataset(store, [(0, 54)], 24, stats, allowed, augment=False)
    with pytest.raises(RecipeError, match="compute them on this store"):
        StorePatchDataset(store, [(0, 0)], 24, _stats(all_class_a), allowed, augment=False)
    with pytest.raises(RecipeError, match="one per class"):
        StorePatchDataset(store, [(0, 0)], 24, stats, allowed, augment=False,
                          weights=np.ones(2))
    with pytest.raises(RecipeError, match="bool mask of the base grid"):
        StorePatchDataset(store, [(0, 0)], 24, stats, allowed[:, :36], augment=False)
