"""How a fusion CNN is trained (:class:`TrainConfig`) and the network config it implies."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from geomm.errors import RecipeError
from geomm.model.network import LayerSpec, ModelConfig
from geomm.stack.store import TileStore

__all__ = ["TrainConfig", "model_config_for", "train_config_dict"]


@dataclass(frozen=True)
class TrainConfig:
    """How a fusion CNN is trained."""

    patch_size: int = 96
    """Training patch side in base pixels (a multiple of every layer's factor)."""
    batch_size: int = 16
    """Patches per step."""
    steps_per_epoch: int = 60
    """Random patches drawn per epoch = steps x batch size."""
    max_epochs: int = 12
    """Epochs; the one-cycle schedule spans them (early stopping may end sooner). 12 x 60
    steps is about 6 minutes on 2 CPU cores."""
    max_minutes: float | None = None
    """Wall-time budget; training stops cleanly when it is spent."""
    lr: float = 3e-3
    """Peak AdamW learning rate (one-cycle cosine schedule)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    patience: int = 8
    """Early stopping: epochs without a better validation loss."""
    block_size: float = 2000.0
    """Side of the spatial blocks of the split, CRS units."""
    n_folds: int = 5
    """Number of spatial folds."""
    test_fold: int = 0
    """Fold held out for testing."""
    val_fold: int | None = None
    """Fold used for validation (default: the one after ``test_fold``)."""
    seed: int = 0
    """Seed of the split, the patches, the augmentations and the weights."""
    fusion: str = "concat"
    """Fusion of the branches (see :class:`geomm.model.network.ModelConfig`)."""
    backbone: str = "light"
    """Branch encoder."""
    width: int = 32
    """Branch width."""
    modality_dropout: float = 0.0
    """Probability of dropping a modality per training sample."""
    modalities: tuple[str, ...] | None = None
    """Train on these modalities only (ablations); default all."""
    weights: dict[str, str] = field(default_factory=dict)
    """Pretrained weights per layer or modality (ResNet backbones)."""
    num_workers: int = 0
    """DataLoader workers (0: load in the training process, best on 2 cores)."""


def model_config_for(store: TileStore, cfg: TrainConfig) -> ModelConfig:
    """The model config matching a store's layers (all, or ``cfg.modalities``')."""
    layers = []
    for lyr in store.manifest["layers"]:
        if cfg.modalities is None or lyr["modality"] in cfg.modalities:
            layers.append(LayerSpec(lyr["key"], lyr["modality"], len(lyr["bands"]),
                                    int(lyr["factor"]), tuple(lyr["bands"])))
    if not layers:
        have = sorted({lyr["modality"] for lyr in store.manifest["layers"]})
        raise RecipeError(f"modalities {list(cfg.modalities or ())} are not in the store "
                          f"(it has {have})")
    n_classes = len(store.manifest["classes"]["classes"])
    return ModelConfig(tuple(layers), n_classes, fusion=cfg.fusion,  # type: ignore[arg-type]
                       backbone=cfg.backbone, width=cfg.width,
                       modality_dropout=cfg.modality_dropout, weights=dict(cfg.weights))


def train_config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """JSON-able form of a training config."""
    doc = asdict(cfg)
    doc["modalities"] = list(cfg.modalities) if cfg.modalities else None
    return doc
