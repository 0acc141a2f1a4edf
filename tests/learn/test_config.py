"""Training settings that follow the data: steps per epoch, modality dropout."""

from __future__ import annotations

from types import SimpleNamespace

from geomm.learn.config import TrainConfig, dropout_for, steps_for


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
