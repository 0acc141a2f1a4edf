"""STAC inputs of a recipe: where to search, and per modality what to take and how to composite.

A recipe's top-level ``stac:`` names the catalogue (a STAC API URL, or a static
ItemCollection / catalogue / collection JSON file) and the area and dates; a modality with a
``stac:`` block names its collection, its bands' asset keys (directly, or through a
:data:`~geomm.stacpresets.PRESETS` entry), property filters, an optional mask asset and the
composite. :mod:`geomm.sources` turns them into one layer per band.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from geomm.errors import RecipeError
from geomm.stacpresets import PRESETS, MaskSpec, Preset

__all__ = ["COMPOSITES", "MaskSpec", "StacModality", "StacSource", "parse_stac_modality",
           "parse_stac_source"]

Composite = Literal["median", "mean", "first"]
COMPOSITES: tuple[str, ...] = ("median", "mean", "first")
Order = Literal["newest", "oldest", "least-cloudy"]
ORDERS: tuple[str, ...] = ("newest", "oldest", "least-cloudy")
OPERATORS = ("lt", "lte", "gt", "gte", "eq", "neq", "in")


@dataclass(frozen=True)
class StacSource:
    """Where a recipe's STAC modalities search."""

    api: str | None = None
    """STAC API root URL (searched with ``/search``)."""
    catalog: str | None = None
    """Or a static ItemCollection, catalogue or collection JSON file (path or URL)."""
    bbox: tuple[float, float, float, float] | None = None
    """Area, (west, south, east, north) in degrees (EPSG:4326)."""
    datetime: str | None = None
    """RFC 3339 instant or ``start/end`` range (``..`` open); None: any date."""
    max_items: int = 500
    """Search at most this many items per modality (a guard against a huge search)."""
    sign: str | None = None
    """``module:function`` that turns an asset href into a readable one (a signed URL), e.g.
    ``planetary_computer:sign_url``; called once per asset."""
    area: str | None = None
    """Or a vector file whose bounding box is the area (relative to the data root)."""


@dataclass(frozen=True)
class StacModality:
    """What one modality takes from the search results."""

    collection: str
    """STAC collection id."""
    assets: tuple[tuple[str, str], ...]
    """(geomm band name, asset key) in band order."""
    query: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Property filters, ``{"eo:cloud_cover": {"lt": 30}}`` (applied to every item found)."""
    mask: MaskSpec | None = None
    """Quality mask applied to every band before compositing."""
    composite: Composite = "median"
    """Per pixel over the valid observations: ``median``, ``mean`` or ``first``."""
    order: Order = "newest"
    """Item order for ``first`` (and the plan): newest, oldest or least cloudy first."""
    datetime: str | None = None
    """This modality's date range (a season), instead of the source's."""
    preset: str | None = None
    """The preset it came from, if any."""
    seasons: tuple[tuple[str, str], ...] = ()
    """(name, date range): the modality becomes one modality per season, ``NAME_SEASON``."""


_SRC = {"api", "catalog", "bbox", "datetime", "max_items", "sign", "area"}
_MODAL = {"preset", "collection", "assets", "bands", "query", "mask", "composite", "order",
          "datetime", "seasons"}


def _check_datetime(where: str, value: Any) -> str | None:
    if value is None:
        return None
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    for part in text.split("/"):
        if part in ("", ".."):
            continue
        try:
            datetime.fromisoformat(part.replace("Z", "+00:00"))
        except ValueError:
            raise RecipeError(f"{where}.datetime: {text!r} is not a date, datetime or "
                              "START/END range (e.g. 2021-06-01/2021-08-31)") from None
    return text


def parse_stac_source(doc: Any) -> StacSource:
    """Validate the recipe's top-level ``stac:`` block."""
    if not isinstance(doc, Mapping):
        raise RecipeError(f"stac: expected a mapping with `api:` or `catalog:`, got {doc!r}")
    bad = sorted(set(map(str, doc)) - _SRC)
    if bad:
        raise RecipeError(f"stac: unknown key(s) {bad}; allowed: {sorted(_SRC)}")
    api, catalog = doc.get("api"), doc.get("catalog")
    if (api is None) == (catalog is None):
        raise RecipeError("stac: give exactly one of `api: URL` (a STAC API) or `catalog: FILE` "
                          "(a static ItemCollection, catalogue or collection JSON)")
    bbox = doc.get("bbox")
    if bbox is not None:
        try:
            w, s, e, n = (float(v) for v in bbox)
        except (TypeError, ValueError):
            raise RecipeError(f"stac.bbox: expected [west, south, east, north] in degrees, got "
                              f"{bbox!r}") from None
        if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
            raise RecipeError(f"stac.bbox: {bbox!r} is not [west, south, east, north] in "
                              "degrees with west < east and south < north")
        bbox = (w, s, e, n)
    max_items = doc.get("max_items", 500)
    if not isinstance(max_items, int) or isinstance(max_items, bool) or max_items < 1:
        raise RecipeError(f"stac.max_items: expected a positive whole number, got {max_items!r}")
    area = doc.get("area")
    if area is not None and (bbox is not None or not isinstance(area, str)):
        raise RecipeError("stac.area: give a vector file (its bounding box is the area), or "
                          "`bbox:`, not both")
    sign = doc.get("sign")
    if sign is not None and (not isinstance(sign, str) or sign.count(":") != 1):
        raise RecipeError(f"stac.sign: expected MODULE:FUNCTION (a function that signs an "
                          f"href, e.g. planetary_computer:sign_url), got {sign!r}")
    return StacSource(None if api is None else str(api), None if catalog is None
                      else str(catalog), bbox, _check_datetime("stac", doc.get("datetime")),
                      max_items, sign, area)


