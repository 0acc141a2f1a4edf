"""Options shared by several commands, defined once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

out_dir = click.option(
    "-o", "--out", "out", type=click.Path(path_type=Path, file_okay=False), default=None,
    help="Output directory (default: tiles/<recipe name>/).",
)
workers = click.option(
    "--workers", type=click.IntRange(min=1), default=None,
    help="Dask worker threads (default: all cores).",
)
overwrite = click.option(
    "--overwrite", is_flag=True, help="Replace an existing output made from other inputs.",
)
as_json = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")

F = TypeVar("F", bound=Callable[..., Any])


class Number(click.FloatRange):
    """A float in a range, and a number: NaN, which every comparison lets through, refused."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number != number:
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


_TRAIN = [
    click.option("--max-epochs", type=click.IntRange(min=1), default=None,
                 help="Epochs of each network (default: 16 where the labels fill 32 steps "
                      "per epoch or more, else 12; early stopping may end sooner)."),
    click.option("--max-minutes", type=Number(min=0.1, max=1e6), default=None,
                 help="Wall-time budget of a model's training, from reading the patches on "
                      "(the networks of a mean share it; scoring and mapping come after). "
                      "Where it ends a schedule early, the run says so."),
    click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None,
                 help="Training batches per epoch (default: sized to the labelled pixels, "
                      "8-48)."),
    click.option("--patch-size", type=click.IntRange(min=6), default=None,
                 help="Training patch side, base pixels (default: about 72, a multiple of "
                      "the layers' lattice; 96 for scene classification)."),
    click.option("--block-size", type=Number(min=1, max=1e9), default=None,
                 help="Spatial block side for the split, CRS units (default 2000)."),
    click.option("--fusion", type=click.Choice(["concat", "weighted", "attention", "early"]),
                 default=None, help="How the modality branches are fused (default concat)."),
    click.option("--modality-dropout", type=Number(0, 0.99), default=None,
                 help="Probability of dropping a modality per training sample."),
    click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=None,
                 help="Seed of split, patches and weights."),
    click.option("--width", type=click.IntRange(min=1), default=None,
                 help="Channels of each branch (default: 48 for a single network, 32 for "
                      "each of several)."),
    click.option("--spectral", type=click.IntRange(min=0), default=None,
                 help="Width of the per-pixel spectral pathway (default 32; 0: none)."),
    click.option("--polygons-per-class", type=click.IntRange(min=1), default=None,
                 help="Label-scarce protocol: train on only K labelled polygons per class "
                      "(drawn with --seed from the non-test blocks)."),
    click.option("--erode-labels", type=click.IntRange(min=0), default=None,
                 help="Leave out of training the labelled pixels within N pixels of another "
                      "class or of unlabelled ground (mixed pixels, uncertain polygon edges); "
                      "default: 1 where that keeps at least 60 % of the training labels, "
                      "else 0."),
    click.option("--class-weights", type=click.Choice(["none", "sqrt", "inverse"]),
                 default=None,
                 help="Per-class loss weights (default none: every labelled pixel counts the "
                      "same; sqrt / inverse: rarer classes count more, for macro-F1 over OA)."),
    click.option("--members", type=click.IntRange(min=1), default=None,
                 help="Networks trained alike and averaged (default: 3 when the labels fill "
                      "few training steps, else 1; each one adds its mapping time)."),
    click.option("--keep", type=click.Choice(["last", "best"]), default=None,
                 help="Which weights each network maps with: the end of its schedule's "
                      "(default, last) or its best validation epoch's (best, with early "
                      "stopping)."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
                 help="Where the network trains (default auto: CUDA when torch sees a GPU; "
                      "deterministic on the CPU only)."),
    click.option("--amp/--no-amp", default=None,
                 help="bf16 mixed precision when training on CUDA or on a CPU with native "
                      "bf16 (AVX-512 BF16, AMX); default on."),
]


def train_options(f: F) -> F:
    """The training settings shared by `geomm train` and `geomm crossval`."""
    for option in reversed(_TRAIN):
        f = option(f)
    return f


_PREDICT = [
    click.option("--tile-size", type=click.IntRange(min=8), default=768, show_default=True,
                 help="Tile side, base pixels (snapped to the model's lattice)."),
    click.option("--halo", type=click.IntRange(min=0), default=48, show_default=True,
                 help="Half the tile overlap, base pixels; tiles are blended over twice this."),
    click.option("--batch-size", type=click.IntRange(min=1), default=None,
                 help="Tiles per forward pass (default: ~1 Mpx on CPU, ~8 Mpx on CUDA)."),
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                 show_default=True, help="Where the network runs."),
    click.option("--no-amp", is_flag=True, help="No bf16 autocast on CUDA."),
    click.option("--compile", "compile_", is_flag=True, help="torch.compile the network."),
    click.option("--threads", type=click.IntRange(min=1), default=None,
                 help="Torch CPU threads (default: the usable cores, shared by the workers)."),
    click.option("--probabilities", type=click.Choice(["uint8", "float32", "none"]),
                 default="uint8", show_default=True, help="Type of probabilities.tif, or none."),
    click.option("--missing", multiple=True, metavar="MODALITY",
                 help="Predict without this modality (a sensor outage; repeatable)."),
    click.option("--quiet", is_flag=True, help="No progress bar."),
]


def predict_options(f: F) -> F:
    """The tiling and device settings shared by `geomm predict` and `geomm batch`."""
    for option in reversed(_PREDICT):
        f = option(f)
    return f


def prediction(compile_: bool, no_amp: bool, quiet: bool, **kw: Any) -> Any:
    """:class:`~geomm.predict.scene.PredictOptions` from :func:`predict_options`' values."""
    from geomm.predict.scene import PredictOptions

    return PredictOptions(**{**kw, "missing": tuple(kw["missing"])}, compile=compile_,
                          amp=not no_amp, progress=not quiet)
