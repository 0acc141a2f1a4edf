"""Outputs loaded styled: the class map with geomm's ``classes.qml``; polygons and points
coloured by class, from the style a GeoPackage embeds or else from the map's palette."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingUtils,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsSymbol,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

__all__ = ["ClassColour", "load_on_completion", "palette_of", "style_vector_file"]


class ClassColour(NamedTuple):
    value: int
    label: str
    colour: str
    """``#rrggbb``."""


def palette_of(layer: QgsRasterLayer | None) -> list[ClassColour]:
    """The classes of a class raster as styled (geomm's classes.qml, or the GeoTIFF's colour
    table); empty if it is neither."""
    if layer is None or not layer.isValid():
        return []
    renderer = layer.renderer()
    if isinstance(renderer, QgsPalettedRasterRenderer):
        classes = renderer.classes()
    else:
        classes = QgsPalettedRasterRenderer.colorTableToClassData(
            layer.dataProvider().colorTable(1))
    return [ClassColour(int(c.value), str(c.label or c.value), c.color.name()) for c in classes]


def palette_of_file(path: str) -> list[ClassColour]:
    """:func:`palette_of` the raster file ``path`` (opened with its default style)."""
    return palette_of(QgsRasterLayer(path, "classes", "gdal"))


def _categorized(layer: QgsVectorLayer, field: str, palette: list[ClassColour]) -> bool:
    if layer.fields().indexOf(field) < 0 or not palette:
        return False
    categories = []
    for c in palette:
        symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        symbol.setColor(QColor(c.colour))
        categories.append(QgsRendererCategory(c.value, symbol, c.label))
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, categories))
    return True


def style_vector_file(uri: str, field: str, palette: list[ClassColour]) -> str | None:
    """Give the vector output ``uri`` (``file.gpkg|layername=...``) a class-coloured style
    that QGIS loads with it: none is written when the file embeds one already (geomm's
    GeoPackages may); else a ``.qml`` beside the file, categorized on ``field``.

    Returns:
        The .qml written, or None.
    """
    layer = QgsVectorLayer(uri, "classes", "ogr")
    if not layer.isValid() or isinstance(layer.renderer(), QgsCategorizedSymbolRenderer):
        return None
    if not _categorized(layer, field, palette):
        return None
    qml = str(Path(uri.split("|")[0]).with_suffix(".qml"))
    _, ok = layer.saveNamedStyle(qml)
    return qml if ok else None


class _Styler(QgsProcessingLayerPostProcessorInterface):
    """Applied by QGIS to a loaded output, in the main thread."""

    def __init__(self, style: str | None, field: str | None,
                 palette: list[ClassColour]) -> None:
        super().__init__()
        self.style, self.field, self.palette = style, field, palette

    def postProcessLayer(self, layer: Any, context: Any, feedback: Any) -> None:
        if self.style:
            layer.loadNamedStyle(self.style)
        elif isinstance(layer, QgsVectorLayer):
            layer.loadDefaultStyle()
            if not isinstance(layer.renderer(), QgsCategorizedSymbolRenderer) and self.field:
                _categorized(layer, self.field, self.palette)
        layer.triggerRepaint()
        _ALIVE.discard(self)


_ALIVE: set[_Styler] = set()
"""QGIS keeps post-processors as plain pointers: Python must hold them until they ran."""


def load_on_completion(context: QgsProcessingContext, uri: str, name: str, output: str, *,
                       raster: bool, style: str | None = None, field: str | None = None,
                       palette: list[ClassColour] | None = None) -> None:
    """Ask QGIS to add ``uri`` to the project when the algorithm is done (a no-op headless,
    without a project), styled from ``style`` (a .qml) or coloured by class on ``field``."""
    hint = QgsProcessingUtils.LayerHint.Raster if raster else QgsProcessingUtils.LayerHint.Vector
    details = QgsProcessingContext.LayerDetails(name, context.project(), output, hint)
    styler = _Styler(style, field, list(palette or []))
    _ALIVE.add(styler)
    details.setPostProcessor(styler)
    context.addLayerToLoadOnCompletion(uri, details)
