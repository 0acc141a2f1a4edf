"""``geomm vectorize``: a class raster to polygons per class (any OGR vector format, or
PostGIS)."""

from __future__ import annotations

from pathlib import Path

import click

from geomm.cli.group import main


@main.command("vectorize")
@click.argument("classes_tif", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--out", "out", required=True, metavar="FILE|postgresql://...|PG:...",
              help="Output: a file whose suffix names the format (.gpkg, .parquet GeoParquet, "
                   ".fgb, .shp, .geojson) or a PostGIS database (postgresql://USER@HOST:PORT/DB "
                   "or PG:'host=... dbname=...'; the password is never printed).")
@click.option("--table", "--layer", "layer", default=None, metavar="[SCHEMA.]NAME",
              help="PostGIS table (default public.classes), or the layer name of a file "
                   "(default classes).")
@click.option("--driver", default=None, metavar="NAME",
              help="GDAL/OGR driver (GPKG, FlatGeobuf, 'ESRI Shapefile', GeoJSON, ...) or "
                   "GeoParquet, instead of the one the suffix names.")
@click.option("--min-area", type=click.FloatRange(min=0), default=None, metavar="M2",
              help="Sieve regions smaller than this (square metres) into a neighbour first.")
@click.option("--simplify", type=click.FloatRange(min=0), default=None, metavar="M",
              help="Simplify shared edges with this tolerance (metres), keeping the coverage.")
@click.option("--window", type=click.IntRange(min=1), default=2048, show_default=True,
              metavar="PX", help="Side of the square windows read at a time, pixels.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing file or table (a table in one transaction), and "
                   "the style <name>.qml or shapefile parts beside a file.")
@click.option("--append", is_flag=True,
              help="PostGIS: add the polygons to an existing table (same columns).")
def vectorize_cmd(classes_tif: Path, out: str, layer: str | None, driver: str | None,
                  min_area: float | None, simplify: float | None, window: int,
                  overwrite: bool, append: bool) -> None:
    """Turn a land-cover class raster into polygons per class, window by window.

    CLASSES_TIF is a single-band integer GeoTIFF/COG of class ids; names and colours come from
    its GEOMM_CLASSES tag. No polygon is cut at the windows. A GeoPackage or PostGIS table
    carries its QGIS style (layer_styles); a table is written in one transaction.
    """
    from geomm.vector.vectorize import vectorize

    summary = vectorize(classes_tif, out, min_area=min_area, simplify=simplify,
                        window=window, overwrite=overwrite, append=append, layer=layer,
                        driver=driver)
    click.echo(summary.describe())
