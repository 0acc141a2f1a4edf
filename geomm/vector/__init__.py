"""Stage 4b, vectorise: class rasters to seam-free polygons (window pieces stitched across
seams, sieved, simplified as a coverage) in any OGR vector format, GeoParquet or PostGIS, styled
for QGIS."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geomm._lazy import lazy_exports

_EXPORTS = {"VectorizeSummary": "vectorize"}
__all__ = ["VectorizeSummary"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from geomm.vector.vectorize import VectorizeSummary
