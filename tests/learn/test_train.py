"""Training, bundles and cross-validation on a small synthetic scene (CPU, seconds)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geomm.cli import main
from geomm.learn.config import members_for
from geomm.learn.train import TrainConfig, fit_cnn, save_cnn_bundle
from geomm.model.bundle import BundleError, BundleMismatchError, load_bundle
from geomm.model.netbundle import load_cnn_bundle
from geomm.recipe import load_recipe
from geomm.stack.store import open_store

TINY = TrainConfig(patch_size=48, batch_size=4, steps_per_epoch=3, max_epochs=2,
                   block_size=600.0, n_folds=3, width=8, seed=3, members=1)


def test_fit_save_load_gives_identical_logits_in_a_fresh_process(synth, tmp_path):
    root, store = synth
    res = fit_cnn(store, TINY, progress=False)
    assert res.metrics["epochs"] >= 1 and np.isfinite(res.metrics["train_loss"])
    out = save_cnn_bundle(res, store, tmp_path / "bundle")
    from geomm.learn.dataset import StorePatchDataset

    ds = StorePatchDataset(store, np.array([[48, 96]]), 48, res.stats,
                           np.ones(store.grid.shape, bool), augment=False)
    item = ds[0]
    keys = [layer.key for layer in res.config.layers]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as below: oneDNN's float sums follow the thread count
    try:
        with torch.no_grad():
            here = res.model({k: item[k][None] for k in keys}).numpy()
    finally:
        torch.set_num_threads(threads)
    torch.save({k: item[k][None] for k in keys}, tmp_path / "inputs.pt")
    code = (
        "import sys, torch, numpy as np\n"
        "torch.set_num_threads(1)\n"
        "from geomm.model.netbundle import load_cnn_bundle\n"
        "model, stats, bundle = load_cnn_bundle(sys.argv[1])\n"
        "x = torch.load(sys.argv[2], weights_only=True)\n"
        "with torch.no_grad():\n"
        "    np.save(sys.argv[3], model(x).numpy())\n")
    subprocess.run([sys.executable, "-c", code, str(out), str(tmp_path / "inputs.pt"),
                    str(tmp_path / "there.npy")], check=True)
    there = np.load(tmp_path / "there.npy")
    assert here.shape == (1, 3, 48, 48)
    np.testing.assert_array_equal(here, there)
    model, stats, bundle = load_cnn_bundle(out)
    assert stats.to_dict() == res.stats.to_dict()
    assert bundle.meta.split["n_folds"] == 3 and bundle.meta.class_table.names == ("a", "b", "c")


def test_few_labels_train_a_mean_of_networks_that_a_bundle_keeps(synth, tmp_path):
    from geomm.learn.train import StoreDataModule, score_result
    from geomm.model.members import MemberMean

    _, store = synth
    cfg = replace(TINY, members=None, max_epochs=1, width=None)
    want = members_for(cfg, StoreDataModule(store, cfg).labelled_px)
    assert want > 1  # the synthetic scene's labels fill few steps
    lines: list[str] = []
    res = fit_cnn(store, cfg, progress=False, echo=lines.append)
    assert isinstance(res.model, MemberMean) and res.metrics["members"] == want
    assert res.config.members == want and f"network {want} of {want}" in "\n".join(lines)
    assert res.config.width == res.model.members[0].config.width == 32  # several: narrow
    first, second = (m.state_dict() for m in res.model.members[:2])
    assert any(not torch.equal(first[k], second[k]) for k in first)  # other starts, patches
    # the first network is the single network of the same settings, bit for bit
    single = fit_cnn(store, replace(cfg, members=1, width=32), progress=False).model.state_dict()
    assert all(torch.equal(first[k], single[k]) for k in single)
    res, held, _ = score_result(res, store)
    assert 0 <= held.test.overall_accuracy <= 1 and held.calibrated
    out = save_cnn_bundle(res, store, tmp_path / "bundle")
    model, _, bundle = load_cnn_bundle(out)
    assert isinstance(model, MemberMean) and bundle.meta.config["model"]["members"] == want
    x = {la.key: torch.randn(1, la.channels, 48 // la.factor, 48 // la.factor)
         for la in res.config.layers}
    with torch.no_grad():
        assert torch.equal(model(x), res.model.eval()(x))


def test_the_time_budget_is_shared_by_the_networks(synth):
    from geomm.learn.train import network_budget_s

    assert network_budget_s(TINY, 0.0, 3) is None  # no budget
    three = replace(TINY, max_minutes=3.0)
    assert network_budget_s(three, 0.0, 3) == 60.0  # an equal share each
    assert network_budget_s(three, 120.0, 1) == 60.0  # the last one gets what is left
    assert network_budget_s(three, 150.0, 2) == 15.0
    assert network_budget_s(three, 200.0, 2) == 0.5  # overspent: a second between them
    _, store = synth
    cfg = replace(TINY, members=2, max_epochs=200, max_minutes=0.02, patience=500)
    lines: list[str] = []
    res = fit_cnn(store, cfg, progress=False, echo=lines.append)
    assert 1 <= res.metrics["members"] <= 2  # trained while the budget lasted
    assert res.metrics["epochs"] < 200 and res.metrics["seconds"] < 60
    assert any(re.search(r"of \d+ s budget", line) for line in lines)  # shown per epoch
    # and the cut is said and recorded: the schedule did not run to its end
    assert any(re.search(r"time budget \(\d+ s\) spent after epoch \d+ of 200: keeping", line)
               for line in lines), lines
    assert res.metrics["budget_cut"] == 1.0
    assert res.train_config.members == res.metrics["members"]  # as trained
    assert res.train_config.erode_labels in (0, 1)  # as resolved
    # a budget spent by the first network: the others are not started at a second each
    lines.clear()
    one = fit_cnn(store, replace(cfg, members=4, max_minutes=0.001), progress=False,
                  echo=lines.append)
    assert one.metrics["members"] == 1 and one.train_config.members == 1
    assert "time budget of 0.001 min spent after 1 of 4 networks: the model is that one" \
        in [ln.strip() for ln in lines]


def test_tampered_bundle_is_refused_with_the_layer_named(synth, tmp_path):
    _, store = synth
    res = fit_cnn(store, replace(TINY, max_epochs=1), progress=False)
    out = save_cnn_bundle(res, store, tmp_path / "b")
    doc = json.loads((out / "bundle.json").read_text())
    doc["layers"][0]["bands"] = ["F", "F2"]  # the JSON now claims a 2-band input
    (out / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleMismatchError, match="fine/10m"):
        load_bundle(out).check_inputs(store.manifest["layers"])
    doc["config"]["model"]["layers"][0]["channels"] = 2
    doc["config"]["model"]["layers"][0]["bands"] = ["F", "F2"]
    (out / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="do not fit"):
        load_cnn_bundle(out)


def test_training_is_deterministic_for_a_seed(synth):
    _, store = synth
    cfg = replace(TINY, max_epochs=1)
    a, b = fit_cnn(store, cfg, progress=False), fit_cnn(store, cfg, progress=False)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(),
                                  strict=True):
        assert ka == kb and torch.equal(va, vb), ka


def test_test_blocks_never_reach_the_training_patches(synth):
    from geomm.learn.train import StoreDataModule

    _, store = synth
    dm = StoreDataModule(store, TINY)
    assert not (dm.train_mask & dm.test_mask).any() and not (dm.val_mask & dm.test_mask).any()
    ignore = store.manifest["classes"]["ignore_value"]
    for i in range(len(dm.train_ds)):
        item = dm.train_ds[i]
        r, c = (int(v) for v in item["origin"])
        # augmentation moves pixels inside the patch, so compare counts, not positions
        allowed = dm.train_mask[r:r + 48, c:c + 48]
        assert int((item["labels"] != ignore).sum()) <= int(allowed.sum())


def test_cli_train_cnn_and_rf_write_bundles(synth, tmp_path, monkeypatch):
    root, _ = synth
    monkeypatch.chdir(root)
    r = CliRunner()
    common = ["--max-epochs", "1", "--patch-size", "48", "--block-size", "600", "--folds", "3"]
    res = r.invoke(main, ["train", "recipe.yaml", "--out", str(tmp_path / "cnn"), *common])
    assert res.exit_code == 0, res.output
    assert load_bundle(tmp_path / "cnn").kind == "cnn"
    res = r.invoke(main, ["train", "recipe.yaml", "--classifier", "rf", "--out",
                          str(tmp_path / "rf"), *common])
    assert res.exit_code == 0, res.output
    assert load_bundle(tmp_path / "rf").kind == "rf"
    training = load_bundle(tmp_path / "rf").meta.config["training"]  # what it was trained with
    assert training["block_size"] == 600 and training["n_folds"] == 3


def test_the_model_keeps_its_best_validation_epoch(synth, tmp_path):
    import pandas as pd

    _, store = synth
    res = fit_cnn(store, replace(TINY, max_epochs=4, lr=0.05, keep="best"),
                  log_dir=tmp_path / "logs", progress=False)
    val_oa = pd.read_csv(tmp_path / "logs" / "metrics.csv").dropna(subset=["val_oa"])[
        "val_oa"].to_numpy()
    assert len(val_oa) == 4
    best = 1 + int(val_oa[1:].argmax())  # epoch 0 is warm-up (max_epochs // 4), not a candidate
    assert res.metrics["best_epoch"] == best
    assert res.metrics["val_oa"] == pytest.approx(float(val_oa[best]), rel=1e-6)


def test_a_single_network_keeps_the_end_of_its_schedule(synth, tmp_path):
    import pandas as pd

    _, store = synth
    cfg = replace(TINY, max_epochs=4, lr=0.02)  # its best validation epoch is not the last
    res = fit_cnn(store, cfg, log_dir=tmp_path / "logs", progress=False)
    val_oa = pd.read_csv(tmp_path / "logs" / "metrics.csv").dropna(subset=["val_oa"])[
        "val_oa"].to_numpy()
    assert res.metrics["kept_epoch"] == 3 and res.metrics["epochs"] == 4
    assert res.metrics["val_oa"] == pytest.approx(float(val_oa[3]), rel=1e-6)
    best = fit_cnn(store, replace(cfg, keep="best"), progress=False)
    assert best.metrics["kept_epoch"] == best.metrics["best_epoch"] != 3  # another epoch
    a, b = res.model.state_dict(), best.model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_only_a_network_that_keeps_its_best_epoch_stops_early(synth):
    _, store = synth
    cfg = replace(TINY, max_epochs=12, lr=0.02, patience=2)
    # 20 epochs: room to stop on CPUs with bf16 (AMX) and without (float32), which differ
    best = fit_cnn(store, replace(cfg, keep="best", max_epochs=20), progress=False)
    m = best.metrics
    assert m["epochs"] < 20  # early stopping ended it
    if m["best_epoch"] >= 0:  # it kept its best epoch from the first quarter on ...
        assert m["kept_epoch"] == m["best_epoch"] < m["epochs"] - 1
    else:  # ... or, stopped before the first quarter ended, its last
        assert m["kept_epoch"] == m["epochs"] - 1
    last = fit_cnn(store, cfg, progress=False)  # the schedule runs to its end
    assert last.metrics["epochs"] == 12 and last.metrics["kept_epoch"] == 11
    several = fit_cnn(store, replace(cfg, members=2), progress=False)  # each of them too
    assert several.metrics["epochs"] == 12 and several.metrics["kept_epoch"] == 11


def test_train_ends_with_the_held_out_score_and_auto_picks_by_validation(synth, tmp_path,
                                                                          monkeypatch):
    root, _ = synth
    monkeypatch.chdir(root)
    common = ["--max-epochs", "1", "--patch-size", "48", "--block-size", "600", "--folds", "3"]
    res = CliRunner().invoke(main, ["train", "recipe.yaml", "--classifier", "auto", "--out",
                                    str(tmp_path / "auto"), *common])
    assert res.exit_code == 0, res.output
    assert "cnn: held-out test blocks: OA" in res.output
    assert "rf: held-out test blocks: OA" in res.output and "auto: the " in res.output
    b = load_bundle(tmp_path / "auto")
    m = b.meta.metrics
    # the stripes are told apart by band values: the forest (or the mean) may win
    val = {n: m["auto"][f"{n}_val_oa"] for n in ("cnn", "rf", "cnn+rf")}
    assert b.kind == m["auto"]["chosen"] == max(val, key=lambda n: val[n])
    assert "scores best on the validation blocks" in res.output
    if b.kind != "rf":
        assert 0.05 <= b.meta.config["calibration"]["temperature"] <= 20
    assert "rf: held-out test blocks: OA" in res.output
    assert "nan" not in res.output  # no calibration figures for the forest
    assert 0 <= m["test_oa"] <= 1 and 0 <= m["heldout_val_oa"] <= 1
    assert ("test_ece" in m) == (b.kind != "rf")  # a forest's probabilities are not calibrated


def test_crossval_under_a_label_budget_scores_the_same_test_pixels(synth):
    from geomm.learn.crossval import crossval

    _, store = synth
    lines: list[str] = []
    full = crossval(store, replace(TINY, max_epochs=1), folds=[0], echo=lines.append)
    scarce = crossval(store, replace(TINY, max_epochs=1, polygons_per_class=1), folds=[0],
                      echo=lines.append)
    for a, b in zip(full.results, scarce.results, strict=True):
        assert sum(a.scores.support) == sum(b.scores.support)  # same test pixels
    assert any(line.startswith("fold 0 (1 of 1)") for line in lines)
    assert any("epoch 1/1" in line for line in lines)  # per-epoch progress
    # what each fold trains, as fit_cnn sized it
    assert any(line.startswith("fold 0 cnn: training ") and ": at most 1 epoch of " in line
               for line in lines)


def test_crossval_scores_both_methods_on_the_same_folds(synth):
    from geomm.learn.crossval import crossval

    _, store = synth
    report = crossval(store, replace(TINY, max_epochs=1, modality_dropout=0.3), folds=[0],
                      withhold=["mid"], baselines=("rf", "svm"), echo=lambda s: None)
    # auto is what `train --classifier auto` keeps: CNN, forest or their mean (once a fold;
    # the SVM has no probabilities to average)
    assert report.methods() == ["cnn", "cnn-without-mid", "rf", "cnn+rf", "auto", "svm"]
    by = {r.method: r for r in report.results}
    rf, both, auto = by["rf"], by["cnn+rf"], by["auto"]
    kept = ("cnn", "rf", "cnn+rf")[int(auto.extra["chose"])]  # the best validation OA
    assert auto.scores == by[kept].scores
    assert by[kept].extra["val_oa"] == max(by[n].extra["val_oa"] for n in ("cnn", "rf", "cnn+rf"))
    assert sum(both.scores.support) == sum(rf.scores.support)
    assert 0 <= both.extra["ece"] <= 1 and both.extra["temperature"] > 0
    assert rf.scores.overall_accuracy > 0.9  # stripes told apart by band values
    assert sum(rf.scores.support) == sum(
        next(r for r in report.results if r.method == "cnn").scores.support)
    assert "| rf | 1 |" in report.table()


@pytest.mark.e2e
def test_bigearthnet_scene_classifier_trains_end_to_end(bigearthnet_sample, tmp_path,
                                                        monkeypatch):
    from geomm.learn.multilabel import predict_scene_labels
    from geomm.learn.train import train_recipe

    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(patch_size=120, batch_size=2, max_epochs=3, width=8, seed=1)
    out = train_recipe(load_recipe("s1s2-bigearthnet"), out=tmp_path / "ben", cfg=cfg,
                       progress=False)
    bundle = load_bundle(out)
    model_cfg = bundle.meta.config["model"]
    assert model_cfg["head"] == "classification" and model_cfg["multilabel"] is True
    assert model_cfg["num_classes"] == 43
    assert [la["key"] for la in bundle.meta.layers][:2] == ["sar/10m", "visible/10m"]
    assert bundle.meta.split["scenes"]["test"] == ["57_38"]
    assert np.isfinite(bundle.meta.metrics["train_loss"])
    model, stats, _ = load_cnn_bundle(out)
    store = open_store(tmp_path / "tiles" / "s1s2-bigearthnet" / "57_38")
    probs = predict_scene_labels(model, stats, store, patch_size=120, threshold=0.0)
    assert len(probs) == 43 and all(0.0 <= p <= 1.0 for p in probs.values())


def test_a_class_without_training_pixels_is_named_by_train(synth, tmp_path, monkeypatch):
    from geomm.learn.masks import untrained_classes
    from geomm.stack.build import stack

    root, store = synth
    assert untrained_classes(store, TINY) == ()
    doc = load_recipe(root / "recipe.yaml").raw
    doc = {**doc, "name": "snowy", "labels": {**doc["labels"], "classes": ["a", "b", "c", "snow"]}}
    (root / "snowy.yaml").write_text(__import__("yaml").safe_dump(doc, sort_keys=False))
    (summary,) = stack(load_recipe(root / "snowy.yaml"), out=tmp_path / "snowy")
    assert untrained_classes(open_store(summary.path), TINY) == ("snow",)
    monkeypatch.chdir(root)
    res = CliRunner().invoke(main, ["train", "snowy.yaml", "--classifier", "rf", "--out",
                                    str(tmp_path / "rf"), "--block-size", "600", "--folds", "3"])
    assert res.exit_code == 0, res.output
    assert "1 class(es) have no training pixels and cannot be learnt: snow" in res.output


def test_train_on_a_stale_store_says_to_restack(synth, tmp_path, monkeypatch):
    import shutil

    root, _ = synth
    for name in ("b10.tif", "b20.tif", "b60.tif", "labels.gpkg", "recipe.yaml"):
        shutil.copy(root / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    args = ["train", "recipe.yaml", "--classifier", "rf", "--block-size", "600", "--folds", "3"]
    first = CliRunner().invoke(main, [*args, "--out", "m1"])
    assert first.exit_code == 0, first.output
    doc = load_recipe(tmp_path / "recipe.yaml").raw
    doc["tiling"] = {"size": 120, "halo": 6}
    (tmp_path / "recipe.yaml").write_text(__import__("yaml").safe_dump(doc, sort_keys=False))
    again = CliRunner().invoke(main, [*args, "--out", "m2", "--overwrite"])
    assert again.exit_code == 1
    assert "tiles/synth, the tile store of recipe 'synth', was made from other inputs" in \
        again.output and "geomm stack RECIPE --overwrite" in again.output, again.output
    assert not (tmp_path / "m2").exists()


def test_train_options_refuse_nan_and_bad_seeds_and_warn_of_tiny_blocks(synth, monkeypatch,
                                                                         tmp_path):
    root, _ = synth
    monkeypatch.chdir(root)
    base = ["train", "recipe.yaml", "--classifier", "rf", "--folds", "3"]
    for bad in (["--max-minutes", "nan"], ["--max-minutes", "inf"], ["--seed", "-5"],
                ["--seed", "99999999999999999999"], ["--block-size", "nan"]):
        res = CliRunner().invoke(main, [*base, *bad, "--out", str(tmp_path / "x")])
        assert res.exit_code == 2 and "Invalid value" in res.output, (bad, res.output)
    assert not (tmp_path / "x").exists()
    res = CliRunner().invoke(main, [*base, "--block-size", "100", "--patch-size", "48",
                                    "--out", str(tmp_path / "tiny")])
    assert res.exit_code == 0, res.output
    assert "blocks of 12 px (120 m, from --block-size 100) are smaller than half a training " \
        "patch (48 px)" in res.output


def test_a_users_folder_where_the_training_logs_go_is_refused(synth, monkeypatch, tmp_path):
    root, _ = synth
    monkeypatch.chdir(root)
    mine = tmp_path / "m-logs"
    mine.mkdir()
    (mine / "metrics.csv").write_text("my own\n")
    args = ["train", "recipe.yaml", "--max-epochs", "1", "--patch-size", "48", "--block-size",
            "600", "--folds", "3", "--out", str(tmp_path / "m")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "m-logs exists, and is not the training logs" in res.output
    assert (mine / "metrics.csv").read_text() == "my own\n" and not (tmp_path / "m").exists()


def test_a_class_the_training_labels_lack_still_counts_in_the_validation_loss(synth,
                                                                              monkeypatch):
    import geomm.learn.datamodule as dmod

    _, store = synth
    monkeypatch.setattr(dmod, "class_weights",
                        lambda store, mask, power: np.array([1.5, 1.5, 0.0]))  # c untrained
    dm = dmod.StoreDataModule(store, TINY)
    assert list(dm.train_ds.weights[:3]) == [1.5, 1.5, 0.0]  # not learnt from
    assert list(dm.val_ds.weights[:3]) == [1.5, 1.5, 1.0]  # but its errors are seen
    batch = dm.val_ds[int(np.argmax([(dm.val_ds[i]["labels"] == 2).sum()
                                     for i in range(len(dm.val_ds))]))]
    assert (batch["weight"][batch["labels"] == 2] == 1.0).all()
