"""Open a layer in real QGIS (Debian's python3-qgis, offscreen) and report how it is styled."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import require_or_skip

SYSTEM_PYTHON = "/usr/bin/python3"
_SCRIPT = r"""
import json, os, sys
from qgis.core import QgsApplication, QgsProviderRegistry, QgsVectorLayer
app = QgsApplication([], False)
app.initQgis()
uri, provider = sys.argv[1], sys.argv[2]
out = {}
if provider == "ogr":
    out["sublayers"] = [s.name() for s in QgsProviderRegistry.instance().querySublayers(uri)]
    uri += "|layername=classes"
layer = QgsVectorLayer(uri, "map", provider)  # loads the layer's default style, as QGIS does
out["valid"] = layer.isValid()
out["count"] = layer.featureCount()
renderer = layer.renderer()
out["renderer"] = renderer.type() if renderer else None
if out["renderer"] == "categorizedSymbol":
    out["attr"] = renderer.classAttribute()
    out["categories"] = [[str(c.value()), c.label(), c.symbol().color().name()]
                         for c in renderer.categories()]
print("RESULT " + json.dumps(out), flush=True)
os._exit(0)  # QGIS 3.22 may crash in its exit handlers, after the answer
"""


def qgis_layer(uri: str, provider: str, workdir: Path) -> dict[str, Any]:
    """What QGIS makes of ``uri`` (``ogr`` file or ``postgres`` URI): validity, features,
    renderer, categories ``[value, label, #colour]`` and (``ogr``) the sublayers it offers."""
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True)
    if probe.returncode != 0:
        require_or_skip("QGIS's Python bindings are not installed (apt-get install "
                        "python3-qgis) - the test opens the map in real QGIS")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "QT_QPA_PLATFORM": "offscreen",
           "XDG_RUNTIME_DIR": str(workdir), "LANG": "C.UTF-8"}  # not the venv's GDAL/PROJ
    proc = subprocess.run([SYSTEM_PYTHON, "-c", _SCRIPT, uri, provider], capture_output=True,
                          text=True, env=env, timeout=120, cwd=workdir)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    return dict(json.loads(lines[-1][len("RESULT "):]))
