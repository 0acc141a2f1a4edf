"""Open each band file once, up front, and record what co-registration needs to know."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from geomm._remote import AnyPath, RemotePath, not_a_raster, remote_env
from geomm.errors import CRSMissingError, RasterReadError, RecipeError
from geomm.modality import BandSpec, ModalitySpec

__all__ = ["BandSource", "inspect_modality", "open_remote"]


@dataclass(frozen=True)
class BandSource:
    """A band as found on disk: its spec plus the file's grid, dtype and nodata."""

    spec: BandSpec
    """What the recipe asked for."""
    index: int
    """Resolved 1-based band index in the file."""
    crs: CRS
    """The file's CRS."""
    transform: Affine
    """The file's geotransform."""
    width: int
    """Width in the file's pixels."""
    height: int
    """Height in the file's pixels."""
    dtype: str
    """The band's data type."""
    nodata: float | None
    """Nodata: the modality's if set, else the file's."""

    @property
    def path(self) -> AnyPath:
        """The band's file."""
        return self.spec.path

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the file's CRS: the box around all four corners
        (a rotated raster's box is wider than its first and last corners')."""
        t = self.transform
        corners = [(c, r) for c in (0, self.width) for r in (0, self.height)]
        xs = [t.a * c + t.b * r + t.c for c, r in corners]
        ys = [t.d * c + t.e * r + t.f for c, r in corners]
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def is_north_up(self) -> bool:
        """No rotation or shear, and rows run south."""
        t = self.transform
        return t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0

    @property
    def resolution(self) -> float:
        """Pixel side in CRS units (the longer side for non-square pixels; a rotated
        raster's pixel side, not its projection on the x axis)."""
        t = self.transform
        return max(math.hypot(t.a, t.d), math.hypot(t.b, t.e))


def _open(path: AnyPath) -> rasterio.DatasetReader:
    if isinstance(path, RemotePath):
        return open_remote(path, what="the band's `file:` in the recipe")
    if not path.exists():
        raise RasterReadError(f"{path}: no such file; check the band's `file:` in the recipe "
                              "(relative paths are taken from the recipe's data root)")
    try:
        with warnings.catch_warnings():  # a file without georeferencing: sources() says so
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise RasterReadError(f"{path}: GDAL cannot open it as a raster ({exc}); give a "
                              "GeoTIFF, JPEG2000, VRT or other GDAL raster") from None


def open_remote(path: RemotePath, *, what: str) -> rasterio.DatasetReader:
    """Open a remote raster with geomm's GDAL defaults (:func:`remote_env`).

    Raises:
        RasterReadError: it cannot be read; the message names the URL, the HTTP status (or
            what GDAL said) and ``what`` to check.
    """
    try:
        with remote_env(path):
            return rasterio.open(path.gdal)
    except RasterioIOError as exc:
        raise RasterReadError(not_a_raster(path, exc, what)) from None


def _resolve_index(src: rasterio.DatasetReader, band: BandSpec, modality: str) -> int:
    if band.description is not None:
        descs = list(src.descriptions)
        if band.description not in descs:
            have = ", ".join(repr(d) for d in descs if d) or "none"
            raise RecipeError(f"{band.path}: no band described {band.description!r} for "
                              f"{modality}/{band.name}; the file's descriptions are {have}")
        return descs.index(band.description) + 1
    if band.index is None and src.count > 1:  # which band? never silently the first
        descs = list(src.descriptions)
        if band.name in descs:
            return descs.index(band.name) + 1
        raise RecipeError(f"{band.path} has {src.count} bands: say which one is "
                          f"{modality}/{band.name} with `index:` (1 to {src.count}) or "
                          "`description:` in the recipe's bands, e.g. `bands: [{name: "
                          f"{band.name}, file: {band.path.name}, index: 1}}]`")
    index = band.index or 1
    if index > src.count:
        raise RecipeError(f"{band.path}: band index {index} for {modality}/{band.name} does "
                          f"not exist; the file has {src.count} band(s), numbered from 1")
    return index


def _check_nodata(nodata: float | None, dtype: str, band: BandSpec,
                  modality: ModalitySpec) -> None:
    """Refuse a recipe's nodata that no pixel of an integer band can hold (it would mask
    nothing, silently)."""
    kind = np.dtype(dtype)
    if modality.nodata is None or nodata is None or np.isnan(nodata) or kind.kind not in "iu":
        return
    info = np.iinfo(kind)
    if not float(nodata).is_integer() or not info.min <= nodata <= info.max:
        raise RecipeError(
            f"modalities.{modality.name}.nodata: {nodata:g} cannot occur in {band.path} "
            f"({dtype}, whole numbers {info.min}..{info.max}), so it would mask nothing; "
            "give the value the file uses for no data (`geomm info FILE` shows its tag)")


def inspect_modality(modality: ModalitySpec) -> tuple[BandSource, ...]:
    """Open every band of ``modality`` and describe it; nothing is read but headers.

    Raises:
        RasterReadError: a file is missing or not a raster.
        CRSMissingError: a file has no CRS or no geotransform.
        RecipeError: a band index or description does not exist in its file.
    """
    out = []
    for band in modality.bands:
        with _open(band.path) as src:
            gcps, gcp_crs = src.gcps
            if src.transform.is_identity and gcps:
                to = f"EPSG:{gcp_crs.to_epsg()}" if gcp_crs and gcp_crs.to_epsg() else "EPSG:XXXX"
                raise CRSMissingError(
                    f"{band.path}: georeferenced by {len(gcps)} ground control points only "
                    "(no geotransform), which geomm does not warp by; warp it first, e.g. "
                    f"`gdalwarp -t_srs {to} FILE OUT.tif`, and give OUT.tif")
            if src.crs is None:
                raise CRSMissingError(
                    f"{band.path}: raster has no CRS; assign one first, e.g. "
                    "`gdal_edit.py -a_srs EPSG:32633 FILE`, or give the modality's files "
                    "a .prj/.aux.xml with the CRS")
            if src.transform.is_identity:
                raise CRSMissingError(
                    f"{band.path}: raster has a CRS but no geotransform (pixel size and "
                    "origin); georeference it first, e.g. `gdal_edit.py -a_ullr ULX ULY LRX "
                    "LRY FILE`")
            index = _resolve_index(src, band, modality.name)
            nodata = modality.nodata if modality.nodata is not None else src.nodatavals[index - 1]
            _check_nodata(nodata, src.dtypes[index - 1], band, modality)
            if nodata is not None and np.isnan(nodata) and not np.issubdtype(
                    np.dtype(src.dtypes[index - 1]), np.floating):
                nodata = None
            out.append(BandSource(spec=band, index=index, crs=src.crs,
                                  transform=src.transform, width=src.width, height=src.height,
                                  dtype=src.dtypes[index - 1], nodata=nodata))
    return tuple(out)
