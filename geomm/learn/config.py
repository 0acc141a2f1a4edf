"""How a fusion CNN is trained (:class:`TrainConfig`) and the network config it implies."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from geomm.errors import RecipeError
from geomm.model.network import LayerSpec, ModelConfig
from geomm.stack.store import TileStore

__all__ = ["CLASS_WEIGHT_POWERS", "KEEPS", "TrainConfig", "check_settings",
           "class_weight_power", "cpu_bf16", "dropout_for", "epochs_for", "keep_for",
           "members_for", "model_config_for", "patch_for", "steps_for", "train_config_dict",
           "trainer_device", "width_for"]

PIXELS_PER_STEP = 3500
"""Labelled training pixels per training step when the steps are sized to the data."""
PATCH_PX = 72
"""Default training patch side, base pixels: a 72 px patch costs about half a 96 px one on
CPU for about the same map (bench/quality.md)."""
SCENE_PATCH_PX = 96
"""Default square read from each scene's corner for scene classification."""
MIN_STEPS, MAX_STEPS = 8, 48
"""Bounds of the sized steps per epoch: at 48 (the sample scene, all labels) a default fold
trains in about 5 minutes on 2 CPU cores."""
MEMBER_STEPS, MAX_MEMBERS = 24, 3
"""Sized member count (:func:`members_for`): ``MEMBER_STEPS`` // the steps per epoch the
labels fill, at most ``MAX_MEMBERS``: 3 networks for labels that fill the 8-step floor (a few
polygons per class), 1 from 13 steps (45 000 labelled training pixels) on."""

NARROW, WIDE = 32, 48
"""Sized branch widths (:func:`width_for`). A 48-wide network costs about 2.2 times a 32-wide
one per step, about what the three narrow networks of a label-scarce model cost together."""
EPOCHS, LONG_EPOCHS, LONG_STEPS = 12, 16, 32
"""Sized epochs (:func:`epochs_for`): ``LONG_EPOCHS`` where the labels fill ``LONG_STEPS``
steps per epoch or more (about 110 000 labelled training pixels), else ``EPOCHS``."""


