"""The target grid family every modality is put on.

A :class:`GridSpec` is one CRS, a base resolution and aligned bounds. A modality lives on the
grid at an integer *factor* of the base resolution (10 m base: 20 m is factor 2, 60 m factor
6); every factor's pixel edges fall on base pixel edges, so one base tile maps onto whole
pixels of every layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from affine import Affine
from rasterio.crs import CRS

from geomm.errors import GridError

__all__ = ["GridSpec", "same_crs", "to_crs"]

# Coordinates closer than this fraction of a pixel count as equal (float noise in transforms).
PIXEL_TOLERANCE = 1e-6


def to_crs(value: Any) -> CRS:
    """Parse anything rasterio accepts (``"EPSG:32633"``, WKT, PROJ string, CRS) into a CRS."""
    if isinstance(value, CRS):
        return value
    try:
        return CRS.from_user_input(value)
    except Exception as exc:  # rasterio raises CRSError, pyproj its own
        raise GridError(f"CRS {value!r} is not understood ({exc}); "
                        "give an EPSG code such as 'EPSG:32633' or a WKT string") from None


@lru_cache(maxsize=256)
def _same_crs_wkt(a: str, b: str) -> bool:
    from pyproj import CRS as ProjCRS

    pa, pb = ProjCRS.from_user_input(a), ProjCRS.from_user_input(b)
    return bool(pa.equals(pb, ignore_axis_order=True))


def same_crs(a: CRS | str, b: CRS | str) -> bool:
    """Tell whether two CRSs are the same, however each is written (EPSG code, WKT1/2, PROJ).

    Compared by PROJ's equivalence test with axis order ignored (GIS files store x/y order
    whatever the authority says), so ``EPSG:32119`` equals its WKT and no warp is made.
    """
    ca, cb = to_crs(a), to_crs(b)
    if ca == cb:
        return True
    return _same_crs_wkt(ca.to_wkt(), cb.to_wkt())


@dataclass(frozen=True)
class GridSpec:
    """One CRS, a base resolution and aligned bounds: the grid family of a stack."""

    crs: CRS
    """Target coordinate reference system."""
    resolution: float
    """Base (finest) pixel size in CRS units; square pixels, north-up."""
    bounds: tuple[float, float, float, float]
    """(left, bottom, right, top), whole base pixels."""

    def __post_init__(self) -> None:
        if not (self.resolution > 0 and math.isfinite(self.resolution)):
            raise GridError(f"grid resolution must be a positive number, not {self.resolution}")
        left, bottom, right, top = self.bounds
        if not (right > left and top > bottom):
            raise GridError(f"grid bounds {self.bounds} are empty: need left < right, "
                            "bottom < top")
        for extent, axis in ((right - left, "width"), (top - bottom, "height")):
            px = extent / self.resolution
            if abs(px - round(px)) > PIXEL_TOLERANCE * max(1.0, px):
                raise GridError(f"grid {axis} {extent} is not a whole number of "
                                f"{self.resolution} pixels; snap the bounds to the resolution")

    @property
    def width(self) -> int:
        """Width in base pixels."""
        return round((self.bounds[2] - self.bounds[0]) / self.resolution)

    @property
    def height(self) -> int:
        """Height in base pixels."""
        return round((self.bounds[3] - self.bounds[1]) / self.resolution)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in base pixels."""
        return self.height, self.width

    @property
    def transform(self) -> Affine:
        """Affine transform of the base grid."""
        return self.transform_at(1)

    def transform_at(self, factor: int) -> Affine:
        """Affine transform of the layer at ``factor`` times the base resolution."""
        res = self.resolution * factor
        return Affine(res, 0.0, self.bounds[0], 0.0, -res, self.bounds[3])

    def shape_at(self, factor: int) -> tuple[int, int]:
        """(height, width) of the layer at ``factor``; the grid must be a multiple of it."""
        if self.height % factor or self.width % factor:
            raise GridError(f"grid of {self.width} x {self.height} px is not a whole number of "
                            f"factor-{factor} pixels ({self.resolution * factor:g} units)")
        return self.height // factor, self.width // factor

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (CRS as WKT2 plus EPSG code when there is one)."""
        return {"crs": self.crs.to_wkt(), "epsg": self.crs.to_epsg(),
                "resolution": self.resolution, "bounds": list(self.bounds)}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> GridSpec:
        """Inverse of :meth:`to_dict`."""
        left, bottom, right, top = (float(v) for v in doc["bounds"])
        return cls(to_crs(doc["crs"]), float(doc["resolution"]), (left, bottom, right, top))

    @property
    def unit(self) -> str:
        """Short name of the CRS's unit, as layer names carry it: ``m``, ``deg``, ``ft``,
        ``usft``, else ``u`` (a unit with no short name)."""
        return crs_unit(self.crs)

    def describe(self) -> str:
        """One line for people: CRS, resolution, size, bounds."""
        epsg = self.crs.to_epsg()
        crs = f"EPSG:{epsg}" if epsg else (self.crs.to_string() or "custom CRS")
        b = ", ".join(f"{v:.6g}" for v in self.bounds)
        return (f"{crs}, {self.resolution:g} {self.unit}/px, {self.width} x {self.height} px, "
                f"bounds ({b})")


_UNITS = {"metre": "m", "meter": "m", "foot": "ft", "us survey foot": "usft"}


def crs_unit(crs: CRS) -> str:
    """``deg`` for a geographic CRS, else the short name of its linear unit (``u`` when it
    has none known here)."""
    if crs.is_geographic:
        return "deg"
    return _UNITS.get(str(crs.linear_units).lower(), "u")


def snap_bounds(bounds: tuple[float, float, float, float], origin: tuple[float, float],
                step: float, *, outward: bool) -> tuple[float, float, float, float]:
    """Snap ``bounds`` onto the lattice ``origin + k * step``: outward (union) or inward."""
    ox, oy = origin
    tol = PIXEL_TOLERANCE
    lo, hi = (math.floor, math.ceil) if outward else (math.ceil, math.floor)

    def snap(v: float, o: float, f: Any) -> float:
        k = (v - o) / step
        kr = round(k)
        k = kr if abs(k - kr) < tol else f(k)
        return o + k * step

    left, bottom, right, top = bounds
    return (snap(left, ox, lo), snap(bottom, oy, lo), snap(right, ox, hi), snap(top, oy, hi))
