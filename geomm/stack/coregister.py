"""Put every modality on one grid family, lazily, at its native resolution.

A band whose pixels already fall on the target grid at an integer factor of the base
resolution is *read*, never resampled: its values are bit-identical to the file. Only a band
in another CRS, on a shifted or rotated grid, or at a non-integer resolution ratio is warped
(GDAL, per chunk), and then to its own native resolution in the target CRS, not the finest.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import dask.array as da
import numpy as np
import xarray as xr
from rasterio.warp import calculate_default_transform

from geomm._files import file_stamp
from geomm._remote import AnyPath
from geomm.errors import GridError, RecipeError
from geomm.modality import ModalitySpec
from geomm.stack._arrays import grid_dataarray, split_chunks, upsample
from geomm.stack._blocks import AlignedRead, LayerReader, WarpGroup
from geomm.stack.footprints import footprint, raise_no_overlap, warn_shrinking
from geomm.stack.grid import PIXEL_TOLERANCE, GridSpec, same_crs, snap_bounds, to_crs
from geomm.stack.sources import BandSource, inspect_modality

if TYPE_CHECKING:
    from geomm.recipe import GridRequest

__all__ = ["CoregisteredStack", "Layer", "coregister", "plan_grid"]

Extent = Literal["intersection", "union"]

DEFAULT_CHUNK = 1536
"""Read chunk side in base pixels (rounded to a multiple of the tile size)."""


@dataclass(frozen=True)
class BandPlan:
    """Where one band goes: its layer factor, and whether (and why) it must be warped."""

    source: BandSource
    factor: int
    warp_reason: str | None


@dataclass
class Layer:
    """One modality at one resolution factor: lazy data (band, y, x) and its valid mask."""

    modality: str
    """Modality name."""
    factor: int
    """Resolution factor: pixel size = factor x the base resolution."""
    data: xr.DataArray
    """Lazy (band, y, x) values, raw (``attrs``: nodata, scale, offset, resolution)."""
    valid: xr.DataArray
    """Lazy (y, x) mask: every band of the layer has data there."""
    reader: LayerReader = field(repr=False, compare=False)
    """Reads any window of the layer directly: its bands, then the valid mask (what the dask
    arrays compute chunk by chunk)."""
    warped: dict[str, str] = field(default_factory=dict)
    """Band name -> why it was warped; empty when every band was read as stored."""
    files: tuple[AnyPath, ...] = ()
    """Source file of each band, in band order."""

    @property
    def key(self) -> str:
        """Store path of the layer, e.g. ``"infrared/20m"`` (``"visible/0.0001deg"`` on a
        geographic grid: the grid's unit)."""
        attrs = self.data.attrs
        return f"{self.modality}/{attrs['resolution']:g}{attrs.get('unit', 'm')}"


@dataclass
class CoregisteredStack:
    """Every modality on one grid family: layers keyed ``"<modality>/<res><unit>"``."""

    grid: GridSpec
    """The base grid."""
    layers: dict[str, Layer]
    """Layers by key, e.g. ``"infrared/20m"``."""
    tile_size: int
    """Tile side, base pixels."""
    chunk_size: int
    """Read chunk side, base pixels: a whole number of tiles."""

    @property
    def factors(self) -> tuple[int, ...]:
        """Distinct resolution factors, finest first."""
        return tuple(sorted({layer.factor for layer in self.layers.values()}))

    def modality_layers(self, modality: str) -> list[Layer]:
        """The layers of ``modality``, finest first."""
        return sorted((lyr for lyr in self.layers.values() if lyr.modality == modality),
                      key=lambda lyr: lyr.factor)

    def modality_valid(self, modality: str) -> xr.DataArray:
        """Valid mask of a modality (all its bands valid) at the finest factor that holds all
        of its layers' pixels whole: its finest layer's when the factors divide each other."""
        layers = self.modality_layers(modality)
        if not layers:
            raise KeyError(f"no modality {modality!r}; have {sorted(self._modalities())}")
        factor = math.gcd(*(lyr.factor for lyr in layers))
        mask = None
        for lyr in layers:
            m = upsample(lyr.valid.data, lyr.factor // factor)
            mask = m if mask is None else mask & m
        assert mask is not None
        return grid_dataarray(mask, self.grid, factor, None, "valid")

    def combined_valid(self) -> xr.DataArray:
        """Base-resolution mask: True where every band of every modality is valid."""
        mask = None
        for lyr in self.layers.values():
            m = upsample(lyr.valid.data, lyr.factor)
            mask = m if mask is None else mask & m
        assert mask is not None  # a stack always has a layer
        return grid_dataarray(mask, self.grid, 1, None, "valid")

    def _modalities(self) -> set[str]:
        return {lyr.modality for lyr in self.layers.values()}


def _ground_resolution(src: BandSource) -> float:
    """Pixel size in metres, comparable across CRSs (degrees scaled at the scene's latitude)."""
    if src.crs.is_geographic:
        lat = math.radians((src.bounds[1] + src.bounds[3]) / 2)
        return max(abs(src.transform.a) * 111_320.0 * math.cos(lat),
                   abs(src.transform.e) * 110_574.0)
    try:
        return src.resolution * float(src.crs.linear_units_factor[1])
    except Exception:  # CRS without linear units: take the number as is
        return src.resolution


def _integer(value: float) -> int | None:
    r = round(value)
    return r if abs(value - r) < PIXEL_TOLERANCE * max(1.0, abs(value)) else None


def _classify(src: BandSource, crs: object, res: float, origin: tuple[float, float]
              ) -> tuple[int, str | None]:
    """Return the band's factor on the grid and why it must be warped (None: read as is)."""
    t = src.transform
    if not same_crs(src.crs, crs):
        reason = f"CRS {src.crs.to_string() or 'custom'} differs from the grid's"
    elif not src.is_north_up:
        reason = "rotated or flipped geotransform"
    elif abs(abs(t.a) - abs(t.e)) > PIXEL_TOLERANCE * abs(t.a):
        reason = f"non-square pixels ({abs(t.a):g} x {abs(t.e):g})"
    elif (f := _integer(t.a / res)) is None or f < 1:
        reason = f"resolution {t.a:g} is not an integer multiple of the base {res:g}"
    elif _integer((t.c - origin[0]) / (f * res)) is None or \
            _integer((origin[1] - t.f) / (f * res)) is None:
        reason = f"origin ({t.c:g}, {t.f:g}) is off the grid's {f * res:g}-unit lattice"
    else:
        return f, None
    if same_crs(src.crs, crs):  # rotated or flipped too: its own pixel side
        native = src.resolution
    else:
        dt, _, _ = calculate_default_transform(src.crs, crs, src.width, src.height,
                                               *src.bounds)
        native = abs(dt.a)
    return max(1, round(native / res)), reason


def plan_grid(sources: dict[str, tuple[BandSource, ...]], *, grid: GridSpec | None = None,
              crs: object | None = None, resolution: float | None = None,
              reference: str | None = None, extent: Extent = "intersection",
              ) -> tuple[GridSpec, dict[str, tuple[BandPlan, ...]]]:
    """Choose the target grid and, per band, its layer factor and whether it is warped.

    The grid is ``grid`` when given; else ``crs``/``resolution`` (pixel edges on multiples of
    the resolution, like ``gdalwarp -tap``); else the finest band of ``reference`` (default:
    the modality holding the finest band) gives CRS, resolution and origin. Bounds follow
    ``extent`` and are snapped to the coarsest factor so that every layer has whole pixels.

    Raises:
        GridError: the rasters do not overlap, or an explicit grid does not fit the layers.
    """
    allsrc = [s for srcs in sources.values() for s in srcs]
    if grid is not None:
        t_crs, res = grid.crs, grid.resolution
        origin = (grid.bounds[0], grid.bounds[3])
    elif crs is not None or resolution is not None:
        if crs is None or resolution is None:
            raise RecipeError("grid: give both `crs` and `resolution` (or neither, to take "
                              "them from the reference modality)")
        t_crs, res, origin = to_crs(crs), float(resolution), (0.0, 0.0)
    else:
        if reference is not None and reference not in sources:
            raise RecipeError(f"grid.reference: no modality {reference!r}; choose one of "
                              f"{', '.join(sources)}")
        cands = sources[reference] if reference else allsrc
        ref = min(cands, key=_ground_resolution)
        t_crs, res, origin = ref.crs, ref.resolution, (ref.transform.c, ref.transform.f)
    plans = {m: tuple(BandPlan(s, *_classify(s, t_crs, res, origin)) for s in srcs)
             for m, srcs in sources.items()}
    step = math.lcm(*(p.factor for ps in plans.values() for p in ps))
    if grid is not None:
        for m, ps in plans.items():
            for p in ps:
                if grid.height % p.factor or grid.width % p.factor:
                    raise GridError(
                        f"grid of {grid.width} x {grid.height} px is not a whole number of "
                        f"{p.factor * res:g}-unit pixels ({m}/{p.source.spec.name}); make the "
                        f"grid's width and height multiples of {p.factor} base pixels")
        return _check_size(grid, allsrc), plans
    foot = [(footprint(s, t_crs), s) for s in allsrc]
    if extent == "intersection":
        b = (max(f[0] for f, _ in foot), max(f[1] for f, _ in foot),
             min(f[2] for f, _ in foot), min(f[3] for f, _ in foot))
        warn_shrinking(allsrc, t_crs)
    elif extent == "union":
        b = (min(f[0] for f, _ in foot), min(f[1] for f, _ in foot),
             max(f[2] for f, _ in foot), max(f[3] for f, _ in foot))
    else:
        raise RecipeError(f"grid.extent: {extent!r} is not 'intersection' or 'union'")
    snapped = snap_bounds(b, origin, step * res, outward=extent == "union")
    if snapped[2] <= snapped[0] or snapped[3] <= snapped[1]:
        raise_no_overlap(foot, step * res)
    return _check_size(GridSpec(t_crs, res, snapped), allsrc), plans


MAX_PIXELS = 4_000_000_000
"""Largest grid geomm builds without being told: 4 Gpx (~36 Sentinel-2 tiles at 10 m);
``GEOMM_MAX_PIXELS`` raises or lowers it."""


def _check_size(grid: GridSpec, sources: Sequence[BandSource]) -> GridSpec:
    """Refuse a grid above ``GEOMM_MAX_PIXELS`` before any array or graph is built."""
    try:
        limit = int(float(os.environ.get("GEOMM_MAX_PIXELS", MAX_PIXELS)))
    except ValueError:
        raise RecipeError(f"GEOMM_MAX_PIXELS={os.environ['GEOMM_MAX_PIXELS']!r} is not a "
                          "number of pixels") from None
    n = grid.height * grid.width
    if n > limit:
        biggest = max(sources, key=lambda s: s.width * s.height, default=None)
        which = (f"; the largest input is {biggest.path.name} ({biggest.width} x "
                 f"{biggest.height} px)" if biggest is not None else "")
        raise GridError(f"the scene grid would be {grid.width} x {grid.height} = {n:.3g} px, "
                        f"above the limit of {limit:.3g}{which}; check the inputs (a VRT or a "
                        "resolution that is far too fine?) or raise the limit with "
                        "GEOMM_MAX_PIXELS")
    return grid


def check_tile_size(tile_size: int, halo: int, factors: Sequence[int],
                    names: dict[int, str]) -> None:
    """Raise unless tile size and halo are whole numbers of pixels in every layer."""
    if tile_size < 1:
        raise RecipeError(f"tiling.size: {tile_size} must be a positive number of base pixels")
    if halo < 0:
        raise RecipeError(f"tiling.halo: {halo} must be zero or positive")
    step = math.lcm(*factors)
    for f in factors:
        for what, v in (("tiling.size", tile_size), ("tiling.halo", halo)):
            if v % f:
                good = max(step, v // step * step)
                raise GridError(f"{what}: {v} px is not a multiple of the resolution factor {f} "
                                f"of {names[f]}; use a multiple of {step}, e.g. {good}")


def _reader(modality: ModalitySpec, factor: int, plans: Sequence[BandPlan],
            grid: GridSpec) -> LayerReader:
    t = grid.transform_at(factor)
    res = grid.resolution * factor
    aligned: list[AlignedRead] = []
    groups: dict[tuple[object, ...], list[tuple[int, BandSource]]] = {}
    for pos, p in enumerate(plans):
        s = p.source
        if p.warp_reason is None:
            aligned.append(AlignedRead(pos, s.path, s.index, s.nodata,
                                       col_off=round((t.c - s.transform.c) / res),
                                       row_off=round((s.transform.f - t.f) / res),
                                       src_width=s.width, src_height=s.height))
        else:
            key = (s.crs.to_wkt(), tuple(s.transform), s.width, s.height, s.nodata, s.dtype)
            groups.setdefault(key, []).append((pos, s))
    warps = tuple(
        WarpGroup(tuple(pos for pos, _ in members), tuple((s.path, s.index) for _, s in members),
                  members[0][1].nodata, members[0][1].crs, members[0][1].transform,
                  members[0][1].width, members[0][1].height, grid.crs,
                  modality.warp_resampling)
        for members in groups.values())
    dtype = np.result_type(*(p.source.dtype for p in plans)).name
    nodatas = {p.source.nodata for p in plans}
    only = next(iter(nodatas)) if len(nodatas) == 1 else None
    fill = float(only) if only is not None else 0.0
    return LayerReader(tuple(aligned), warps, len(plans), dtype, fill, t)


def _layer(modality: ModalitySpec, factor: int, plans: Sequence[BandPlan], grid: GridSpec,
           chunk_size: int) -> Layer:
    h, w = grid.shape_at(factor)
    reader = _reader(modality, factor, plans, grid)
    chunk = chunk_size // factor
    chunks = ((reader.nbands + 1,), split_chunks(h, chunk), split_chunks(w, chunk))
    raw = da.map_blocks(reader, dtype=reader.dtype, chunks=chunks,
                        meta=np.empty((0, 0, 0), reader.dtype),
                        name=f"geomm-read-{modality.name}-{factor}-" + _token(plans, grid, chunk))
    names = [p.source.spec.name for p in plans]
    data = grid_dataarray(raw[:-1], grid, factor, names, "data")
    valid = grid_dataarray(raw[-1].astype(bool), grid, factor, None, "valid")
    nodatas = {p.source.nodata for p in plans}
    data.attrs.update({"nodata": reader.fill if len(nodatas) == 1 and None not in nodatas
                       else None, "scale": modality.scale, "offset": modality.offset,
                       "modality": modality.name, "categorical": modality.categorical})
    warped = {p.source.spec.name: p.warp_reason for p in plans if p.warp_reason}
    return Layer(modality.name, factor, data, valid, reader, warped,
                 tuple(p.source.path for p in plans))


def _token(plans: Sequence[BandPlan], grid: GridSpec, chunk: int) -> str:
    from dask.base import tokenize

    files = [(*file_stamp(p.source.path), p.source.index, p.warp_reason) for p in plans]
    return tokenize(files, grid.to_dict(), chunk)


def coregister(modalities: Sequence[ModalitySpec], *, grid: GridSpec | None = None,
               crs: object | None = None, resolution: float | None = None,
               reference: str | None = None, extent: Extent = "intersection",
               tile_size: int = 384, halo: int = 0,
               chunk_size: int | None = None) -> CoregisteredStack:
    """Co-register ``modalities`` onto one grid family as lazy, Dask-chunked DataArrays.

    Args:
        modalities: the modalities to stack; names must be unique.
        grid: an explicit target grid; else one is derived (see :func:`plan_grid`).
        crs: target CRS when no ``grid`` is given (needs ``resolution``).
        resolution: base resolution with ``crs``.
        reference: modality whose finest band gives CRS, resolution and origin.
        extent: ``"intersection"`` (default) or ``"union"`` of the rasters' footprints.
        tile_size: base pixels per tile side; a multiple of every layer's factor.
        chunk_size: base pixels per read chunk side, a multiple of ``tile_size`` so that tile
            edges are chunk edges in every layer (a tile never straddles two chunks).
            Default: the multiple nearest to 1536 px, which keeps dask's per-task overhead
            and GDAL's block re-reads small; pass ``tile_size`` for one chunk per tile.
        halo: overlap (base pixels) that tiles will be read with; checked here.

    Returns:
        A :class:`CoregisteredStack`; nothing is read until its arrays are computed.

    Raises:
        GeommError: missing files or CRS, bad band selection, no overlap, or a tile size /
            halo that is not a multiple of every layer's factor.
    """
    names = [m.name for m in modalities]
    if not names:
        raise RecipeError("no modalities given; list at least one under `modalities:`")
    if len(set(names)) != len(names):
        raise RecipeError(f"modality names must be unique, got {names}")
    sources = {m.name: inspect_modality(m) for m in modalities}
    target, plans = plan_grid(sources, grid=grid, crs=crs, resolution=resolution,
                              reference=reference, extent=extent)
    by_factor: dict[int, str] = {}
    for m, ps in plans.items():
        for p in ps:
            by_factor.setdefault(p.factor, f"{m}/{p.source.spec.name} "
                                           f"({p.factor * target.resolution:g} units)")
    check_tile_size(tile_size, halo, sorted(by_factor), by_factor)
    if chunk_size is None:
        chunk_size = tile_size * max(1, round(DEFAULT_CHUNK / tile_size))
    if chunk_size < tile_size or chunk_size % tile_size:
        raise RecipeError(f"chunk size {chunk_size} must be a multiple of the tile size "
                          f"{tile_size}")
    layers: dict[str, Layer] = {}
    for mod in modalities:
        groups: dict[int, list[BandPlan]] = {}
        for p in plans[mod.name]:
            groups.setdefault(p.factor, []).append(p)
        for factor in sorted(groups):
            layer = _layer(mod, factor, groups[factor], target, chunk_size)
            layers[layer.key] = layer
    return CoregisteredStack(target, layers, tile_size, chunk_size)


def coregister_request(modalities: Sequence[ModalitySpec], request: GridRequest, *,
                       tile_size: int = 384, halo: int = 0,
                       chunk_size: int | None = None) -> CoregisteredStack:
    """:func:`coregister` with the grid chosen as a recipe's ``grid:`` section says."""
    g = request
    grid = (GridSpec(to_crs(g.crs), float(g.resolution or 0), g.bounds)
            if g.bounds is not None else None)
    return coregister(modalities, grid=grid, crs=None if grid else g.crs,
                      resolution=None if grid else g.resolution, reference=g.reference,
                      extent=g.extent, tile_size=tile_size, halo=halo, chunk_size=chunk_size)
