"""Find the STAC items of a modality: search a STAC API, or read a static ItemCollection,
catalogue or collection file, then keep the items that match the collection, area, dates and
property filters (applied here too, so a server that ignores ``query`` changes nothing).

Items are returned as plain dicts with absolute asset hrefs, in the modality's order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from geomm._remote import is_remote
from geomm.errors import RecipeError
from geomm.stacspec import StacModality, StacSource

__all__ = ["StacSearchError", "describe_query", "search_items"]


class StacSearchError(RecipeError):
    """The catalogue could not be searched, or the search found nothing usable."""


def describe_query(source: StacSource, mod: StacModality) -> str:
    """The search in words, for errors and the plan."""
    parts = [f"collection {mod.collection!r}"]
    if source.bbox:
        parts.append(f"bbox {list(source.bbox)}")
    when = mod.datetime or source.datetime
    if when:
        parts.append(f"datetime {when}")
    if mod.query:
        parts.append(f"query {json.dumps(dict(mod.query))}")
    return ", ".join(parts)


def search_items(source: StacSource, mod: StacModality, *, modality: str
                 ) -> list[dict[str, Any]]:
    """The items of ``mod``'s collection over the area and dates that pass its filters.

    Raises:
        StacSearchError: the API or file cannot be read, or nothing matches (the message
            names the query).
    """
    if source.api is not None:
        items = _search_api(source, mod, modality)
    else:
        assert source.catalog is not None
        items = _read_static(source.catalog, modality)
    start, end = _range(mod.datetime or source.datetime)
    kept = [it for it in items
            if it.get("collection", mod.collection) == mod.collection
            and (source.bbox is None or _overlaps(it.get("bbox"), source.bbox))
            and _in_range(it, start, end) and _passes(it.get("properties", {}), mod.query)]
    if not kept:
        where = source.api or source.catalog
        raise StacSearchError(f"modalities.{modality}.stac: no items found in {where} for "
                              f"{describe_query(source, mod)}; widen the area, the dates or "
                              "the filters, or check the collection id")
    return sorted(kept, key=_order_key(mod.order))


def _search_api(source: StacSource, mod: StacModality, modality: str
                ) -> list[dict[str, Any]]:
    import warnings

    from pystac_client import Client
    from pystac_client.warnings import DoesNotConformTo

    try:
        with warnings.catch_warnings():  # an API without the query extension: geomm applies
            warnings.simplefilter("ignore", DoesNotConformTo)  # the query to the items itself
            client = Client.open(str(source.api))
            search = client.search(collections=[mod.collection], bbox=source.bbox,
                                   datetime=mod.datetime or source.datetime,
                                   query=dict(mod.query) or None,
                                   max_items=source.max_items + 1,
                                   limit=min(100, source.max_items + 1))
            items = list(search.items_as_dicts())
    except Exception as exc:  # pystac-client's APIError, requests' errors, bad JSON
        text = " ".join(str(exc).split())
        unreachable = ("Connection refused", "Failed to establish", "Max retries exceeded",
                       "Name or service not known", "timed out", "ConnectionError")
        if any(u in text or u in type(exc).__name__ for u in unreachable):
            why = "connection refused" if "refused" in text.lower() or "Failed to establish" \
                in text else text[:120]
            raise StacSearchError(f"stac.api {source.api}: cannot reach the STAC API ({why}); "
                                  "check the URL and that the API is running") from None
        raise StacSearchError(f"stac.api {source.api}: the search for modality {modality!r} "
                              f"failed ({text[:200] or type(exc).__name__}); check the URL "
                              "and that it is a STAC API") from None
    if len(items) > source.max_items:  # a cut in the API's order would bias the composite
        raise StacSearchError(f"modalities.{modality}.stac: the search of {source.api} finds "
                              f"more than stac.max_items ({source.max_items}) items for "
                              f"{describe_query(source, mod)}; narrow the dates, the area or "
                              "the filters (e.g. query: {eo:cloud_cover: {lt: 20}}), or raise "
                              "stac.max_items")
    return [_absolute(it, None) for it in items]


def _read_static(where: str, modality: str) -> list[dict[str, Any]]:
    """Items of an ItemCollection, or of every catalogue / collection below ``where``."""
    import pystac

    if not is_remote(where) and not Path(where).exists():
        raise StacSearchError(f"stac.catalog {where}: no such file; give a STAC ItemCollection, "
                              "catalogue or collection JSON file")
    try:
        doc = pystac.StacIO.default().read_json(where)
        if doc.get("type") == "FeatureCollection":
            return [_absolute(f, where) for f in doc.get("features", [])]
        if doc.get("type") == "Feature":
            return [_absolute(doc, where)]
        cat = pystac.read_dict(doc, href=str(Path(where).resolve()) if not is_remote(where)
                               else where)
        if not isinstance(cat, pystac.Catalog):  # Collection is a Catalog
            raise ValueError(f"a STAC {type(cat).__name__}, not a catalogue or collection")
        return [_absolute(item.to_dict(transform_hrefs=False), item.get_self_href())
                for item in cat.get_items(recursive=True)]
    except (OSError, ValueError, pystac.STACError, KeyError) as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StacSearchError(f"stac.catalog {where}: cannot read it as STAC ({why[:200]}) "
                              f"for modality {modality!r}; give an ItemCollection, catalogue "
                              "or collection JSON") from None


def _absolute(item: Mapping[str, Any], base: str | None) -> dict[str, Any]:
    """The item with every asset href absolute (relative hrefs are taken from ``base``, the
    file the item was read from)."""
    out = dict(item)
    assets = {}
    for key, asset in (item.get("assets") or {}).items():
        href = str(asset.get("href", ""))
        if base is not None and href and not is_remote(href) and not Path(href).is_absolute():
            if is_remote(base):
                href = base.rsplit("/", 1)[0] + "/" + href.removeprefix("./")
            else:
                href = str((Path(base).resolve().parent / href).resolve())
        assets[key] = {**asset, "href": href}
    out["assets"] = assets
    return out


def _overlaps(bbox: Sequence[float] | None, area: Sequence[float]) -> bool:
    if not bbox or len(bbox) < 4:
        return True  # an item without a bbox cannot be ruled out here
    w, s, e, n = (bbox[0], bbox[1], bbox[2], bbox[3]) if len(bbox) == 4 else \
        (bbox[0], bbox[1], bbox[3], bbox[4])
    return w <= area[2] and e >= area[0] and s <= area[3] and n >= area[1]


def _parse_time(text: str | None) -> datetime | None:
    if not text or text == "..":
        return None
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _range(when: str | None) -> tuple[datetime | None, datetime | None]:
    if not when:
        return None, None
    if "/" not in when:
        t = _parse_time(when)
        if t is not None and len(when) <= 10:  # a whole day
            return t, t.replace(hour=23, minute=59, second=59, microsecond=999999)
        return t, t
    a, b = when.split("/", 1)
    end = _parse_time(b)
    if end is not None and len(b) <= 10:
        end = end.replace(hour=23, minute=59, second=59, microsecond=999999)
    return _parse_time(a), end


def item_time(item: Mapping[str, Any]) -> datetime | None:
    """The item's acquisition time (``datetime``, else the start of its range)."""
    props = item.get("properties", {})
    for key in ("datetime", "start_datetime"):
        if props.get(key):
            return _parse_time(str(props[key]))
    return None