def _query(where: str, doc: Any) -> dict[str, dict[str, Any]]:
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise RecipeError(f"{where}.query: expected PROPERTY: {{OPERATOR: VALUE}}, e.g. "
                          f"`eo:cloud_cover: {{lt: 30}}`, got {doc!r}")
    out = {}
    for prop, cond in doc.items():
        if not isinstance(cond, Mapping) or not cond:
            cond = {"eq": cond}
        bad = sorted(set(map(str, cond)) - set(OPERATORS))
        if bad:
            raise RecipeError(f"{where}.query.{prop}: operator(s) {bad} not known; use "
                              f"{', '.join(OPERATORS)}")
        out[str(prop)] = dict(cond)
    return out


def _mask(where: str, doc: Any, preset: Preset | None) -> MaskSpec | None:
    if doc is None:
        return preset.mask if preset else None
    if doc is False or doc == "none":
        return None
    if not isinstance(doc, Mapping) or "asset" not in doc or not set(doc) <= {"asset", "drop",
                                                                              "bits"}:
        raise RecipeError(f"{where}.mask: expected {{asset: KEY, drop: [VALUES]}} or "
                          f"{{asset: KEY, bits: [BITS]}} (or `false`), got {doc!r}")

    def ints(key: str) -> tuple[int, ...]:
        vals = doc.get(key) or []
        if not isinstance(vals, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                 for v in vals):
            raise RecipeError(f"{where}.mask.{key}: expected a list of whole numbers, got "
                              f"{vals!r}")
        return tuple(vals)

    spec = MaskSpec(str(doc["asset"]), ints("drop"), ints("bits"))
    if not spec.drop and not spec.bits:
        raise RecipeError(f"{where}.mask: name the values to `drop:` or the `bits:` to leave out")
    if any(not 0 <= b < 64 for b in spec.bits):
        raise RecipeError(f"{where}.mask.bits: bits are numbered 0-63, got {list(spec.bits)}")
    return spec


