"""``geomm demo``: the pipeline so far on the real ``s2-t33uuu`` sample scene."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from geomm import sampledata
from geomm.recipe import load_recipe
from geomm.stack import stack


def run_demo(*, out: Path | None = None, workers: int | None = None,
             echo: Callable[[str], object] = print) -> None:
    """Fetch the s2-t33uuu sample, describe it, and stack it into a tile store.

    Args:
        out: tile store folder (default ``tiles/s2-landcover``).
        workers: dask threads (default: all cores).
        echo: where the report goes.
    """
    sample = sampledata.fetch("s2-t33uuu")
    echo(sample.summary())
    echo("")
    echo("stage 1-2: co-register and tile (recipe s2-landcover)")
    for summary in stack(load_recipe("s2-landcover"), out=out, workers=workers):
        echo(summary.describe())
