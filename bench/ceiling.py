"""What limits the sample's OA: can these labels be told apart in this image at all?

    .venv/bin/python bench/ceiling.py split            # forest: random pixels vs 2 km blocks
    .venv/bin/python bench/ceiling.py vote MAPS.npz... # polygon and image-segment majority votes

``split``: a random forest (100 trees, 60 k training pixels, the forest baseline's per-pixel
features) scored on 30 % of the labelled pixels drawn at random, then on 30 % of the 2 km
blocks drawn at random (mean and range of 5 draws each): every class, and farm against
meadow alone. The first is how well the bands
separate the classes where the forest has seen the neighbouring pixels; the second what is
left when it has not (the protocol's case).

``vote``: from class maps that ``bench/tiling.py --save-maps`` saved, the test OA when each
test polygon (connected region of one class) takes its majority class (an oracle: the
polygons are the answer's), and when image segments do (Felzenszwalb at several scales and
SLIC, on standardised B02, B03, B04, B08; needs scikit-image, ``pip install scikit-image``):
how much an object-based map could gain.
"""

from __future__ import annotations

import sys

import numpy as np

DRAWS = 5
"""Random test draws per figure of ``split`` (one draw of blocks moves it by several points)."""


def _store():  # type: ignore[no-untyped-def]
    from geomm.learn.train import recipe_store
    from geomm.recipe import load_recipe

    return recipe_store(load_recipe("s2-landcover"))


def split() -> None:
    from sklearn.ensemble import RandomForestClassifier

    from geomm.learn.baseline import pixel_features

    store = _store()
    names = [c["name"] for c in store.manifest["classes"]["classes"]]
    lab = store.labels()
    valid = np.asarray(store.base()["valid"].values)  # every layer has data there
    rows, cols = np.nonzero((lab != store.ignore_value) & valid)
    x, _ = pixel_features(store, rows_cols=(rows, cols))  # the forest baseline's features
    y = lab[rows, cols]
    block = (rows // 200) * 1000 + cols // 200
    rng = np.random.default_rng(0)
    labelled = np.ones(y.size, bool)

    def oa(sel: np.ndarray, how: str) -> float:
        idx = np.flatnonzero(sel)
        if how == "random":
            test = rng.random(idx.size) < 0.3
        else:
            blocks = np.unique(block[idx])
            test = np.isin(block[idx], rng.choice(blocks, int(0.3 * blocks.size), replace=False))
        train = rng.choice(idx[~test], min(60_000, int((~test).sum())), replace=False)
        rf = RandomForestClassifier(100, min_samples_leaf=2, n_jobs=2, random_state=0)
        rf.fit(x[train], y[train])
        return float((rf.predict(x[idx[test]]) == y[idx[test]]).mean())

    pair = labelled & np.isin(y, [names.index("farm"), names.index("meadow")])
    for how in ("random", "block"):
        every = [oa(labelled, how) for _ in range(DRAWS)]
        two = [oa(pair, how) for _ in range(DRAWS)]
        print(f"{how:6s} pixels, {DRAWS} draws: every class OA {np.mean(every):.3f} "
              f"({min(every):.3f}-{max(every):.3f}), farm vs meadow OA {np.mean(two):.3f} "
              f"({min(two):.3f}-{max(two):.3f})", flush=True)


def _vote(pred: np.ndarray, seg: np.ndarray) -> np.ndarray:
    seg = seg.astype(np.int64)
    ok = pred != 255
    hist = np.zeros((seg.max() + 1, 256), np.int64)
    np.add.at(hist, (seg[ok], pred[ok].astype(np.int64)), 1)
    return hist.argmax(1)[seg]


def vote(paths: list[str]) -> None:
    from scipy import ndimage

    try:
        from skimage.segmentation import felzenszwalb, slic
    except ImportError:
        felzenszwalb = slic = None
    segments = {}
    if felzenszwalb is not None:
        store = _store()
        img = np.concatenate([np.asarray(store.layer("visible/10m").data),
                              np.asarray(store.layer("infrared/10m").data)[:1]]).astype(float)
        img = np.moveaxis(img, 0, -1)
        img = (img - img.reshape(-1, 4).mean(0)) / img.reshape(-1, 4).std(0)
        for scale in (50, 200, 800):
            segments[f"felzenszwalb {scale}"] = felzenszwalb(img, scale=scale, sigma=0.5,
                                                             min_size=20, channel_axis=-1)
        for n in (3000, 12000):
            segments[f"slic {n}"] = slic(img, n_segments=n, compactness=1.0, channel_axis=-1)
    for path in paths:
        z = np.load(path)
        pred, lab = z["pred"], z["labels"]
        test = z["test"] & (lab != 255)

        def oa(m: np.ndarray, lab: np.ndarray = lab, test: np.ndarray = test) -> float:
            return float(((m == lab) & test).sum() / test.sum())

        regions = np.zeros(lab.shape, np.int64)
        for c in np.unique(lab[test]):
            reg, _ = ndimage.label(test & (lab == c), structure=np.ones((3, 3)))
            regions = np.where(reg > 0, reg + regions.max(), regions)
        line = [f"map {oa(pred):.3f}", f"polygon vote (oracle) {oa(_vote(pred, regions)):.3f}"]
        line += [f"{name} {oa(_vote(pred, seg)):.3f}" for name, seg in segments.items()]
        print(f"{path}: " + ", ".join(line), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["split"]:
        split()
    elif sys.argv[1:2] == ["vote"]:
        vote(sys.argv[2:])
    else:
        sys.exit(__doc__)
