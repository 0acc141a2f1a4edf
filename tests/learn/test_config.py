"""Training settings that follow the data: steps per epoch, modality dropout."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from geomm.errors import RecipeError
from geomm.learn.config import (
    TrainConfig,
    class_weight_power,
    dropout_for,
    epochs_for,
    members_for,
    steps_for,
    width_for,
)


def test_modality_dropout_turns_on_when_a_layer_covers_less_of_the_grid():
    def store(*cover: float, modalities=("optical", "radar")):
        return SimpleNamespace(manifest={"layers": [
            {"modality": m, "valid_fraction": c} for m, c in zip(modalities, cover, strict=True)]})

    assert dropout_for(store(1.0, 1.0), TrainConfig()) == 0.0
    assert dropout_for(store(1.0, 0.6), TrainConfig()) == 0.2
    assert dropout_for(store(1.0, 0.6), TrainConfig(modality_dropout=0.0)) == 0.0  # asked for
    assert dropout_for(store(0.6, modalities=("optical",)), TrainConfig()) == 0.0  # one modality
    assert dropout_for(store(1.0, 0.6), TrainConfig(modalities=("optical",))) == 0.0


def test_steps_follow_the_labelled_pixels_unless_given():
    assert steps_for(TrainConfig(), 222_000) == 48  # the sample's training blocks (the cap)
    assert steps_for(TrainConfig(), 22_000) == 8  # a tenth of the labels: 8 (the floor)
    assert steps_for(TrainConfig(), 100_000) == 29
    assert steps_for(TrainConfig(steps_per_epoch=5), 222_000) == 5


def test_members_follow_the_labelled_pixels_unless_given():
    assert members_for(TrainConfig(), 222_000) == 1  # every label of the sample: one network
    assert members_for(TrainConfig(), 45_500) == 1  # 13 steps
    assert members_for(TrainConfig(), 38_000) == 2  # 11 steps
    assert members_for(TrainConfig(), 22_000) == 3  # a few polygons per class: the 8-step floor
    # the labels decide, not the steps or epochs asked for
    assert members_for(TrainConfig(steps_per_epoch=2, max_epochs=1), 222_000) == 1
    assert members_for(TrainConfig(steps_per_epoch=48), 22_000) == 3
    assert members_for(TrainConfig(members=1), 22_000) == 1  # asked for
    assert members_for(TrainConfig(members=5), 222_000) == 5


def test_width_follows_the_member_count_unless_given():
    assert width_for(TrainConfig(), 222_000) == 48  # one network: the wide one
    assert width_for(TrainConfig(), 38_000) == 32  # two networks: each narrow
    assert width_for(TrainConfig(), 22_000) == 32  # three
    assert width_for(TrainConfig(members=1), 22_000) == 48  # one asked for
    assert width_for(TrainConfig(members=3), 222_000) == 32
    assert width_for(TrainConfig(width=16), 222_000) == 16  # asked for
    assert width_for(TrainConfig(), None) == 32  # labels not counted (scene classification)


def test_epochs_follow_the_labelled_pixels_unless_given():
    assert epochs_for(TrainConfig(), 222_000) == 16  # every label of the sample: 48 steps
    assert epochs_for(TrainConfig(), 112_000) == 16  # 32 steps
    assert epochs_for(TrainConfig(), 108_000) == 12  # 31 steps: fewer new patches an epoch
    assert epochs_for(TrainConfig(), 22_000) == 12  # a few polygons per class
    # the labels decide, not the steps asked for
    assert epochs_for(TrainConfig(steps_per_epoch=8), 222_000) == 16
    assert epochs_for(TrainConfig(max_epochs=3), 222_000) == 3  # asked for
    assert epochs_for(TrainConfig(), None) == 12  # labels not counted (scene classification)


def test_trainer_device_cpu_is_deterministic_and_cuda_needs_a_gpu(monkeypatch):
    import torch

    from geomm.learn import config
    from geomm.learn.config import trainer_device

    for native, want in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(config, "cpu_bf16", lambda native=native: native)
        assert trainer_device(TrainConfig(device="cpu")) == {
            "accelerator": "cpu", "devices": 1, "deterministic": True, "precision": want}
        assert trainer_device(TrainConfig(device="cpu", amp=False))["precision"] == "32-true"
        # what a bundle records: the arithmetic it trained in, not only the wish
        assert config.train_config_dict(TrainConfig(device="cpu"))["precision"] == want
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert trainer_device(TrainConfig())["accelerator"] == "cpu"  # auto without a GPU
    with pytest.raises(RecipeError, match="--device cuda: torch sees no CUDA GPU"):
        trainer_device(TrainConfig(device="cuda"))
    assert config.train_config_dict(TrainConfig(device="cuda"))["precision"] is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trainer_device(TrainConfig()) == {"accelerator": "gpu", "devices": 1,
                                             "deterministic": False,
                                             "precision": "bf16-mixed"}
    assert trainer_device(TrainConfig(device="cuda", amp=False))["precision"] == "32-true"


def test_class_weights_name_a_power_and_a_bad_name_is_refused():
    assert class_weight_power(TrainConfig()) == 0.0  # default: the loss OA rewards
    assert class_weight_power(TrainConfig(class_weights="sqrt")) == 0.5
    assert class_weight_power(TrainConfig(class_weights="inverse")) == 1.0
    with pytest.raises(RecipeError, match="class_weights 'balanced': use one of none, sqrt"):
        class_weight_power(TrainConfig(class_weights="balanced"))


def test_every_network_keeps_its_last_epoch_unless_told():
    from geomm.errors import RecipeError
    from geomm.learn.config import keep_for

    assert keep_for(TrainConfig()) == "last"
    assert keep_for(TrainConfig(keep="best")) == "best"
    with pytest.raises(RecipeError, match="keep 'auto': use one of last, best"):
        keep_for(TrainConfig(keep="auto"))
