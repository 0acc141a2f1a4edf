"""Turn a recipe's STAC modalities into band files: search, plan, composite, cache.

Each band's composite is written once into geomm's cache under a name made from everything it
depends on (the items and their hrefs and update times, the grid, the mask, the composite and
its order); a later run with the same inputs reuses it, a run with new items writes a new one.
The recipe that comes back names those files, so the rest of geomm (co-registration, tiling,
labels, prediction) sees ordinary rasters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from geomm._cache import cache_dir
from geomm._remote import is_remote
from geomm._version import __version__
from geomm.modality import BandSpec, ModalitySpec
from geomm.sources.composite import (
    BandComposite,
    single_source,
    write_composite,
    write_window_vrt,
)
from geomm.sources.plan import BandPlan, ModalityPlan, plan_modalities

__all__ = ["describe_plan", "plan", "resolve"]


def plan(recipe: Any) -> list[ModalityPlan]:
    """Search and plan the recipe's STAC modalities (nothing but headers is read)."""
    if not recipe.needs_stac:
        return []
    source = recipe.stac
    if source.catalog is not None and not is_remote(source.catalog) and \
            not Path(source.catalog).expanduser().is_absolute():
        # relative to the data root, like every other path of a recipe
        source = replace(source, catalog=str(recipe.root() / source.catalog))
    if source.area is not None:
        source = replace(source, bbox=area_bbox(source.area if is_remote(source.area) or
                                                Path(source.area).is_absolute()
                                                else str(recipe.root() / source.area)))
    return plan_modalities(source, recipe.modalities, crs=recipe.grid.crs,
                           bounds=recipe.grid.bounds)


def area_bbox(path: str) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees of a vector file's features."""
    import pyogrio

    from geomm.errors import RecipeError

    try:
        info = pyogrio.read_info(path)
        frame = pyogrio.read_dataframe(path, columns=[])
    except Exception as exc:  # pyogrio's DataSourceError and friends
        raise RecipeError(f"stac.area {path}: cannot read it as a vector file ({exc}); give "
                          "a GeoPackage, GeoJSON, Shapefile or other OGR file") from None
    if info.get("crs") is None or frame.empty:
        raise RecipeError(f"stac.area {path}: it has no CRS or no features; give polygons "
                          "with a CRS")
    w, s, e, n = frame.to_crs("EPSG:4326").total_bounds
    return float(w), float(s), float(e), float(n)


def describe_plan(recipe: Any, plans: list[ModalityPlan] | None = None) -> str:
    """The plan in words (``geomm stack --dry-run``); searches first unless ``plans`` are
    given."""
    if not recipe.needs_stac:
        n = sum(len(m.bands) for m in recipe.modalities)
        return (f"recipe {recipe.name}: no STAC modalities; its {n} band file(s) are read as "
                "they are (nothing to search or composite)")
    plans = plan(recipe) if plans is None else plans
    src = recipe.stac
    head = (f"STAC plan for {recipe.name}: {src.api or src.catalog}"
            + (f", bbox {list(src.bbox)}" if src.bbox else "")
            + (f", area {src.area}" if src.area else "")
            + (f", datetime {src.datetime}" if src.datetime else ""))
    total = sum(p.expected_bytes() for p in plans)
    return "\n".join([head, *(p.describe() for p in plans),
                      f"  about {total / 1e6:.1f} MB to read in all"])


def _output_type(p: ModalityPlan, band: BandPlan) -> tuple[str, float]:
    """The composite's data type and nodata value."""
    dtypes = {r.dtype for r in band.reads}
    if p.stac.composite == "first" and not p.physical and len(dtypes) == 1 and \
            np.dtype(next(iter(dtypes))).kind in "iu":
        dtype = next(iter(dtypes))
        nodatas = {r.nodata for r in band.reads} - {None}
        if p.spec.nodata is not None:
            return dtype, float(p.spec.nodata)
        if len(nodatas) == 1:
            return dtype, float(next(iter(nodatas)))  # type: ignore[arg-type]
        return dtype, float(np.iinfo(dtype).max)
    return "float32", float("nan")


