"""``geomm batch``: many scenes, or one large scene in blocks, on Dask distributed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from geomm.cli import options as opt
from geomm.cli.group import main


def _grid(value: str | None) -> str | int | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else value


@main.command("batch")
@click.argument("recipe")
@click.option("--bundle", type=click.Path(path_type=Path, file_okay=False, exists=True),
              required=True, help="Model bundle (geomm train).")
@click.option("--scenes", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="YAML list of scenes (id + modality files), a block each.")
@click.option("--grid", "grid", default=None, metavar="GRID.gpkg|PIXELS",
              help="Cut the recipe's scene into blocks: polygons of a vector file (their "
                   "bounding boxes), or squares of this many base pixels.")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="Job folder: block outputs, the manifest geomm-batch.json and (grid "
                   "jobs) the mosaic.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local Dask worker processes (default: one per 4 cores); the cores are "
                   "shared out as torch threads.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Use an existing Dask cluster (e.g. tcp://host:8786) instead of a local "
                   "one.")
@click.option("--no-cluster", is_flag=True,
              help="Run the blocks one after another in this process (no Dask).")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              help="Extra attempts for a block that fails.")
@click.option("--no-vector", is_flag=True, help="No vector map.")
@click.option("--vector-out", default=None, metavar="NAME|postgresql://...|PG:...",
              help="The vector map: a file name written instead of map.gpkg in each output "
                   "folder (map.fgb, map.parquet, map.geojson), or a PostGIS database: every "
                   "block's polygons in one table (the password is never printed).")
@click.option("--vector-table", default=None, metavar="[SCHEMA.]TABLE",
              help="PostGIS table of --vector-out (default public.classes).")
@click.option("--append", "vector_append", is_flag=True,
              help="Add to a PostGIS table that exists before the job's first run.")
@opt.predict_options
def batch_cmd(recipe: str, bundle: Path, scenes: Path | None, grid: str | None, out: Path,
              workers: int | None, scheduler: str | None, no_cluster: bool, retries: int,
              no_vector: bool, vector_out: str | None, vector_table: str | None,
              vector_append: bool, **kw: Any) -> None:
    """Predict many scenes (--scenes, or the RECIPE's own scenes) or one large scene cut into
    blocks (--grid) with a model BUNDLE, on Dask distributed.

    Rerunning the same command resumes: blocks already done with the same inputs, bundle
    and options are kept. Exits with status 1 when a block failed (the others complete).
    """
    from geomm.batch.jobs import grid_job, recipe_job, scenes_job
    from geomm.batch.runner import BatchError, BatchOptions, run_batch
    from geomm.recipe import load_recipe

    if scenes is not None and grid is not None:
        raise click.UsageError("give --scenes or --grid, not both")
    if sum((scheduler is not None, no_cluster, workers is not None)) > 1:
        raise click.UsageError("--workers, --scheduler and --no-cluster exclude each other")
    rec = load_recipe(recipe)
    job = (scenes_job(rec, scenes) if scenes is not None
           else grid_job(rec, g) if (g := _grid(grid)) is not None else recipe_job(rec))
    predict = opt.prediction(**kw)
    summary = run_batch(job, bundle, out, predict=predict, echo=click.echo, options=BatchOptions(
        workers=workers, scheduler=scheduler, in_process=no_cluster, retries=retries,
        vector=not no_vector, progress=predict.progress, vector_out=vector_out,
        vector_table=vector_table, vector_append=vector_append))
    click.echo(summary.describe())
    if not summary.ok:
        raise BatchError(f"{len(summary.failed)} of {summary.blocks} blocks failed (errors in "
                         f"{out / 'geomm-batch.json'}); the other blocks are complete. Fix the "
                         "inputs and rerun the same command")
