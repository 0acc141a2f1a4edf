"""What a modality is: named bands from one or more files, with nodata, scale and resampling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from geomm._remote import AnyPath, as_path
from geomm.errors import RecipeError

if TYPE_CHECKING:
    from geomm.stacspec import StacModality

__all__ = ["BandSpec", "ModalitySpec", "Resampling"]

Resampling = Literal["nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average",
                     "mode", "min", "max", "med"]
RESAMPLINGS: tuple[str, ...] = Resampling.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class BandSpec:
    """One band: a file, and which band of it (1-based index or description)."""

    path: AnyPath
    """Raster file (anything GDAL opens: GeoTIFF, JPEG2000, VRT, ...), local or remote (a URL
    or GDAL ``/vsi…/`` path, see :mod:`geomm._remote`)."""
    name: str
    """Band name used everywhere downstream (``"B02"``, ``"VV"``)."""
    index: int | None = None
    """1-based band index in the file; ``None`` with ``description`` unset means band 1."""
    description: str | None = None
    """Select the band whose GDAL description equals this, instead of an index."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", as_path(self.path))  # str paths from Python callers
        if self.index is not None and self.description is not None:
            raise RecipeError(f"band {self.name!r} ({self.path}): give `index` or "
                              "`description`, not both")
        if self.index is not None and self.index < 1:
            raise RecipeError(f"band {self.name!r} ({self.path}): index {self.index} is not "
                              "valid; band indexes start at 1")


@dataclass(frozen=True)
class ModalitySpec:
    """A named group of bands from one sensor (visible, infrared, multispectral, sar, dem)."""

    name: str
    """Modality name; becomes the encoder branch name."""
    bands: tuple[BandSpec, ...]
    """Its bands, in the order the model sees them."""
    nodata: float | None = None
    """Nodata value; ``None`` takes each file's own nodata (if any)."""
    scale: float = 1.0
    """Physical value = raw * scale + offset (kept as metadata; raw values are stored)."""
    offset: float = 0.0
    """See ``scale``."""
    categorical: bool = False
    """Class codes rather than measurements: forces nearest resampling when warped."""
    resampling: Resampling | None = None
    """Resampling if a warp is needed; default bilinear, or nearest when categorical."""
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    """Free-form notes carried into the store's metadata."""
    stac: StacModality | None = field(default=None, compare=False, hash=False)
    """Bands from a STAC search, still to be composited (:func:`geomm.sources.resolve`);
    the band paths are placeholders until then."""

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise RecipeError(f"modality name {self.name!r} must be non-empty without '/'")
        if not self.bands:
            raise RecipeError(f"modality {self.name!r} has no bands; list at least one "
                              "under `bands:`")
        names = [b.name for b in self.bands]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise RecipeError(f"modality {self.name!r}: band names {dupes} appear twice; "
                              "give each band a unique `name`")
        if self.resampling is not None and self.resampling not in RESAMPLINGS:
            raise RecipeError(f"modality {self.name!r}: resampling {self.resampling!r} is not "
                              f"one of {', '.join(RESAMPLINGS)}")

    @property
    def warp_resampling(self) -> str:
        """Resampling used when this modality must be warped."""
        if self.resampling is not None:
            return self.resampling
        return "nearest" if self.categorical else "bilinear"

    @property
    def band_names(self) -> tuple[str, ...]:
        """Band names in order."""
        return tuple(b.name for b in self.bands)
