"""The command line: light commands stay light, errors are one line, --debug shows more."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from geomm.cli import main


def test_light_commands_do_not_import_torch_or_dask(make_raster):
    path = make_raster("a.tif", np.zeros((8, 8), np.uint8))
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from geomm.cli import main\n"
        "r = CliRunner()\n"
        "assert r.invoke(main, ['--help']).exit_code == 0\n"
        "assert r.invoke(main, ['sample']).exit_code == 0\n"
        f"assert r.invoke(main, ['info', {str(path)!r}]).exit_code == 0\n"
        "heavy = sorted(m for m in ('torch', 'torchgeo', 'lightning', 'dask', 'xarray')\n"
        "               if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_commands():
    res = CliRunner().invoke(main, ["--help"])
    for cmd in ("info", "sample", "stack", "demo"):
        assert cmd in res.output


def test_usage_error_exits_2_and_geomm_error_exits_1(tmp_path):
    r = CliRunner()
    assert r.invoke(main, ["stack"]).exit_code == 2  # missing RECIPE: a usage error
    res = r.invoke(main, ["stack", str(tmp_path / "none.yaml")])
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert "no such recipe file" in res.stderr and "Traceback" not in res.stderr


def test_debug_shows_the_traceback(tmp_path):
    res = CliRunner().invoke(main, ["--debug", "stack", str(tmp_path / "none.yaml")])
    assert res.exit_code == 1
    assert type(res.exception).__name__ == "RecipeError"
