"""``geomm predict``: a model bundle applied to a recipe's scenes or to given files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geomm.cli import main
from geomm.cli import options as opt


def _pair(text: str) -> tuple[str, str]:
    name, sep, files = text.partition("=")
    if not sep or not name or not files:
        raise click.BadParameter(f"{text!r}: expected NAME=FILE[,FILE...]",
                                 param_hint="--modality")
    return name, files


@main.command("predict")
@click.argument("bundle", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.argument("recipe", required=False)
@click.option("--modality", "modality", multiple=True, metavar="NAME=FILE[,FILE...]",
              help="Input files of a modality instead of a recipe (repeatable); bands are "
                   "taken in the bundle's order.")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="Output folder (one sub-folder per scene for multi-scene recipes).")
@click.option("--tile-size", type=click.IntRange(min=8), default=768, show_default=True,
              help="Tile side, base pixels (snapped to the model's lattice).")
@click.option("--halo", type=click.IntRange(min=0), default=48, show_default=True,
              help="Half the tile overlap, base pixels; tiles are blended over twice this.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Tiles per forward pass (default: ~1 Mpx on CPU, ~8 Mpx on CUDA).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Where the network runs.")
@click.option("--no-amp", is_flag=True, help="No bf16 autocast on CUDA.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the network.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch CPU threads (default: the usable cores).")
@click.option("--probabilities", type=click.Choice(["uint8", "float32", "none"]),
              default="uint8", show_default=True, help="Type of probabilities.tif, or none.")
@click.option("--missing", multiple=True, metavar="MODALITY",
              help="Predict without this modality (a sensor outage; repeatable).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@opt.overwrite
def predict_cmd(bundle: Path, recipe: str | None, modality: tuple[str, ...], out: Path,
                compile_: bool, no_amp: bool, quiet: bool, **kw: Any) -> None:
    """Map a scene with a model bundle: class, probability and confidence COGs, QGIS style,
    STAC item and quicklook in OUT.

    Give the inputs as a RECIPE (a YAML file or a bundled recipe's name) or with --modality.
    """
    from geomm.predict import (
        PredictOptions,
        modalities_from_files,
        predict_recipe,
        predict_scene,
    )

    if (recipe is None) == (not modality):
        raise click.UsageError("give either RECIPE or --modality NAME=FILE (not both)")
    options = PredictOptions(**{**kw, "missing": tuple(kw["missing"])}, compile=compile_,
                             amp=not no_amp, progress=not quiet)
    if recipe is not None:
        from geomm.recipe import load_recipe

        summaries = predict_recipe(bundle, load_recipe(recipe), out, options=options)
    else:
        pairs = [(name, f) for name, files in map(_pair, modality) for f in files.split(",")]
        summaries = [predict_scene(bundle, modalities_from_files(bundle, pairs), out,
                                   options=options)]
    for s in summaries:
        click.echo(s.describe())
