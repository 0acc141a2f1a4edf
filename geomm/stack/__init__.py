"""Stage 1-2, read + co-register + tile: sources, the grid family, lazy co-registration,
labels burned onto the grid, and the tile store that every later stage reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from geomm._lazy import lazy_exports

_EXPORTS = {"stack": "build", "SceneSummary": "build", "open_store": "store", "TileStore": "store"}
__all__ = ["SceneSummary", "TileStore", "open_store", "stack"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from geomm.stack.build import SceneSummary, stack
    from geomm.stack.store import TileStore, open_store
