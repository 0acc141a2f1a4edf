"""Running real QGIS for the plugin tests: ``qgis_process`` and QGIS's own Python
(Debian's qgis, python3-qgis, qgis-providers), headless, with the plugin's profile."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import need_program

HERE = Path(__file__).parent
QGIS_PYTHON = "/usr/bin/python3"
"""QGIS's Python on Debian (python3-qgis), not geomm's venv: the plugin runs there."""
GEOMM = str(Path(sys.executable).with_name("geomm"))


def qgis_process_command() -> list[str]:
    """``qgis_process``. Debian 12's /usr/bin/qgis_process is a wrapper that passes
    ``--noversioncheck`` (from /etc/default/qgis), which qgis_process 3.22 rejects ("Command
    --noversioncheck not known!", qgis/QGIS#57683); the binary beside it is qgis_process
    itself."""
    exe = need_program("qgis_process", why="the QGIS plugin tests run it", package="qgis")
    binary = Path(exe).with_name("qgis_process.bin")
    return [str(binary) if binary.exists() else exe]


NOT_FOR_QGIS = {"GEOMM_EXECUTABLE", "PYTHONPATH", "PYTHONHOME", "GDAL_DATA", "GDAL_DRIVER_PATH",
                 "PROJ_LIB", "PROJ_DATA", "VIRTUAL_ENV"}
"""The venv's (its wheels' GDAL and PROJ data, set by rasterio/pyproj in this process), or a
geomm override: not for QGIS, which has its own."""


@dataclass(frozen=True)
class Qgis:
    """A QGIS user profile with the plugin installed, and the environment that uses it."""

    profile: Path
    env: dict[str, str]

    @property
    def plugins(self) -> Path:
        return self.profile / "python" / "plugins"

    def qgis_process(self, *args: str, env: dict[str, str] | None = None,
                     timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*qgis_process_command(), *args], env=env or self.env,
                              capture_output=True, text=True, timeout=timeout)

    def pyqgis(self, *args: str, timeout: float = 180) -> dict[str, Any]:
        """Run tests/qgis/pyqgis_checks.py with QGIS's Python; its JSON document."""
        proc = subprocess.run([QGIS_PYTHON, str(HERE / "pyqgis_checks.py"), *args],
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("GEOMM-JSON ")]
        assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
        return json.loads(lines[-1][len("GEOMM-JSON "):])


