"""The QGIS plugin object: registers the geomm Processing provider (desktop and qgis_process)."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication

from .provider import GeommProvider


class GeommPlugin:
    """Adds the provider in ``initProcessing`` (all QGIS needs, also headless) and removes it
    on unload."""

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: GeommProvider | None = None

    def initProcessing(self) -> None:
        if self.provider is None:
            self.provider = GeommProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
