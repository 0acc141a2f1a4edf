"""geomm in QGIS: a Processing provider whose algorithms run the ``geomm`` command line.

This folder is two things. As ``geomm.qgis`` it holds :mod:`~geomm.qgis.installer`, which
``geomm qgis install`` uses to copy the folder into a QGIS profile. Copied there, as the QGIS
plugin ``geomm_processing``, it is loaded by QGIS's own Python: its modules import only
``qgis.*`` and the standard library, never geomm (whose environment QGIS does not see); they
run geomm as a subprocess, the way QGIS's GDAL, SAGA and OTB providers run their tools.
Importing this package imports nothing from QGIS; :func:`classFactory` does, when QGIS calls it.
"""

from __future__ import annotations

from typing import Any


def classFactory(iface: Any) -> Any:
    """QGIS's entry point: the plugin object (``iface`` is None in ``qgis_process``)."""
    from .plugin import GeommPlugin

    return GeommPlugin(iface)