@dataclass(frozen=True)
class TrainConfig:
    """How a fusion CNN is trained."""

    patch_size: int | None = None
    """Training patch side in base pixels (a multiple of every layer's factor); None: about
    ``PATCH_PX`` snapped to the layers' lattice and at most the scene (:func:`patch_for`).
    Scene classification reads a ``SCENE_PATCH_PX`` corner square by default."""
    batch_size: int = 16
    """Patches per step."""
    steps_per_epoch: int | None = None
    """Random patches drawn per epoch = steps x batch size; None sizes it to the labelled
    training pixels (:func:`steps_for`): 48 on the sample scene, 8 for a few polygons."""
    max_epochs: int | None = None
    """Epochs; the one-cycle schedule spans them (early stopping may end sooner). None sizes
    them to the labels (:func:`epochs_for`): 16 where they are plentiful, else 12."""
    max_minutes: float | None = None
    """Wall-time budget of the training, shared by the members; training stops cleanly
    when it is spent."""
    members: int | None = None
    """Networks trained alike (other weights at the start, other patches) and averaged;
    None sizes it to the data (:func:`members_for`): 3 when the labels fill few steps, 1
    with many. Each member adds its training and its share of mapping time."""
    lr: float = 3e-3
    """Peak AdamW learning rate (one-cycle cosine schedule)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    patience: int = 8
    """Early stopping of a network that keeps its best epoch (:attr:`keep`): epochs without
    a better validation loss."""
    keep: str = "last"
    """Which weights each network maps with (:func:`keep_for`): ``"last"`` (the end of the
    one-cycle schedule, where its learning rate has annealed: the schedule runs to its end,
    without early stopping; the best epoch's where the time budget ends it sooner) or
    ``"best"`` (the epoch of the best validation OA from the first quarter on; early
    stopping on the validation loss)."""
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
    width: int | None = None
    """Channels of each branch's output (the fused trunk has twice as many); None sizes it to
    the labels (:func:`width_for`): ``WIDE`` for a single network, ``NARROW`` for each of
    several."""
    modality_dropout: float | None = None
    """Probability of dropping a modality per training sample; None: 0.2 when some layer has
    data on less than 98 % of the grid (so the network learns to map pixels from the
    modalities present there), else 0."""
    spectral: int = 32
    """Hidden width of the network's per-pixel spectral pathway (0: spatial branches only)."""
    spatial_dropout: float = 0.2
    """Probability of leaving a sample's spatial logits out in training (with ``spectral``)."""
    spectral_aux: float = 0.5
    """Weight of the spectral pathway's own loss (deep supervision, with ``spectral``)."""
    class_weights: str = "none"
    """Per-class loss weights: ``"none"`` (every labelled pixel counts the same: the loss
    that overall accuracy rewards), ``"sqrt"`` (inverse square root of the class's pixel
    count) or ``"inverse"`` (inverse count: rare classes count as much as common ones, for
    balanced accuracy at the cost of overall accuracy)."""
    polygons_per_class: int | None = None
    """Label-scarce protocol: train on the labels of only this many polygons per class (the
    connected labelled regions inside the training blocks, drawn with ``seed``); None: all."""
    erode_labels: int | None = None
    """Leave out of training the labelled pixels within this many pixels of another class or
    of unlabelled ground: the mixed pixels on a polygon's edge and a digitiser's uncertain
    outline; a polygon it would empty keeps its pixels. None: one pixel where that keeps at
    least 60 % of the training labels (large polygons against the pixel), else none
    (:func:`~geomm.learn.labelbudget.auto_eroded_labels`). Validation and test labels are
    never eroded."""
    modalities: tuple[str, ...] | None = None
    """Train on these modalities only (ablations); default all."""
    weights: dict[str, str] = field(default_factory=dict)
    """Pretrained weights per layer or modality (ResNet backbones)."""
    num_workers: int = 0
    """DataLoader workers (0: load in the training process, best on 2 cores)."""
    device: str = "auto"
    """Where the network trains: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when torch sees
    a GPU). On the CPU training is deterministic (bit-identical reruns); on CUDA it is not."""
    amp: bool = True
    """bf16 mixed precision: on CUDA, and on a CPU with native bf16 arithmetic (AVX-512 BF16
    or AMX: about 1.6x faster training steps there, :func:`cpu_bf16`); other CPUs train in
    float32, since emulated bf16 is slower."""


def trainer_device(cfg: TrainConfig) -> dict[str, Any]:
    """Lightning ``Trainer`` arguments for ``cfg.device``: accelerator, precision and
    determinism (CUDA's fast kernels for upsampling have no deterministic backward)."""
    import torch

    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return {"accelerator": "cpu", "devices": 1, "deterministic": True,
                "precision": "bf16-mixed" if cfg.amp and cpu_bf16() else "32-true"}
    if device != "cuda":
        raise RecipeError(f"training device {cfg.device!r}: use 'auto', 'cpu' or 'cuda'")
    if not torch.cuda.is_available():
        raise RecipeError("--device cuda: torch sees no CUDA GPU here (torch "
                          f"{torch.__version__}); use --device cpu or auto")
    return {"accelerator": "gpu", "devices": 1, "deterministic": False,
            "precision": "bf16-mixed" if cfg.amp else "32-true"}


def check_settings(cfg: TrainConfig, *, folds: Sequence[int] = (), network: bool = True
                   ) -> None:
    """Refuse, before any data is read, settings that no data would make work: a held-out
    fold (``cfg.test_fold``, ``cfg.val_fold`` or one of ``folds``) beyond ``cfg.n_folds``,
    and (``network``) a training device this machine does not have.

    Raises:
        RecipeError: naming the option.
    """
    n = cfg.n_folds
    for what, fold in (("--fold", cfg.test_fold), ("val_fold", cfg.val_fold),
                       *(("--only-fold", f) for f in folds)):
        if fold is not None and not 0 <= fold < n:
            raise RecipeError(f"{what} {fold}: the split has {n} folds (0..{n - 1}); choose "
                              f"one of them, or more --folds")
    if network:
        trainer_device(cfg)


def cpu_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic natively (AVX-512 BF16 or AMX tiles): where it
    does not, bf16 autocast is emulated and slower than float32."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes
        return False


def steps_for(cfg: TrainConfig, labelled_px: int) -> int:
    """Training steps per epoch: ``cfg.steps_per_epoch``, or one step per ``PIXELS_PER_STEP``
    labelled training pixels, between ``MIN_STEPS`` and ``MAX_STEPS`` (a scene with a tenth
    of the labels trains in about a sixth of the time)."""
    if cfg.steps_per_epoch is not None:
        return int(cfg.steps_per_epoch)
    return int(min(MAX_STEPS, max(MIN_STEPS, round(labelled_px / PIXELS_PER_STEP))))


def _label_steps(cfg: TrainConfig, labelled_px: int) -> int:
    """The steps per epoch that ``labelled_px`` fill, whatever ``cfg.steps_per_epoch`` asks:
    what the sized members and epochs follow."""
    return steps_for(replace(cfg, steps_per_epoch=None), labelled_px)


def members_for(cfg: TrainConfig, labelled_px: int) -> int:
    """Networks to train and average: ``cfg.members``, or ``MEMBER_STEPS`` // the steps per
    epoch that ``labelled_px`` training pixels fill (:func:`steps_for`, whatever
    ``cfg.steps_per_epoch`` says), between 1 and ``MAX_MEMBERS``. With few labels one
    network's map depends much on its random start and its patches, and the mean of a few is
    steadier and better (bench/quality.md); with many, one is as good and maps faster."""
    if cfg.members is not None:
        return int(cfg.members)
    sized = _label_steps(cfg, labelled_px)
    return int(min(MAX_MEMBERS, max(1, MEMBER_STEPS // sized)))


def width_for(cfg: TrainConfig, labelled_px: int | None) -> int:
    """Branch width: ``cfg.width``, or ``WIDE`` where the labels train a single network
    (:func:`members_for`) and ``NARROW`` where they train several (or are not counted, as
    for scene classification). With many labels one wider network pays (bench/quality.md:
    +1.8 to +2.9 points of OA on the mean of the sample's folds 0-2 with every label); with
    few, the compute goes to the mean of several narrow ones."""
    if cfg.width is not None:
        return int(cfg.width)
    if labelled_px is None:
        return NARROW
    return WIDE if members_for(cfg, labelled_px) == 1 else NARROW


def epochs_for(cfg: TrainConfig, labelled_px: int | None) -> int:
    """Epochs of each network: ``cfg.max_epochs``, or ``LONG_EPOCHS`` where the labels fill
    ``LONG_STEPS`` training steps per epoch or more (:func:`steps_for`, whatever
    ``cfg.steps_per_epoch`` says) and ``EPOCHS`` where they fill fewer (or are not counted,
    as for scene classification). Each epoch draws new random patches: with plentiful labels
    more epochs show the network more of them (bench/quality.md, every label of the sample,
    46 steps: +1.7 points of OA and a better-calibrated map on the mean of 5 folds); with
    fewer they repeat the same polygons (25 per class, 14-20 steps: -2.2)."""
    if cfg.max_epochs is not None:
        return int(cfg.max_epochs)
    if labelled_px is None:
        return EPOCHS
    sized = _label_steps(cfg, labelled_px)
    return LONG_EPOCHS if sized >= LONG_STEPS else EPOCHS


def patch_for(store: TileStore, cfg: TrainConfig) -> int:
    """``cfg.patch_size``, or the multiple of the layers' lattice (the lcm of their factors
    and of the network's internal grid, 4) nearest to ``PATCH_PX``, no larger than the
    scene's shorter side."""
    if cfg.patch_size is not None:
        return int(cfg.patch_size)
    step = math.lcm(4, *(int(lyr["factor"]) for lyr in store.manifest["layers"]))
    fits = (min(store.grid.shape) // step) * step
    want = max(step, round(PATCH_PX / step) * step)
    return int(min(want, fits)) if fits else int(step)


def dropout_for(store: TileStore, cfg: TrainConfig) -> float:
    """``cfg.modality_dropout``, or 0.2 when a layer covers less of the grid than the rest
    (see :attr:`TrainConfig.modality_dropout`) and there is more than one modality."""
    if cfg.modality_dropout is not None:
        return float(cfg.modality_dropout)
    layers = [lyr for lyr in store.manifest["layers"]
              if cfg.modalities is None or lyr["modality"] in cfg.modalities]
    several = len({lyr["modality"] for lyr in layers}) > 1
    partial = any(float(lyr.get("valid_fraction", 1.0)) < 0.98 for lyr in layers)
    return 0.2 if several and partial else 0.0


KEEPS = ("last", "best")
"""The values of :attr:`TrainConfig.keep`."""


def keep_for(cfg: TrainConfig) -> str:
    """``"last"`` or ``"best"``: what each network maps with (:attr:`TrainConfig.keep`).

    The epoch the validation blocks rank best is not the one that maps the test blocks
    best, and the last is the default for every network (bench/quality.md, "What this
    curve changed" and "And each of several networks"; one training per fold scored both
    ways, CNN OA % on the mean of 5 folds of the sample). A single network, every label:
    66.9 against 66.1 on one CPU, 64.2 against 62.4 on another (ahead on four folds of
    five on each); 25 polygons per class 56.2 against 56.5, ECE 0.045 against 0.054. The
    mean of three networks: 10 polygons per class 44.2 against 43.5, 5 per class 36.4
    against 35.4, 3 per class 29.1 against 29.1, the calibration error lower at each
    (0.14-0.20 against 0.15-0.22); on a 30 m two-modality scene (three networks) 61.6
    against 61.5 with every label, 35.6 against 35.2 with 5 polygons per class. A
    validation set of a few polygons ranks the epochs by luck.

    Raises:
        RecipeError: an unknown value.
    """
    if cfg.keep not in KEEPS:
        raise RecipeError(f"keep {cfg.keep!r}: use one of {', '.join(KEEPS)}")
    return cfg.keep


CLASS_WEIGHT_POWERS = {"none": 0.0, "sqrt": 0.5, "inverse": 1.0}
"""``TrainConfig.class_weights`` -> the power of the inverse class frequency."""


def class_weight_power(cfg: TrainConfig) -> float:
    """The power of the inverse class frequency that ``cfg.class_weights`` names.

    Raises:
        RecipeError: an unknown name.
    """
    try:
        return CLASS_WEIGHT_POWERS[cfg.class_weights]
    except KeyError:
        raise RecipeError(f"class_weights {cfg.class_weights!r}: use one of "
                          f"{', '.join(CLASS_WEIGHT_POWERS)}") from None


def model_config_for(store: TileStore, cfg: TrainConfig,
                     labelled_px: int | None = None) -> ModelConfig:
    """The model config matching a store's layers (all, or ``cfg.modalities``'), its width
    sized to ``labelled_px`` training pixels (:func:`width_for`)."""
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
                       backbone=cfg.backbone, width=width_for(cfg, labelled_px),
                       modality_dropout=dropout_for(store, cfg), weights=dict(cfg.weights),
                       spectral=cfg.spectral, spatial_dropout=cfg.spatial_dropout)


def train_config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """JSON-able form of a training config, with the arithmetic it trains in on this machine
    (``precision``: Lightning's ``bf16-mixed`` or ``32-true``; None for a device absent here),
    since ``amp`` alone does not say (a CPU without native bf16 trains in float32)."""
    doc = asdict(cfg)
    doc["modalities"] = list(cfg.modalities) if cfg.modalities else None
    try:
        doc["precision"] = trainer_device(cfg).get("precision", "32-true")
    except RecipeError:
        doc["precision"] = None
    return doc
