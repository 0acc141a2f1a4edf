"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path

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
