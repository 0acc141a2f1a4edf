"""The ``geomm`` click group: one error line per failure, geomm warnings as lines, --debug."""

from __future__ import annotations

import atexit
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
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
        with gdal_messages(ctx):
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            _quiet_cut_short_writers()
            ctx.meta["geomm.failed"] = True  # the line says it all: no GDAL warning either
            click.echo("geomm: interrupted (no partial output is kept)", err=True)
            ctx.exit(130)
        except Exception as exc:
            if _debug(ctx):
                raise
            _quiet_cut_short_writers()
            ctx.meta["geomm.failed"] = True  # the error line says it all: no GDAL warning
            click.echo(f"geomm: error: {explain(exc)}", err=True)
            ctx.exit(1)


def _quiet_cut_short_writers() -> None:
    """Worker threads cut short by an error or Ctrl-C (zarr's async writes) would each print
    "Task was destroyed but it is pending!" at exit: noise after our one line."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


@contextmanager
def gdal_messages(ctx: click.Context) -> Iterator[None]:
    """GDAL's own messages go through geomm: its default handler writes to a log file
    (``CPL_LOG``) instead of stderr; after the command, any ERROR lines become one geomm
    warning line (all of them with ``--debug``). A ``CPL_LOG`` the user set is left alone."""
    if "CPL_LOG" in os.environ:
        yield
        return
    fd, name = tempfile.mkstemp(prefix="geomm-gdal-", suffix=".log")
    os.close(fd)
    os.environ["CPL_LOG"] = name  # for the process: threads still reading after an error
    atexit.register(_remove, name)  # write there too, not to the user's terminal
    try:
        yield
    finally:
        try:
            lines = [ln.strip() for ln in Path(name).read_text(errors="replace").splitlines()
                     if ln.startswith("ERROR")]
        except OSError:
            lines = []
        if lines and (_debug(ctx) or not ctx.meta.get("geomm.failed")):
            if _debug(ctx):
                for ln in lines:
                    click.echo(f"geomm: GDAL: {ln}", err=True)
            else:
                more = f" (and {len(lines) - 1} more; --debug shows them)" if len(lines) > 1 \
                    else ""
                click.echo(f"geomm: warning: GDAL reported {lines[0]}{more}", err=True)


def _remove(name: str) -> None:
    try:
        os.unlink(name)
    except OSError:
        pass


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
