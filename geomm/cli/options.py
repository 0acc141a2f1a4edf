"""Options shared by several commands, defined once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

out_dir = click.option(
    "--out", "out", type=click.Path(path_type=Path, file_okay=False), default=None,
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

_TRAIN = [
    click.option("--max-epochs", type=click.IntRange(min=1), default=None,
                 help="Epochs (default 12, ~6 min on 2 cores; early stopping may end sooner)."),
    click.option("--max-minutes", type=click.FloatRange(min=0.1), default=None,
                 help="Wall-time budget per model."),
    click.option("--patch-size", type=click.IntRange(min=6), default=None,
                 help="Training patch side, base pixels (default 96)."),
    click.option("--block-size", type=click.FloatRange(min=1), default=None,
                 help="Spatial block side for the split, CRS units (default 2000)."),
    click.option("--fusion", type=click.Choice(["concat", "weighted", "attention", "early"]),
                 default=None, help="How the modality branches are fused (default concat)."),
    click.option("--modality-dropout", type=click.FloatRange(0, 0.99), default=None,
                 help="Probability of dropping a modality per training sample."),
    click.option("--seed", type=int, default=None, help="Seed of split, patches and weights."),
]


def train_options(f: F) -> F:
    """The training settings shared by `geomm train` and `geomm crossval`."""
    for option in reversed(_TRAIN):
        f = option(f)
    return f
