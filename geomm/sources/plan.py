"""Plan a recipe's STAC modalities: the items found, the CRS and, per band, the grid at the
band's native resolution that its composite is computed on, and the bytes it will read.

Nothing but item documents and raster headers is read here; ``geomm stack --dry-run`` prints
the plan and a real run prints it before it starts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.transform import array_bounds
from rasterio.warp import calculate_default_transform, transform_bounds

from geomm._remote import (
    RemotePath,
    as_path,
    gdal_path,
    not_a_raster,
    remote_env,
    remote_stamp,
)
from geomm.errors import RasterReadError, RecipeError
from geomm.modality import ModalitySpec
from geomm.sources.search import item_time, search_items
from geomm.stacspec import StacModality, StacSource

__all__ = ["AssetRead", "BandGrid", "BandPlan", "ModalityPlan", "plan_modalities"]


@dataclass(frozen=True)
class AssetRead:
    """One item's asset as its header describes it."""

    item: str
    """Item id."""
    href: str
    """Absolute href (path or URL), signed when the source signs."""
    crs: CRS
    transform: Affine
    width: int
    height: int
    dtype: str
    nodata: float | None
    scale: float | None
    """From the asset's ``raster:bands`` (None: the item does not say)."""
    offset: float | None
    bytes: int | None
    """File size, where known."""
    origin: str = ""
    """The href as the item gives it (before signing): what the cache key names."""

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the asset's CRS."""
        return array_bounds(self.height, self.width, self.transform)


@dataclass(frozen=True)
class BandGrid:
    """Where one band's composite is computed: the target CRS at the band's resolution."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top)."""
        return array_bounds(self.height, self.width, self.transform)


@dataclass(frozen=True)
class BandPlan:
    """One band: its grid, the item assets it reads (in order) and their masks."""

    name: str
    asset: str
    grid: BandGrid
    reads: tuple[AssetRead, ...]
    masks: tuple[AssetRead | None, ...]


@dataclass(frozen=True)
class ModalityPlan:
    """One STAC modality, planned."""

    spec: ModalitySpec
    stac: StacModality
    items: tuple[dict[str, Any], ...]
    bands: tuple[BandPlan, ...]
    physical: bool
    """Items declare ``raster:bands`` scale/offset: composited in physical units."""

    def expected_bytes(self) -> int:
        """Bytes of the assets that fall inside the band grids (by area; headers aside)."""
        total = 0.0
        for band in self.bands:
            for read in (*band.reads, *(m for m in band.masks if m is not None)):
                if read.bytes:
                    total += read.bytes * _share(read, band.grid)
        return int(total)

    def describe(self) -> str:
        """The plan in words: items (date, cloud, CRS), composite, grids, bytes."""
        s = self.stac
        lines = [f"  {self.spec.name}: {len(self.items)} item(s) of {s.collection}, "
                 f"{s.composite} composite" + (f" ({s.order} first)" if s.composite == "first"
                                               else "")
                 + (f", mask {s.mask.asset}" if s.mask else "")
                 + f", ~{self.expected_bytes() / 1e6:.1f} MB to read"]
        for it in self.items:
            props = it.get("properties", {})
            t = item_time(it)
            cloud = props.get("eo:cloud_cover")
            crs = _item_crs(it)
            lines.append(f"    {it.get('id')}  {t.isoformat() if t else '?'}"
                         + (f"  cloud {cloud:.0f} %" if isinstance(cloud, int | float) else "")
                         + (f"  {crs}" if crs else ""))
        for b in self.bands:
            g = b.grid
            lines.append(f"    band {b.name} (asset {b.asset}): {g.width} x {g.height} px at "
                         f"{abs(g.transform.a):g} {g.crs.to_string()}, {len(b.reads)} item(s)")
        return "\n".join(lines)


def _item_crs(item: Mapping[str, Any]) -> str | None:
    props = item.get("properties", {})
    if props.get("proj:code"):
        return str(props["proj:code"])
    if props.get("proj:epsg"):
        return f"EPSG:{props['proj:epsg']}"
    return None


def _share(read: AssetRead, grid: BandGrid) -> float:
    """Fraction of the asset's footprint inside the grid (1 when the CRSs differ: a warp
    reads about the window it needs, estimated here as the whole overlap)."""
    if read.crs != grid.crs:
        b = transform_bounds(grid.crs, read.crs, *grid.bounds, densify_pts=21)
    else:
        b = grid.bounds
    r = read.bounds
    w = max(0.0, min(r[2], b[2]) - max(r[0], b[0]))
    h = max(0.0, min(r[3], b[3]) - max(r[1], b[1]))
    area = (r[2] - r[0]) * (r[3] - r[1])
    return min(1.0, w * h / area) if area > 0 else 0.0


