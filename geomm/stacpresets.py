"""Presets: the collections users search most, with their asset keys, masks and scales, so a
recipe says ``preset: sentinel-2-l2a/earth-search`` instead of looking up asset keys.

geomm's band names are the same whichever catalogue serves the data (Sentinel-2 ``B04`` is
``red`` at Earth Search and ``B04`` at Planetary Computer), so a model trained on one reads the
other. Each preset was checked against real item documents of its catalogue
(``tests/sources/items/``, sources cited there).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRESETS", "MaskSpec", "Preset"]


@dataclass(frozen=True)
class MaskSpec:
    """A per-pixel quality asset: the pixels to leave out of the composite."""

    asset: str
    """Asset key of the mask raster (e.g. Sentinel-2 ``scl``, Landsat ``qa_pixel``)."""
    drop: tuple[int, ...] = ()
    """Values to leave out (Sentinel-2 SCL classes)."""
    bits: tuple[int, ...] = ()
    """Bits to leave out where set (Landsat QA_PIXEL: 0 fill, 1 dilated cloud, 3 cloud...)."""


@dataclass(frozen=True)
class Preset:
    """A collection as one catalogue serves it."""

    name: str
    """``collection/catalogue`` (or the collection id where catalogues agree)."""
    collection: str
    """The catalogue's collection id."""
    assets: dict[str, str]
    """geomm band name -> asset key, in the default band order."""
    mask: MaskSpec | None = None
    """Default quality mask."""
    composite: str = "median"
    """Default composite (``first`` for mosaics of disjoint tiles such as a DEM)."""
    scale: float = 1.0
    """DN -> physical value when the items do not say (``raster:bands`` wins)."""
    offset: float = 0.0
    """See ``scale``."""
    note: str = ""
    """What a user should know."""


def _presets() -> dict[str, Preset]:
    s2_names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11",
                "B12"]
    es_keys = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir",
               "nir08", "nir09", "swir16", "swir22"]
    # SCL classes left out: 0 no data, 1 saturated/defective, 3 cloud shadow, 8-9 cloud
    # (medium, high probability), 10 thin cirrus
    scl = (0, 1, 3, 8, 9, 10)
    s2_note = ("processing baseline 04.00 (from 2022-01-25) adds 1000 to every DN; items that "
               "declare raster:bands offsets are composited in reflectance")
    presets = [
        Preset("sentinel-2-l2a/earth-search", "sentinel-2-l2a",
               dict(zip(s2_names, es_keys, strict=True)), MaskSpec("scl", scl),
               scale=0.0001, note=s2_note),
        Preset("sentinel-2-l2a/planetary-computer", "sentinel-2-l2a",
               {n: n for n in s2_names}, MaskSpec("SCL", scl), scale=0.0001, note=s2_note),
        # Landsat Collection 2 Level-2 surface reflectance (Planetary Computer and Earth
        # Search use the same keys); QA_PIXEL bits left out: 0 fill, 1 dilated cloud,
        # 2 cirrus, 3 cloud, 4 cloud shadow
        Preset("landsat-c2-l2", "landsat-c2-l2",
               {"blue": "blue", "green": "green", "red": "red", "nir08": "nir08",
                "swir16": "swir16", "swir22": "swir22"},
               MaskSpec("qa_pixel", bits=(0, 1, 2, 3, 4)), scale=0.0000275, offset=-0.2),
        Preset("sentinel-1-rtc", "sentinel-1-rtc", {"VV": "vv", "VH": "vh"},
               note="gamma-0 terrain-corrected backscatter, linear power"),
        Preset("cop-dem-glo-30", "cop-dem-glo-30", {"elevation": "data"}, composite="first",
               note="Copernicus DEM GLO-30: disjoint 1-degree tiles, mosaicked"),
    ]
    return {p.name: p for p in presets}


PRESETS: dict[str, Preset] = _presets()
"""Preset name -> :class:`Preset`."""
