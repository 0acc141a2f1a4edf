"""Self-training with few labels: pseudo-labels, where they may go, and the students."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from geomm.learn.config import TrainConfig
from geomm.learn.selftrain import pseudo_labels, self_train_for, student_labels

TINY = TrainConfig(patch_size=48, batch_size=4, steps_per_epoch=3, max_epochs=1,
                   block_size=600.0, n_folds=3, width=8, seed=3, members=1)


def test_each_predicted_class_keeps_its_most_confident_share():
    conf = np.linspace(0.4, 0.9, 100).reshape(10, 10)  # rising along the rows
    probs = np.zeros((3, 10, 10))
    probs[0], probs[1] = conf, 1 - conf  # class 0 where conf > 0.5, else 1
    probs[2, :, :2] = 1.5 + conf[:, :2]  # a rare class: the first two columns
    probs /= probs.sum(axis=0)
    where = np.ones((10, 10), bool)
    where[9] = False  # the last row may not be pseudo-labelled
    probs[:, 0, 0] = np.nan  # nor a pixel without a prediction
    out = pseudo_labels(probs, where, top=0.25)
    pred = np.nanargmax(np.nan_to_num(probs, nan=-1), axis=0)
    for c in range(3):
        took = out == c
        assert took.any(), c  # the rare class too
        assert (pred[took] == c).all()
        cand = where & (pred == c) & np.isfinite(probs).all(0)
        assert abs(took.sum() - 0.25 * cand.sum()) <= 2  # its share of its own pixels
        assert probs.max(0)[took].min() >= probs.max(0)[cand & ~took].max()  # the surest
    assert (out[9] == 255).all() and out[0, 0] == 255
    assert ((out == 255) | (out < 3)).all()


def test_students_keep_the_user_s_labels_and_pseudo_label_only_the_training_blocks():
    labels = np.full((6, 6), 255, np.uint8)
    labels[:, :2] = 1  # a labelled polygon across every block
    train_mask = np.zeros((6, 6), bool)
    train_mask[:, :4] = True  # the training blocks: the left two thirds
    train_labels = train_mask & (labels != 255)
    train_labels[0, 0] = False  # an eroded edge pixel: not a training label
    probs = np.zeros((2, 6, 6))
    probs[0] = 0.9  # the teacher says class 0 everywhere, surely
    probs[1] = 0.1
    out, allowed = student_labels(labels, probs, train_labels, train_mask, 2, top=1.0)
    assert (out[train_labels] == 1).all() and allowed[train_labels].all()  # user's labels
    assert (out[:, 4:] == labels[:, 4:]).all() and not allowed[:, 4:].any()  # other blocks
    inside = train_mask & ~train_labels
    assert (out[inside] == 0).all() and allowed[inside].all()  # pseudo-labelled
    assert out[0, 0] == 0  # the eroded pixel's true label is not used either
    assert (labels[:, :2] == 1).all()  # the input is not changed


def test_patches_read_a_replacement_label_raster(synth):
    from geomm.learn.dataset import PatchSampler, StorePatchDataset
    from geomm.learn.normalize import compute_norm_stats

    _, store = synth
    everywhere = np.ones(store.grid.shape, bool)
    stats = compute_norm_stats(store, everywhere)
    mine = np.full(store.grid.shape, 255, np.uint8)
    mine[:48, :48] = 2  # one patch's worth, a class the store has elsewhere
    sampler = PatchSampler(store, everywhere, 48, min_labelled=48 * 48, labels=mine)
    assert sampler.eligible.tolist() == [[0, 0]]  # only where the raster labels
    ds = StorePatchDataset(store, sampler.eligible, 48, stats, everywhere, augment=False,
                           labels=mine)
    assert (ds[0]["labels"].numpy() == 2).all()
    plain = StorePatchDataset(store, sampler.eligible, 48, stats, everywhere, augment=False)
    assert (plain[0]["labels"].numpy() != 2).any()  # the store's own labels there


def test_self_training_is_on_where_the_labels_are_few():
    assert self_train_for(TrainConfig(), 22_000)  # a few polygons per class: 8 steps
    assert not self_train_for(TrainConfig(), 222_000)  # the sample's every label
    assert not self_train_for(TrainConfig(members=3), 222_000)  # sized, not asked for
    assert self_train_for(TrainConfig(self_train=True), 222_000)
    assert not self_train_for(TrainConfig(self_train=False), 22_000)


def test_students_train_after_the_teacher_and_the_model_is_the_mean_of_all(synth, tmp_path):
    from geomm.learn.train import fit_cnn, save_cnn_bundle, score_result
    from geomm.model.members import MemberMean
    from geomm.model.netbundle import load_cnn_bundle

    _, store = synth
    # first: mapping (in the self-trained run) may set torch's thread count, which moves sums
    alone = fit_cnn(store, replace(TINY, self_train=False), progress=False).model.state_dict()
    lines: list[str] = []
    res = fit_cnn(store, replace(TINY, self_train=True), progress=False, echo=lines.append)
    text = "\n".join(lines)
    assert "training 2 networks" in text and "(1 on the labels, then 1 on" in text
    assert "self-training:" in text and "network 2 of 2" in text
    assert isinstance(res.model, MemberMean) and res.metrics["members"] == 2
    assert res.metrics["pseudo_labelled_px"] > 0
    teacher, student = (m.state_dict() for m in res.model.members)
    assert all(torch.equal(teacher[k], alone[k]) for k in alone)  # the teacher, bit for bit
    assert any(not torch.equal(teacher[k], student[k]) for k in teacher)
    res, held, _ = score_result(res, store)
    assert 0 <= held.test.overall_accuracy <= 1
    model, _, bundle = load_cnn_bundle(save_cnn_bundle(res, store, tmp_path / "b"))
    assert isinstance(model, MemberMean) and bundle.meta.config["model"]["members"] == 2
    assert bundle.meta.config["training"]["self_train"] is True