def _raster_bands(asset: Mapping[str, Any]) -> Mapping[str, Any]:
    bands = asset.get("raster:bands") or []
    return bands[0] if bands and isinstance(bands[0], Mapping) else {}


def signer(spec: str | None) -> Callable[[str], str] | None:
    """The ``stac.sign`` function (``module:function``), imported."""
    if spec is None:
        return None
    import importlib

    module, func = spec.split(":")
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        raise RecipeError(f"stac.sign: cannot import {spec} ({exc}); install the package that "
                          f"provides it (e.g. pip install {module.split('.')[0]})") from None
    return fn


def _described(item: Mapping[str, Any], asset: Mapping[str, Any]
               ) -> tuple[CRS, Affine, tuple[int, int], str, float | None] | None:
    """CRS, transform, shape, data type and nodata of an asset as its item's projection and
    raster extensions give them (asset level first), or None when one is missing: then the
    file's header is read. Nodata must be stated (absent means unknown, not none)."""
    import numpy as np

    props = item.get("properties") or {}

    def get(key: str) -> Any:
        return asset.get(key, props.get(key))

    shape, t, rb = get("proj:shape"), get("proj:transform"), _raster_bands(asset)
    code = get("proj:code") or (f"EPSG:{get('proj:epsg')}" if get("proj:epsg") else None)
    crs_text = code or get("proj:wkt2")
    if not (shape and t and crs_text and "data_type" in rb and "nodata" in rb):
        return None
    try:
        dtype = np.dtype(str(rb["data_type"])).name
        nodata = None if rb["nodata"] is None else float(rb["nodata"])
        return (CRS.from_user_input(crs_text), Affine(*map(float, list(t)[:6])),
                (int(shape[0]), int(shape[1])), dtype, nodata)
    except (TypeError, ValueError, IndexError, rasterio.errors.CRSError):
        return None  # malformed metadata: the header decides


def _header(item: Mapping[str, Any], key: str, modality: str,
            sign: Callable[[str], str] | None = None) -> AssetRead:
    assets = item.get("assets") or {}
    if key not in assets:
        raise RecipeError(f"modalities.{modality}.stac: item {item.get('id')!r} has no asset "
                          f"{key!r} (its assets: {', '.join(sorted(assets)) or 'none'}); check "
                          "the preset or `assets:`, or filter such items out")
    origin = str(assets[key].get("href", ""))
    href = str(sign(origin)) if sign is not None else origin
    path = as_path(href)
    known = _described(item, assets[key])
    if known is not None:  # the item says all a header would: no request (size aside)
        crs, transform, (height, width), dtype, nodata = known
        rb = _raster_bands(assets[key])
        size = assets[key].get("file:size")
        if size is None:
            size = (remote_stamp(str(path))[1] if isinstance(path, RemotePath)
                    else path.stat().st_size if path.exists() else None)
        return AssetRead(str(item.get("id")), href, crs, transform, width, height, dtype,
                         nodata, rb.get("scale"), rb.get("offset"), size, origin)
    what = f"asset {key!r} of item {item.get('id')!r}"
    if not isinstance(path, RemotePath) and not path.exists():
        raise RasterReadError(f"{href}: no such file ({what}); check the item's href")
    try:
        with remote_env(path):
            src = rasterio.open(gdal_path(path))
    except RasterioIOError as exc:
        raise RasterReadError(not_a_raster(path, exc, what)) from None
    with src:
        if src.crs is None:
            raise RecipeError(f"{href}: asset {key!r} of item {item.get('id')!r} has no CRS")
        rb = _raster_bands(assets[key])
        size = assets[key].get("file:size")
        if size is None:
            size = (remote_stamp(str(path))[1] if isinstance(path, RemotePath)
                    else path.stat().st_size)
        nodata = rb.get("nodata", src.nodata)
        return AssetRead(str(item.get("id")), href, src.crs, src.transform, src.width,
                         src.height, src.dtypes[0],
                         None if nodata is None else float(nodata),
                         rb.get("scale"), rb.get("offset"), size, origin)


def _target_crs(reads: Sequence[AssetRead], crs: object | None) -> CRS:
    if crs is not None:
        return CRS.from_user_input(crs)
    counts = Counter(r.crs.to_wkt() for r in reads)
    return CRS.from_wkt(counts.most_common(1)[0][0])