def _key(p: ModalityPlan, band: BandPlan, dtype: str, nodata: float) -> str:
    """The cache key of a composite: everything its values depend on (the recipe's nodata,
    which masks the inputs, and the output's nodata too)."""
    g = band.grid
    doc = {"v": __version__, "band": band.name, "asset": band.asset,
           "nodata": repr(nodata), "src_nodata": repr(p.spec.nodata),
           "crs": g.crs.to_wkt(), "transform": list(g.transform)[:6],
           "shape": [g.height, g.width], "composite": p.stac.composite,
           "order": p.stac.order, "mask": None if p.stac.mask is None else
           [p.stac.mask.asset, list(p.stac.mask.drop), list(p.stac.mask.bits)],
           "physical": p.physical, "dtype": dtype, "resampling": p.spec.warp_resampling,
           "items": [[it.get("id"), it.get("properties", {}).get("updated"), r.origin,
                      r.bytes] for it, r in zip(p.items, band.reads, strict=True)]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def resolve(recipe: Any, *, workers: int | None = None,
            echo: Callable[[str], object] | None = None, plans: list[ModalityPlan] | None = None
            ) -> Any:
    """The recipe with every STAC modality replaced by its composited band files.

    Args:
        recipe: a loaded recipe (returned unchanged when it has no STAC modality).
        workers: dask threads for the composites.
        echo: receives the plan before the composites are computed.
        plans: a plan made already (:func:`plan`).

    Raises:
        GeommError: a search finds nothing, an item lacks an asset, an asset cannot be read;
            no composite is left half-written.
    """
    if not recipe.needs_stac:
        return recipe
    plans = plans if plans is not None else plan(recipe)
    if echo is not None:
        echo(describe_plan(recipe, plans))
    by_name = {p.spec.name: p for p in plans}
    root = cache_dir() / "stac"
    mods = []
    for m in recipe.modalities:
        if m.name not in by_name:
            mods.append(m)
            continue
        mods.append(_materialise(by_name[m.name], root, workers))
    return replace(recipe, modalities=tuple(mods))


def _materialise(p: ModalityPlan, root: Path, workers: int | None) -> ModalitySpec:
    bands, nodatas = [], set()
    for band in p.bands:
        dtype, nd = _output_type(p, band)
        comp = BandComposite(band, p.stac.mask, p.stac.composite, p.physical,
                             p.spec.warp_resampling, dtype, nd, p.spec.nodata)
        only = single_source(comp)  # one aligned item: a window of its file, nothing copied
        name = f"{p.spec.name}_{band.name}.{'vrt' if only else 'tif'}"
        out = root / _key(p, band, dtype, nd) / name
        if not out.exists():
            if only is not None:
                write_window_vrt(comp, only, out)
            else:
                write_composite(comp, out, workers=workers)
        bands.append(BandSpec(out, band.name))
        nodatas.add(nd)
    # one nodata for the modality where its bands share one; else (or NaN) each file's own
    nodata = next(iter(nodatas)) if len(nodatas) == 1 else None
    from datetime import UTC

    from geomm.sources.search import _parse_time, item_time

    items = ", ".join(str(it.get("id")) for it in p.items)
    extra = {**p.spec.extra, "stac_collection": p.stac.collection,
             "stac_composite": p.stac.composite, "stac_items": items}
    # when the composited items were acquired (the item's range where it has one)
    times = [t for it in p.items for t in (item_time(it), _parse_time(
        it.get("properties", {}).get("end_datetime"))) if t is not None]
    if times:
        extra["start_datetime"], extra["end_datetime"] = (
            t.astimezone(UTC).isoformat().replace("+00:00", "Z") for t in (min(times), max(times)))
    return replace(p.spec, bands=tuple(bands), stac=None, extra=extra,
                   nodata=None if nodata is None or np.isnan(nodata) else nodata,
                   scale=1.0 if p.physical else p.spec.scale,
                   offset=0.0 if p.physical else p.spec.offset)
