"""The ``geomm`` click group: one error line per failure, geomm warnings as lines, --debug."""

from __future__ import annotations

import warnings
from typing import Any

import click

from geomm.cli.boundary import explain
from geomm.errors import GeommWarning


class _GeommGroup(click.Group):
    """Turns any failure into one stderr line ``geomm: error: ...`` and exit 1 (the error
    boundary, :mod:`geomm.cli.boundary`); ``--debug`` shows the traceback instead. Ctrl-C
    exits 130 with one line."""

    def invoke(self, ctx: click.Context) -> Any:
        _show_geomm_warnings_as_lines()
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            click.echo("geomm: interrupted (no partial output is kept)", err=True)
            ctx.exit(130)
        except Exception as exc:
            if _debug(ctx):
                raise
            click.echo(f"geomm: error: {explain(exc)}", err=True)
            ctx.exit(1)


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.params.get("debug") or (ctx.obj or {}).get("debug"))


def _show_geomm_warnings_as_lines() -> None:
    """geomm's own warnings print as ``geomm: warning: ...``; others keep Python's format."""
    default = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if issubclass(category, GeommWarning):
            click.echo(f"geomm: warning: {message}", err=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


@click.group(cls=_GeommGroup)
@click.version_option(package_name="geomm")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """geomm: multimodal raster fusion into land-cover maps."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