def _in_range(item: Mapping[str, Any], start: datetime | None, end: datetime | None) -> bool:
    if start is None and end is None:
        return True
    props = item.get("properties", {})
    t0 = _parse_time(props.get("start_datetime")) or item_time(item)
    t1 = _parse_time(props.get("end_datetime")) or item_time(item)
    if t0 is None or t1 is None:
        return True
    return (start is None or t1 >= start) and (end is None or t0 <= end)


def _compare(op: str, value: Any, ref: Any) -> bool:
    import operator

    ops = {"lt": operator.lt, "lte": operator.le, "gt": operator.gt, "gte": operator.ge,
           "eq": operator.eq, "neq": operator.ne, "in": lambda v, r: v in r}
    try:
        return bool(ops[op](value, ref))
    except TypeError:
        return False


def _passes(props: Mapping[str, Any], query: Mapping[str, Mapping[str, Any]]) -> bool:
    return all(props.get(prop) is not None and _compare(op, props[prop], ref)
               for prop, cond in query.items() for op, ref in cond.items())


def _order_key(order: str) -> Any:
    far = datetime(1, 1, 1, tzinfo=UTC)

    def key(item: Mapping[str, Any]) -> Any:
        t = item_time(item) or far
        cloud = item.get("properties", {}).get("eo:cloud_cover")
        if order == "least-cloudy":
            return (cloud if cloud is not None else 101.0, -t.timestamp(), item.get("id", ""))
        sign = -1 if order == "newest" else 1
        return (sign * t.timestamp(), item.get("id", ""))

    return key
