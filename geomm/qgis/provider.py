"""The ``geomm`` Processing provider: one algorithm per geomm command."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import ALGORITHMS


class GeommProvider(QgsProcessingProvider):
    """Algorithms ``geomm:stack``, ``geomm:train``, ``geomm:predict``, ``geomm:vectorize``,
    ``geomm:evaluate``, ``geomm:sample_design``."""

    def id(self) -> str:
        return "geomm"

    def name(self) -> str:
        return "geomm"

    def longName(self) -> str:
        return "geomm: multimodal raster fusion into land-cover maps"

    def icon(self) -> QIcon:
        return QIcon(str(Path(__file__).with_name("icon.svg")))

    def loadAlgorithms(self) -> None:
        for cls in ALGORITHMS:
            self.addAlgorithm(cls())
