"""``geomm evaluate`` (accuracy report of a map) and ``geomm sample-design`` (reference points)."""

from __future__ import annotations

import math
from pathlib import Path

import click

from geomm.cli import options as opt
from geomm.cli.group import main


def _expected_ua(values: tuple[str, ...]) -> float | dict[str, float] | None:
    """``--expected-ua 0.7`` (every class) or ``--expected-ua NAME=0.7`` (repeatable)."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        try:
            return float(values[0])
        except ValueError:
            raise click.BadParameter(f"{values[0]!r} is not a number; give U or NAME=U",
                                     param_hint="--expected-ua") from None
    out: dict[str, float] = {}
    for v in values:
        name, sep, num = v.rpartition("=")
        try:
            out[name] = float(num)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise click.BadParameter(f"{v!r}: give NAME=U (e.g. 'Forest gain=0.7'), or one "
                                     "number for every class", param_hint="--expected-ua")
    return out


_bundle = click.option("--bundle", type=click.Path(path_type=Path, exists=True), default=None,
                       help="Model bundle with the class names, for a map that carries none.")


@main.command("evaluate")
@click.argument("map_path", metavar="MAP", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("reference", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--column", default="reference", show_default=True, metavar="NAME",
              help="Reference class column of a vector REFERENCE.")
@click.option("--sampling", type=click.Choice(["stratified", "simple"]), default="stratified",
              show_default=True,
              help="Design of the reference sample: stratified by map class (Olofsson et al. "
                   "2014; also right for simple random samples) or simple random.")
@click.option("--unknown-classes", type=click.Choice(["error", "extra", "skip"]),
              default="error", show_default=True,
              help="A reference class the map lacks: stop, score it as a class the map never "
                   "predicts, or leave it out (always reported).")
@_bundle
@click.option("-o", "--out", "out", required=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="Report folder: metrics.json, report.md, report.html and PNG plots.")
@opt.overwrite
def evaluate_cmd(map_path: Path, reference: Path, column: str, sampling: str,
                 unknown_classes: str, bundle: Path | None, out: Path,
                 overwrite: bool) -> None:
    """Assess the accuracy of a land-cover MAP against a REFERENCE sample.

    MAP is a class COG (classes.tif) or a probabilities COG (its argmax). REFERENCE is a
    vector file of points (one sample each) or polygons (every pixel they cover), or a label
    raster. Classes are matched by name. Writes the error matrix, OA, kappa, per-class
    scores and error-adjusted area estimates with 95 % confidence intervals.
    """
    from geomm.assess.evaluate import evaluate

    a = evaluate(map_path, reference, out, column=column, sampling=sampling,  # type: ignore[arg-type]
                 bundle=bundle, unknown_classes=unknown_classes, overwrite=overwrite)
    s = a.scores
    click.echo(f"{int(a.error_matrix.sum())} samples scored: OA {s.overall_accuracy:.3f}, "
               f"kappa {s.kappa:.3f}, macro-F1 {s.macro.f1:.3f}")
    if a.estimates is not None:
        e = a.estimates.overall
        ci = "n/a (a class has a single sample)" if math.isnan(e.ci95) else f"{e.ci95:.3f}"
        click.echo(f"estimated OA {e.value:.3f} ± {ci} (95% CI, {a.sampling})")
    click.echo(f"report: {out / 'report.html'}")


@main.command("sample-design")
@click.argument("map_path", metavar="MAP", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-n", "n", required=True, type=click.IntRange(min=1), help="Number of points.")
@click.option("--allocation", type=click.Choice(["proportional", "equal", "neyman"]),
              default="proportional", show_default=True, help="How points go to map classes.")
@click.option("--expected-ua", multiple=True, metavar="[NAME=]U",
              help="Expected user's accuracy for neyman: one number for all classes, or "
                   "NAME=U per class (repeatable; others 0.8).")
@click.option("--min-per-class", type=click.IntRange(min=0), default=0, show_default=True,
              help="At least this many points per map class (e.g. 50 for rare classes).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Random seed.")
@_bundle
@click.option("-o", "--out", "out", required=True,
              type=click.Path(path_type=Path, dir_okay=False),
              help="Output GeoPackage (layer 'samples').")
@opt.overwrite
def sample_design_cmd(map_path: Path, n: int, allocation: str, expected_ua: tuple[str, ...],
                      min_per_class: int, seed: int, bundle: Path | None, out: Path,
                      overwrite: bool) -> None:
    """Draw a stratified random sample of reference points from a class MAP.

    Strata are the map classes. Open the GeoPackage in QGIS and fill the `reference` column
    of each point, then run `geomm evaluate MAP points.gpkg -o REPORT_DIR`.
    """
    from geomm.assess.sampledesign import sample_design

    design = sample_design(map_path, n, out, allocation=allocation,  # type: ignore[arg-type]
                           expected_ua=_expected_ua(expected_ua), min_per_class=min_per_class,
                           seed=seed, bundle=bundle, overwrite=overwrite)
    click.echo(design.describe())
