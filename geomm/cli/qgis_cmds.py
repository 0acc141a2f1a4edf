"""``geomm qgis install|uninstall``: the QGIS Processing provider (:mod:`geomm.qgis`)."""

from __future__ import annotations

from pathlib import Path

import click

from geomm.cli.group import main
from geomm.errors import GeommError

_PROFILE = click.option(
    "--profile-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
    help="QGIS profile folder (default: this user's default profile, e.g. "
         "~/.local/share/QGIS/QGIS3/profiles/default).")


@main.group("qgis")
def qgis_group() -> None:
    """Use geomm from QGIS: a Processing provider that runs this geomm."""


@qgis_group.command("install")
@_PROFILE
@click.option("--executable", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The geomm command the plugin runs (default: this environment's).")
def install_cmd(profile_dir: Path | None, executable: Path | None) -> None:
    """Install the geomm Processing plugin into a QGIS profile and enable it.

    Algorithms geomm:stack, train, predict, vectorize, evaluate and sample_design appear in
    the Processing toolbox (and in `qgis_process list`) after QGIS restarts. Only the
    plugin's own folder is replaced; run it again after moving this environment.
    """
    from geomm.qgis.installer import InstallError, install
    from geomm.recipe import bundled_recipes

    try:
        done = install(profile_dir, executable, recipes=sorted(bundled_recipes()))
    except InstallError as e:
        raise GeommError(str(e)) from None
    click.echo(f"installed the QGIS plugin in {done.plugin_dir}\n"
               f"  runs {done.executable} (override with GEOMM_EXECUTABLE)\n"
               f"  enabled in {done.ini}; restart QGIS to load it")


@qgis_group.command("uninstall")
@_PROFILE
def uninstall_cmd(profile_dir: Path | None) -> None:
    """Remove the geomm Processing plugin from a QGIS profile."""
    from geomm.qgis.installer import uninstall

    gone = uninstall(profile_dir)
    click.echo(f"removed {gone}" if gone else "the geomm plugin is not installed there")
