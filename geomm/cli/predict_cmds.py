"""``geomm predict``: a model bundle applied to a recipe's scenes or to given files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from geomm.cli import options as opt
from geomm.cli.group import main


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
@opt.predict_options
@opt.overwrite
def predict_cmd(bundle: Path, recipe: str | None, modality: tuple[str, ...], out: Path,
                overwrite: bool, **kw: Any) -> None:
    """Map a scene with a model bundle: class, probability and confidence COGs, QGIS style,
    STAC item and quicklook in OUT.

    Give the inputs as a RECIPE (a YAML file or a bundled recipe's name) or with --modality.
    """
    from geomm.predict.scene import modalities_from_files, predict_recipe, predict_scene

    if (recipe is None) == (not modality):
        raise click.UsageError("give either RECIPE or --modality NAME=FILE (not both)")
    options = replace(opt.prediction(**kw), overwrite=overwrite)
    if recipe is not None:
        from geomm.recipe import load_recipe

        summaries = predict_recipe(bundle, load_recipe(recipe), out, options=options)
    else:
        pairs = [(name, f) for name, files in map(_pair, modality) for f in files.split(",")]
        summaries = [predict_scene(bundle, modalities_from_files(bundle, pairs), out,
                                   options=options)]
    for s in summaries:
        click.echo(s.describe())
