"""The real STAC API of tests/stacserver.py: load a collection and items into pgstac, then
search them with pystac-client (bbox, datetime, eo:cloud_cover query, paging)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.stacserver import StacApi

COLLECTION = "geomm-test-s2"


def _collection() -> dict[str, Any]:
    return {
        "type": "Collection", "stac_version": "1.0.0", "id": COLLECTION,
        "description": "geomm test scenes", "license": "proprietary", "links": [],
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "extent": {"spatial": {"bbox": [[14.0, 52.0, 16.0, 53.0]]},
                   "temporal": {"interval": [["2021-01-01T00:00:00Z", None]]}},
    }


def _item(item_id: str, bbox: list[float], when: str, cloud: float, href: Path) -> dict[str, Any]:
    w, s, e, n = bbox
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": COLLECTION,
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "bbox": bbox,
        "geometry": {"type": "Polygon",
                     "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "properties": {"datetime": when, "eo:cloud_cover": cloud},
        "assets": {"red": {"href": str(href), "type": "image/tiff; application=geotiff",
                           "roles": ["data"]}},
        "links": [],
    }


def test_search_by_bbox_datetime_cloud_and_paging(stac_api: StacApi, tmp_path: Path) -> None:
    from pystac_client import Client

    clear = _item("clear", [14.0, 52.0, 15.0, 53.0], "2021-06-10T10:00:00Z", 12.5,
                  tmp_path / "clear_B04.tif")
    cloudy = _item("cloudy", [14.5, 52.0, 15.5, 53.0], "2021-06-20T10:00:00Z", 80.0,
                   tmp_path / "cloudy_B04.tif")
    stac_api.load([_collection()], [clear, cloudy])
    stac_api.load([_collection()], [clear])  # upsert: loading again is fine

    client = Client.open(stac_api.url)
    found = list(client.search(collections=[COLLECTION], bbox=[14.2, 52.2, 14.8, 52.8],
                               datetime="2021-06-01/2021-06-30",
                               query={"eo:cloud_cover": {"lt": 30}}).items())
    assert [i.id for i in found] == ["clear"]
    assert found[0].assets["red"].href == str(tmp_path / "clear_B04.tif")
    assert found[0].properties["eo:cloud_cover"] == 12.5

    # outside the date range or the bbox: nothing
    assert not list(client.search(collections=[COLLECTION], bbox=[14.2, 52.2, 14.8, 52.8],
                                  datetime="2021-07-01/2021-07-31").items())
    assert not list(client.search(collections=[COLLECTION], bbox=[20, 40, 21, 41]).items())

    # both match: one per page, two pages
    search = client.search(collections=[COLLECTION], bbox=[14.6, 52.2, 14.9, 52.8],
                           datetime="2021-06-01/2021-06-30", limit=1)
    pages = [[i.id for i in page.items] for page in search.pages()]
    assert sorted(sum(pages, [])) == ["clear", "cloudy"]
    assert len(pages) == 2 and all(len(p) == 1 for p in pages)