def _modality_grid(reads: Sequence[AssetRead], crs: CRS, res: float,
                   area: tuple[float, float, float, float] | None,
                   bounds: tuple[float, float, float, float] | None) -> tuple[float, ...]:
    """(left, bottom, right, top) of the modality: the items' footprints (intersected with
    the area and with the recipe's grid bounds), snapped outward to the coarsest band's
    lattice."""
    feet = [r.bounds if r.crs == crs else transform_bounds(r.crs, crs, *r.bounds,
                                                           densify_pts=21) for r in reads]
    left, bottom = min(f[0] for f in feet), min(f[1] for f in feet)
    right, top = max(f[2] for f in feet), max(f[3] for f in feet)
    if area is not None:
        a = transform_bounds("EPSG:4326", crs, *area, densify_pts=21)
        left, bottom = max(left, a[0]), max(bottom, a[1])
        right, top = min(right, a[2]), min(top, a[3])
    if bounds is not None:
        left, bottom = max(left, bounds[0]), max(bottom, bounds[1])
        right, top = min(right, bounds[2]), min(top, bounds[3])
    if right <= left or top <= bottom:
        raise RecipeError("stac.bbox / grid.bounds: the area does not overlap the items "
                          "found; check the bbox (degrees) and the grid's bounds")
    same = [r for r in reads if r.crs == crs and math.isclose(abs(r.transform.a), res)]
    ox, oy = (same[0].transform.c, same[0].transform.f) if same else (0.0, 0.0)
    snap = 1e-6 * res

    def down(v: float, o: float) -> float:
        return o + math.floor((v - o) / res + snap) * res

    def up(v: float, o: float) -> float:
        return o + math.ceil((v - o) / res - snap) * res

    return down(left, ox), down(bottom, oy), up(right, ox), up(top, oy)


def _native(reads: Sequence[AssetRead], crs: CRS) -> float:
    same = [abs(r.transform.a) for r in reads if r.crs == crs]
    if same:
        return Counter(same).most_common(1)[0][0]
    r = reads[0]
    dt, _, _ = calculate_default_transform(r.crs, crs, r.width, r.height, *r.bounds)
    return float(f"{abs(dt.a):.6g}")


def plan_modalities(source: StacSource, modalities: Sequence[ModalitySpec], *,
                    crs: object | None = None,
                    bounds: tuple[float, float, float, float] | None = None
                    ) -> list[ModalityPlan]:
    """Search and plan every STAC modality (files of other modalities are not opened).

    Args:
        source: the recipe's ``stac:``.
        modalities: the recipe's modalities; those without ``stac`` are skipped.
        crs: target CRS (the recipe's ``grid.crs``); default: the CRS most items are in.
        bounds: the recipe's ``grid.bounds`` (in ``crs``): composites stop there.

    Raises:
        RecipeError: a search finds nothing, an item lacks an asset, the area misses them.
        RasterReadError: an asset cannot be opened (the message names its URL and status).
    """
    found = []
    sign = signer(source.sign)
    for m in modalities:
        if m.stac is None:
            continue
        items = search_items(source, m.stac, modality=m.name)
        reads = {b: tuple(_header(it, key, m.name, sign) for it in items)
                 for b, key in m.stac.assets}
        masks = tuple(_header(it, m.stac.mask.asset, m.name, sign) if m.stac.mask else None
                      for it in items)
        found.append((m, items, reads, masks))
    every = [r for _, _, reads, _ in found for rs in reads.values() for r in rs]
    target = _target_crs(every, crs)
    plans = []
    for m, items, reads, masks in found:
        assert m.stac is not None
        res = {b: _native(rs, target) for b, rs in reads.items()}
        coarse = max(res, key=lambda b: res[b])
        left, bottom, right, top = _modality_grid(reads[coarse], target, res[coarse],
                                                  source.bbox, bounds if crs else None)
        bands = []
        for b, key in m.stac.assets:
            r = res[b]
            grid = BandGrid(target, Affine(r, 0, left, 0, -r, top),
                            max(1, round((right - left) / r)), max(1, round((top - bottom) / r)))
            bands.append(BandPlan(b, key, grid, reads[b], masks))
        physical = _physical(m.name, reads)
        plans.append(ModalityPlan(m, m.stac, tuple(items), tuple(bands), physical))
    return plans


def _physical(modality: str, reads: dict[str, tuple[AssetRead, ...]]) -> bool:
    """Whether the modality is composited in physical units: its items declare
    ``raster:bands`` scale/offset. Items that do and items that do not, in one band, cannot be
    composited together (DNs beside reflectances): a :class:`RecipeError` names both."""
    def declares(r: AssetRead) -> bool:
        return r.scale is not None or r.offset is not None

    for band, rs in reads.items():
        said = [r.item for r in rs if declares(r)]
        if said and len(said) < len(rs):
            silent = [r.item for r in rs if not declares(r)]
            raise RecipeError(
                f"modalities.{modality}.stac: band {band}: items {', '.join(said[:3])}"
                f"{' ...' if len(said) > 3 else ''} declare a raster:bands scale/offset and "
                f"items {', '.join(silent[:3])}{' ...' if len(silent) > 3 else ''} do not, so "
                "their values are not in one unit; narrow the dates or the query to one "
                "processing baseline, or split them into two modalities")
    return any(declares(r) for rs in reads.values() for r in rs)
