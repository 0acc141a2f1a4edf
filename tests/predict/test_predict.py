"""geomm predict: streamed tiles, blended seams, COG outputs read back, bad inputs refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from synthetic import LAYERS, NAMES, H, W, cnn_bundle, write_band, write_scene

from geomm.classes import ClassTable
from geomm.modality import BandSpec, ModalitySpec
from geomm.model.bundle import BundleMeta, BundleMismatchError, save_bundle
from geomm.model.network import MultiBranchNet
from geomm.predict.scene import OUTPUTS, PredictError, PredictOptions, predict_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_scene(tmp_path_factory.mktemp("scene"))


def _mods(scene, *, radar: bool = True, names=("A", "B")) -> list[ModalitySpec]:
    mods = [ModalitySpec("optical", (BandSpec(scene["a"], names[0]),
                                     BandSpec(scene["b"], names[1])))]
    if radar:
        mods.append(ModalitySpec("radar", (BandSpec(scene["r"], "VV"),)))
    return mods


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return cnn_bundle(tmp_path_factory.mktemp("b") / "cnn")


def _classes(out: Path) -> np.ndarray:
    with rasterio.open(out / "classes.tif") as src:
        return src.read(1)


def _opts(**kw) -> PredictOptions:
    return PredictOptions(**{"device": "cpu", "threads": 1, **kw})


def test_outputs_are_valid_cogs_with_metadata_on_the_base_grid(scene, bundle, tmp_path):
    out = tmp_path / "map"
    s = predict_scene(bundle, _mods(scene), out, options=_opts(tile_size=96, halo=12,
                                                               window=150))
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)  # no work folder left
    with rasterio.open(scene["a"]) as ref:
        crs, transform = ref.crs, ref.transform
    for name, count, dtype in (("classes.tif", 1, "uint8"), ("probabilities.tif", 3, "uint8"),
                               ("confidence.tif", 1, "uint8")):
        with rasterio.open(out / name) as src:
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG", name
            assert (src.count, src.dtypes[0], src.shape) == (count, dtype, (H, W))
            assert src.crs == crs and src.transform == transform
            assert src.block_shapes[0] == (512, 512) or max(H, W) <= 512
    with rasterio.open(out / "classes.tif") as src:
        assert src.nodata == 255 and src.descriptions == ("class",)
        assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
        cmap = src.colormap(1)
        table = ClassTable.from_names(NAMES)
        assert [cmap[i][:3] for i in range(3)] == [tuple(c) for c in table.colours]
        assert src.tags(1) == {f"class_{i}": n for i, n in enumerate(NAMES)}
        assert json.loads(src.tags()["GEOMM_CLASSES"])["classes"][1]["name"] == "forest"
        classes = src.read(1)
    with rasterio.open(out / "probabilities.tif") as src:
        assert src.descriptions == NAMES
        p = src.read().astype(int)
    assert set(np.unique(classes)) <= {0, 1, 2}
    assert (p.sum(axis=0) == 255).all()  # uint8 probabilities sum to 255, exactly
    assert (np.argmax(p, axis=0) == classes).mean() > 0.99
    item = json.loads((out / "item.json").read_text())
    assert item["properties"]["proj:code"] == "EPSG:32633"
    assert item["assets"]["classes"]["href"] == "./classes.tif"
    assert s.scene_px == H * W and s.tiles_run == s.tiles


def test_overviews_are_the_mode_of_the_classes(tmp_path):
    big = tmp_path / "big"
    # a scene larger than one COG block, so that the class map gets overviews
    y, x = np.mgrid[0:1100, 0:600]
    arr = ((x // 37 + y // 53) % 3 * 1000 + 200).astype(np.uint16)
    a, b = write_band(tmp_path / "a.tif", arr, 10), write_band(tmp_path / "b.tif", arr[::-1], 10)
    optical_only = [ModalitySpec("optical", (BandSpec(a, "A"), BandSpec(b, "B")))]
    with pytest.warns(UserWarning, match="predicting without radar; the model was trained "
                                         "with modality dropout 0.3"):
        out = predict_scene(cnn_bundle(tmp_path / "drop", dropout=0.3), optical_only, big,
                            options=_opts(tile_size=192, halo=12))
    with rasterio.open(big / "classes.tif") as src:
        assert src.overviews(1) == [2, 4]
        full = src.read(1)
        ov = src.read(1, out_shape=(1, 550, 300))  # overview level 2
    blocks = full.reshape(550, 2, 300, 2).transpose(0, 2, 1, 3).reshape(550, 300, 4)
    counts = np.stack([(blocks == k).sum(-1) for k in range(3)])
    mode = counts.argmax(0)
    clear = np.sort(counts, axis=0)[-1] > np.sort(counts, axis=0)[-2]  # no tie
    assert (ov[clear] == mode[clear]).all()
    assert out.missing == ("radar",)


def test_tile_size_leaves_no_seams(scene, bundle, tmp_path):
    small = predict_scene(bundle, _mods(scene), tmp_path / "s",
                          options=_opts(tile_size=64, halo=12, window=100))
    large = predict_scene(bundle, _mods(scene), tmp_path / "l",
                          options=_opts(tile_size=128, halo=12))
    whole = predict_scene(bundle, _mods(scene), tmp_path / "w",
                          options=_opts(tile_size=400, halo=0))
    assert whole.tiles == 1 and small.tiles > large.tiles > 1
    a, b, c = (_classes(tmp_path / n) for n in ("s", "l", "w"))
    assert (a == b).mean() >= 0.995
    assert (a == c).mean() >= 0.995 and (b == c).mean() >= 0.995


def test_mismatched_bundle_is_refused_and_nothing_is_written(scene, bundle, tmp_path):
    out = tmp_path / "m"
    with pytest.raises(BundleMismatchError, match="optical/10m"):
        predict_scene(bundle, _mods(scene, names=("A", "X")), out, options=_opts())
    assert not out.exists() or not any(out.iterdir())


def test_missing_modality_needs_dropout_or_an_explicit_flag(scene, bundle, tmp_path):
    with pytest.raises(BundleMismatchError, match="--missing radar"):
        predict_scene(bundle, _mods(scene, radar=False), tmp_path / "x", options=_opts())
    with pytest.warns(UserWarning, match="WITHOUT modality dropout"):
        s = predict_scene(bundle, _mods(scene, radar=False), tmp_path / "y",
                          options=_opts(missing=("radar",)))
    assert s.missing == ("radar",) and (_classes(tmp_path / "y") != 255).all()
    item = json.loads((tmp_path / "y" / "item.json").read_text())
    assert item["properties"]["geomm:missing_modalities"] == ["radar"]
    with pytest.raises(BundleMismatchError, match=r"--missing leaves out \['optical'\], the "
                                                  r"ones the inputs have"):
        predict_scene(bundle, _mods(scene, radar=False), tmp_path / "z",
                      options=_opts(missing=("radar", "optical")))


def test_a_smaller_radar_footprint_is_mapped_from_the_optical_bands(scene, tmp_path):
    """Trained with modality dropout, the map covers where any modality has data."""
    r = rasterio.open(scene["r"]).read(1)
    r[:, r.shape[1] // 2:] = -1.0  # the radar band covers the western half only
    half = write_band(tmp_path / "VV_half.tif", r, 20, nodata=-1.0)
    mods = [ModalitySpec("optical", (BandSpec(scene["a"], "A"), BandSpec(scene["b"], "B"))),
            ModalitySpec("radar", (BandSpec(half, "VV"),))]
    with_dropout = cnn_bundle(tmp_path / "drop", dropout=0.3)
    predict_scene(with_dropout, mods, tmp_path / "partial", options=_opts())
    classes = _classes(tmp_path / "partial")
    assert (classes != 255).all()  # the eastern half too, from the optical bands
    full = tmp_path / "full"
    predict_scene(with_dropout, _mods(scene), full, options=_opts())
    west = slice(0, W // 2 - 48)  # away from the edge of the radar data (context)
    assert (classes[:, west] == _classes(full)[:, west]).mean() > 0.99
    no_dropout = cnn_bundle(tmp_path / "nodrop", dropout=0.0)
    predict_scene(no_dropout, mods, tmp_path / "strict", options=_opts())
    strict = _classes(tmp_path / "strict")
    assert (strict[:, W // 2 + 2:] == 255).all() and (strict[:, :W // 2 - 2] != 255).all()


def test_the_bundle_temperature_rescales_the_probabilities_not_the_classes(scene, tmp_path):
    from geomm.model.calibrate import temper

    def probs(out: Path) -> np.ndarray:
        with rasterio.open(out / "probabilities.tif") as src:
            return src.read()

    plain = cnn_bundle(tmp_path / "t1", seed=4)
    hot = cnn_bundle(tmp_path / "t3", seed=4, temperature=3.0)
    for b, out in ((plain, tmp_path / "m1"), (hot, tmp_path / "m3")):
        predict_scene(b, _mods(scene), out, options=_opts(probabilities="float32"))
    p1, p3 = probs(tmp_path / "m1"), probs(tmp_path / "m3")
    np.testing.assert_allclose(p3, temper(p1, 3.0, axis=0), atol=2e-3)  # blended, then T
    assert p3.max(axis=0).mean() < p1.max(axis=0).mean()  # less confident
    assert (_classes(tmp_path / "m3") == _classes(tmp_path / "m1")).mean() > 0.999


def test_a_mean_of_networks_maps_the_mean_of_their_probabilities(scene, tmp_path):
    def probs(out: Path) -> np.ndarray:
        with rasterio.open(out / "probabilities.tif") as src:
            return src.read()

    bundles = {"a": cnn_bundle(tmp_path / "a", seed=4), "b": cnn_bundle(tmp_path / "b", seed=5),
               "mean": cnn_bundle(tmp_path / "ab", seed=4, members=2)}
    for name, b in bundles.items():
        predict_scene(b, _mods(scene), tmp_path / f"m-{name}",
                      options=_opts(probabilities="float32", progress=False))
    pa, pb, pm = (probs(tmp_path / f"m-{n}") for n in ("a", "b", "mean"))
    assert not np.allclose(pa, pb, atol=1e-3)
    np.testing.assert_allclose(pm, (pa + pb) / 2, atol=1e-5)
    assert (_classes(tmp_path / "m-mean") == (pa + pb).argmax(0)).mean() > 0.999


def test_inputs_without_valid_pixels_are_refused(scene, bundle, tmp_path):
    zeros = write_band(tmp_path / "z.tif", np.zeros((H, W), np.uint16), 10, nodata=0)
    mods = [ModalitySpec("optical", (BandSpec(zeros, "A"), BandSpec(scene["b"], "B"))),
            ModalitySpec("radar", (BandSpec(scene["r"], "VV"),))]
    out = tmp_path / "nodata"
    with pytest.raises(PredictError, match="no valid input pixel"):
        predict_scene(bundle, mods, out, options=_opts())
    assert not out.exists()  # nothing left, not even the folder it made


def test_existing_results_need_overwrite_and_other_files_are_kept(scene, bundle, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    predict_scene(bundle, _mods(scene), out, options=_opts())
    before = (out / "classes.tif").stat().st_mtime_ns
    from geomm._outputs import OutputExistsError

    with pytest.raises(OutputExistsError, match="--overwrite"):
        predict_scene(bundle, _mods(scene), out, options=_opts())
    assert (out / "classes.tif").stat().st_mtime_ns == before
    predict_scene(bundle, _mods(scene), out, options=_opts(overwrite=True))
    assert (out / "notes.txt").read_text() == "mine"
    # a classes.tif of the user's, with no run record beside it: not even --overwrite
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "classes.tif").write_bytes(b"my own map")
    with pytest.raises(OutputExistsError, match=r"holds classes.tif, which geomm predict did "
                                                r"not write \(no geomm-predict.json"):
        predict_scene(bundle, _mods(scene), mine, options=_opts(overwrite=True))
    assert (mine / "classes.tif").read_bytes() == b"my own map"


def test_an_interrupted_run_leaves_no_file_under_a_final_name(scene, bundle, tmp_path):
    out = tmp_path / "killed"
    code = (f"import os, geomm.predict.blend as b\n"
            f"from geomm.predict.scene import predict_scene, PredictOptions\n"
            f"from geomm.modality import BandSpec, ModalitySpec\n"
            f"orig = b.Blender.finish\n"
            f"n = [0]\n"
            f"def finish(self):\n"
            f"    n[0] += 1\n"
            f"    if n[0] == 3: os._exit(9)\n"  # dies mid-run, like a SIGKILL
            f"    return orig(self)\n"
            f"b.Blender.finish = finish\n"
            f"mods = [ModalitySpec('optical', (BandSpec({str(scene['a'])!r}, 'A'), "
            f"BandSpec({str(scene['b'])!r}, 'B'))), ModalitySpec('radar', "
            f"(BandSpec({str(scene['r'])!r}, 'VV'),))]\n"
            f"predict_scene({str(bundle)!r}, mods, {str(out)!r}, "
            f"options=PredictOptions(device='cpu', threads=1, tile_size=64, halo=12, \n"
            f"window=60))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 9, proc.stderr
    assert not [n for n in OUTPUTS if (out / n).exists()]
    leftovers = [p.name for p in out.iterdir()]
    assert all(n.startswith(".geomm-work-") for n in leftovers) and leftovers
    predict_scene(bundle, _mods(scene), out, options=_opts())  # the next run clears them
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)


def test_random_forest_bundle_maps_every_pixel_like_the_classifier(scene, tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    from geomm.model.classical import to_predictor

    with rasterio.open(scene["a"]) as a, rasterio.open(scene["b"]) as b, \
            rasterio.open(scene["r"]) as r:
        vv = np.repeat(np.repeat(r.read(1), 2, axis=0), 2, axis=1)
        X = np.stack([a.read(1).astype(np.float64), b.read(1).astype(np.float64),
                      vv.astype(np.float64)], axis=-1).reshape(-1, 3).astype(np.float32)
    y = (X[:, 0] > 1000).astype(int) + (X[:, 2] > 0.35).astype(int)
    rf = RandomForestClassifier(n_estimators=5, max_depth=6, random_state=0).fit(X[::7], y[::7])
    pred = to_predictor(rf)
    path = save_bundle(tmp_path / "rf", kind="rf",
                       tensors={n: np.asarray(getattr(pred, n)) for n in pred.ARRAYS},
                       meta=BundleMeta("synthetic", LAYERS, ClassTable.from_names(NAMES).to_dict(),
                                       config={k: getattr(pred, k) for k in pred.CONFIG}))
    s = predict_scene(path, _mods(scene), tmp_path / "map", options=_opts(window=100))
    assert s.halo == 0 and "per pixel" in s.engine  # no context: no overlap computed
    assert (_classes(tmp_path / "map") == pred.predict(X).reshape(H, W)).all()


@pytest.mark.e2e
def test_real_sample_map_does_not_depend_on_the_tile_size(s2_sample, tmp_path):
    from geomm.learn.normalize import compute_norm_stats
    from geomm.learn.train import TrainConfig, model_config_for
    from geomm.model.bundle import layers_from_manifest
    from geomm.model.netbundle import state_tensors
    from geomm.predict.scene import predict_recipe
    from geomm.recipe import load_recipe
    from geomm.stack.build import stack
    from geomm.stack.store import open_store

    recipe = load_recipe("s2-landcover")
    (summary,) = stack(recipe, out=tmp_path / "store")
    store = open_store(summary.path)
    torch.manual_seed(3)
    cfg = model_config_for(store, TrainConfig(width=16))
    stats = compute_norm_stats(store, np.ones(store.grid.shape, bool))
    meta = BundleMeta("s2-landcover", layers_from_manifest(store.manifest),
                      store.manifest["classes"], normalisation=stats.to_dict(),
                      config={"model": cfg.to_dict(), "training": {}})
    bundle = save_bundle(tmp_path / "b", kind="cnn", tensors=state_tensors(MultiBranchNet(cfg)),
                         meta=meta)
    maps = {}
    for tile in (258, 516):
        (s,) = predict_recipe(bundle, recipe, tmp_path / f"t{tile}",
                              options=_opts(tile_size=tile, threads=None))
        maps[tile] = _classes(tmp_path / f"t{tile}")
        assert s.shape == store.grid.shape
    assert (maps[258] == maps[516]).mean() >= 0.995
    with rasterio.open(tmp_path / "t516" / "classes.tif") as src:
        assert src.transform == store.grid.transform and src.crs == store.grid.crs


def test_uint8_probabilities_sum_to_255_and_stay_within_one_step():
    from geomm.predict._mapfiles import quantised

    rng = np.random.default_rng(0)
    for k in (2, 3, 7, 12):
        p = rng.dirichlet(np.full(k, 0.3), size=(40, 50)).transpose(2, 0, 1).astype(np.float32)
        q = quantised(p)
        assert q.dtype == np.uint8 and (q.astype(int).sum(axis=0) == 255).all()
        assert np.abs(q / 255.0 - p).max() < 1 / 255 + 1e-6
    # a third each: rounding each alone gives 85 x 3 = 255, but 1/7 each gives 36 x 7 = 252
    q = quantised(np.full((7, 1, 1), 1 / 7, dtype=np.float32))
    assert sorted(q.ravel()) == [36, 36, 36, 36, 37, 37, 37]


def test_inputs_by_file_are_named_as_the_caller_names_them(tmp_path):
    from geomm.predict.scene import modalities_from_files

    bundle = cnn_bundle(tmp_path / "b")
    gone = tmp_path / "VV_nope.tif"
    with pytest.raises(PredictError, match=r"^--modality radar=.*VV_nope.tif: no such file"):
        modalities_from_files(bundle, [("radar", gone)])
    with pytest.raises(PredictError,  # a batch scene names its entry, not an option it lacks
                       match=r"^scene north: modality radar=.*VV_nope.tif: no such file"):
        modalities_from_files(bundle, [("radar", gone)], what="scene north: modality")
