"""``geomm vectorize``: a class raster to polygons per class (GeoPackage or GeoParquet)."""

from __future__ import annotations

from pathlib import Path

import click

from geomm.cli import options as opt
from geomm.cli.group import main


@main.command("vectorize")
@click.argument("classes_tif", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--out", "out", required=True,
              type=click.Path(path_type=Path, dir_okay=False),
              help="Output file: .gpkg (layer 'classes') or .parquet (GeoParquet).")
@click.option("--min-area", type=click.FloatRange(min=0), default=None, metavar="M2",
              help="Sieve regions smaller than this (square metres) into a neighbour first.")
@click.option("--simplify", type=click.FloatRange(min=0), default=None, metavar="M",
              help="Simplify shared edges with this tolerance (metres), keeping the coverage.")
@click.option("--window", type=click.IntRange(min=1), default=2048, show_default=True,
              metavar="PX", help="Side of the square windows read at a time, pixels.")
@opt.overwrite
def vectorize_cmd(classes_tif: Path, out: Path, min_area: float | None,
                  simplify: float | None, window: int, overwrite: bool) -> None:
    """Turn a land-cover class raster into polygons per class, window by window.

    CLASSES_TIF is a single-band integer GeoTIFF/COG of class ids; names come from its
    GEOMM_CLASSES tag. No polygon is cut at the windows.
    """
    from geomm.vector.vectorize import vectorize

    summary = vectorize(classes_tif, out, min_area=min_area, simplify=simplify,
                        window=window, overwrite=overwrite)
    click.echo(summary.describe())