def _assets(where: str, d: Mapping[str, Any], preset: Preset | None
            ) -> tuple[tuple[str, str], ...]:
    if "assets" in d:
        assets = d["assets"]
        if not isinstance(assets, Mapping) or not assets:
            raise RecipeError(f"{where}.assets: expected BAND NAME: ASSET KEY pairs, e.g. "
                              "`{red: B04, nir: B08}`")
        if "bands" in d:
            raise RecipeError(f"{where}: give `assets:` (band: asset key) or `bands:` (names "
                              "from the preset), not both")
        return tuple((str(k), str(v)) for k, v in assets.items())
    bands = d.get("bands")
    if preset is None:
        raise RecipeError(f"{where}: without a `preset:`, list `assets:` as BAND NAME: ASSET "
                          "KEY pairs")
    if bands is None:
        return tuple(preset.assets.items())
    if not isinstance(bands, list) or not bands:
        raise RecipeError(f"{where}.bands: expected a list of band names of preset "
                          f"{preset.name!r}: {', '.join(preset.assets)}")
    unknown = [str(b) for b in bands if str(b) not in preset.assets]
    if unknown:
        raise RecipeError(f"{where}.bands: {unknown} not in preset {preset.name!r}; its bands "
                          f"are {', '.join(preset.assets)}")
    return tuple((str(b), preset.assets[str(b)]) for b in bands)


def parse_stac_modality(name: str, doc: Any) -> StacModality:
    """Validate a modality's ``stac:`` block (``modalities.NAME.stac``)."""
    where = f"modalities.{name}.stac"
    if not isinstance(doc, Mapping):
        raise RecipeError(f"{where}: expected a mapping (preset or collection, bands, ...), "
                          f"got {doc!r}")
    bad = sorted(set(map(str, doc)) - _MODAL)
    if bad:
        raise RecipeError(f"{where}: unknown key(s) {bad}; allowed: {sorted(_MODAL)}")
    preset = None
    if doc.get("preset") is not None:
        preset = PRESETS.get(str(doc["preset"]))
        if preset is None:
            raise RecipeError(f"{where}.preset: {doc['preset']!r} is not known; presets: "
                              f"{', '.join(PRESETS)}")
    collection = doc.get("collection") or (preset.collection if preset else None)
    if not collection:
        raise RecipeError(f"{where}: name the `collection:` (or a `preset:`)")
    composite = str(doc.get("composite") or (preset.composite if preset else "median"))
    if composite not in COMPOSITES:
        raise RecipeError(f"{where}.composite: {composite!r} is not one of "
                          f"{', '.join(COMPOSITES)}")
    order = str(doc.get("order") or "newest")
    if order not in ORDERS:
        raise RecipeError(f"{where}.order: {order!r} is not one of {', '.join(ORDERS)}")
    return StacModality(str(collection), _assets(where, doc, preset),
                        _query(where, doc.get("query")), _mask(where, doc.get("mask"), preset),
                        composite, order,  # type: ignore[arg-type]
                        _check_datetime(where, doc.get("datetime")),
                        preset.name if preset else None, _seasons(where, doc))


def _seasons(where: str, doc: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    seasons = doc.get("seasons")
    if seasons is None:
        return ()
    if not isinstance(seasons, Mapping) or not seasons:
        raise RecipeError(f"{where}.seasons: expected NAME: START/END pairs, e.g. "
                          "`{spring: 2021-03-01/2021-05-31, summer: 2021-06-01/2021-08-31}`")
    if "datetime" in doc:
        raise RecipeError(f"{where}: give `seasons:` or `datetime:`, not both")
    out = []
    for name, when in seasons.items():
        if not str(name).replace("-", "").isalnum():
            raise RecipeError(f"{where}.seasons: name {name!r} must be letters and digits")
        text = _check_datetime(f"{where}.seasons.{name}", when)
        if text is None:
            raise RecipeError(f"{where}.seasons.{name}: give its date range START/END")
        out.append((str(name), text))
    return tuple(out)
