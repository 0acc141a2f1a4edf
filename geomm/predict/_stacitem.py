"""What a prediction's STAC Item says beyond its grid: when the scene was acquired, an id per
scene and run, ``raster:bands`` of the assets; and a STAC Collection over a batch's Items.

The acquisition time is never the time of writing. It is taken, first found, from the recipe
(``acquired:`` per scene, then top-level), from the STAC items a modality was composited from
(their time range, noted by :func:`geomm.sources.resolve`), or from the input files: GDAL's
``ACQUISITIONDATETIME`` metadata, a ``YYYYMMDDTHHMMSS`` stamp in the file name (Sentinel-2's
``T33UUU_20170216T102101_B02.jp2``), then the TIFF ``DateTime`` tag. One time becomes the
Item's ``datetime``; several, or a date (a whole day), become ``start_/end_datetime`` with a
null ``datetime``. When nothing says, the range is 1970-01-01 to the time of writing (the
acquisition preceded the map) and ``geomm:datetime_source`` is ``"unknown"``.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from geomm.predict.sidecars import (
    PROJ_EXT,
    STAC_VERSION,
    AssetInfo,
    SidecarError,
    _atomic_write,
)

__all__ = ["Acquisition", "acquisition", "add_vector_asset", "item_id", "raster_bands",
           "run_token", "vector_asset", "write_stac_collection"]

VECTOR_TYPES = {".gpkg": "application/geopackage+sqlite3", ".fgb": "application/vnd.flatgeobuf",
                ".parquet": "application/vnd.apache.parquet", ".geojson": "application/geo+json",
                ".json": "application/geo+json", ".shp": "application/vnd.shp",
                ".gml": "application/gml+xml", ".kml": "application/vnd.google-earth.kml+xml"}
"""Media types of the vector map by suffix (others: ``application/octet-stream``)."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STAMP = re.compile(r"(?<![0-9])(\d{8}T\d{6})(?![0-9])")


def run_token() -> str:
    """A short token that differs between runs (8 hex digits of a random UUID)."""
    return uuid.uuid4().hex[:8]


def item_id(scene_id: str, run: str) -> str:
    """The Item ``id``: the scene id and the run token, ``"<scene>-<run>"``."""
    return f"{scene_id}-{run}"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Acquisition:
    """When a scene's inputs were acquired: one time, or a range."""

    source: str
    """Where it was found: ``recipe``, ``stac``, ``file-metadata``, ``file-name`` or
    ``unknown``."""
    start: datetime
    """Start (UTC); equal to ``end`` for one time."""
    end: datetime
    """End (UTC)."""

    @classmethod
    def of_times(cls, times: Sequence[datetime], source: str) -> Acquisition:
        """The span of ``times`` (one time when they are all equal)."""
        return cls(source, min(times), max(times))

    @classmethod
    def unknown(cls, now: datetime | None = None) -> Acquisition:
        """Some time before the map was written."""
        return cls("unknown", EPOCH, (now or datetime.now(UTC)).replace(microsecond=0))

    def properties(self) -> dict[str, Any]:
        """STAC Item properties: ``datetime`` (null for a range), ``start_/end_datetime``
        (a range only) and ``geomm:datetime_source``."""
        if self.start == self.end:
            return {"datetime": _iso(self.start), "geomm:datetime_source": self.source}
        return {"datetime": None, "start_datetime": _iso(self.start),
                "end_datetime": _iso(self.end), "geomm:datetime_source": self.source}


def acquisition(modalities: Sequence[Any], *, recipe: Any = None,
                scene: int = 0) -> Acquisition:
    """The acquisition of a scene: the recipe's ``acquired:`` (``scenes[scene]``, then
    top-level), the STAC items' range noted on the modalities (``recipe.modalities`` when a
    recipe is given: a resolved recipe keeps those notes), the files' metadata or names, or
    :meth:`Acquisition.unknown` (see the module doc)."""
    from geomm.recipe import acquired_range

    if recipe is not None:
        raw = recipe.raw
        scenes = raw.get("scenes") or []
        value = (scenes[scene].get("acquired") if scene < len(scenes) else None)
        if value is None:
            value = raw.get("acquired")
        if value is not None:
            return Acquisition("recipe", *acquired_range(value))
    noted = [m.extra for m in (recipe.modalities if recipe is not None else modalities)
             if m.extra.get("start_datetime")]
    if noted:
        times = [datetime.fromisoformat(n[k].replace("Z", "+00:00"))
                 for n in noted for k in ("start_datetime", "end_datetime") if n.get(k)]
        return Acquisition.of_times(times, "stac")
    found = [t for t in (_file_time(b.path) for m in modalities for b in m.bands)
             if t is not None]
    if not found:
        return Acquisition.unknown()
    sources = sorted({s for _, s in found})
    return Acquisition.of_times([t for t, _ in found], "+".join(sources))


def _file_time(path: Any) -> tuple[datetime, str] | None:
    """A file's acquisition time: GDAL ``ACQUISITIONDATETIME`` (imagery or default metadata),
    a ``YYYYMMDDTHHMMSS`` stamp in its name, the TIFF ``DateTime`` tag; None if none."""
    from geomm._remote import RemotePath

    tags: dict[str, str] = {}
    if not isinstance(path, RemotePath):  # a remote file's headers are not fetched again
        import rasterio
        from rasterio.errors import RasterioError

        try:
            with rasterio.open(path) as src:
                tags = {**src.tags(), **{f"IMAGERY:{k}": v
                                         for k, v in src.tags(ns="IMAGERY").items()}}
        except RasterioError:
            tags = {}
    for key in ("IMAGERY:ACQUISITIONDATETIME", "ACQUISITIONDATETIME"):
        t = _parse(tags.get(key, ""), "%Y-%m-%d %H:%M:%S")
        if t is not None:
            return t, "file-metadata"
    stamp = _STAMP.search(Path(str(path)).name)
    if stamp is not None:
        t = _parse(stamp.group(1), "%Y%m%dT%H%M%S")
        if t is not None:
            return t, "file-name"
    t = _parse(tags.get("TIFFTAG_DATETIME", ""), "%Y:%m:%d %H:%M:%S")
    return (t, "file-metadata") if t is not None else None


def _parse(text: str, fmt: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    for parse in (lambda s: datetime.strptime(s, fmt),
                  lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))):
        try:
            t = parse(text)
        except ValueError:
            continue
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return None


def raster_bands(dtype: str, count: int, nodata: float | None, scale: float | None = None,
                 offset: float | None = None) -> tuple[dict[str, Any], ...]:
    """``raster:bands`` entries (raster extension v1.1): data type, nodata where the file has
    one (``"nan"`` for NaN), scale and offset when given."""
    band: dict[str, Any] = {"data_type": dtype}
    if nodata is not None:
        band["nodata"] = "nan" if math.isnan(nodata) else (
            int(nodata) if dtype.startswith(("uint", "int")) else float(nodata))
    if scale is not None or offset is not None:
        band["scale"] = 1.0 if scale is None else float(scale)
        band["offset"] = 0.0 if offset is None else float(offset)
    return tuple(dict(band) for _ in range(count))


def vector_asset(name: str = "map.gpkg") -> AssetInfo:
    """The vector map ``name`` beside the rasters (``geomm batch``, ``geomm vectorize``)."""
    return AssetInfo(f"./{name}", "Land-cover polygons", ("data",),
                     media_type=VECTOR_TYPES.get(Path(name).suffix.lower(),
                                                 "application/octet-stream"))


def add_vector_asset(folder: str | Path, name: str = "map.gpkg") -> Path:
    """Add the vector map ``folder/name`` to ``folder/item.json`` as asset ``vector`` (for a
    map vectorised after its Item was written); returns the Item's path.

    Raises:
        SidecarError: the Item or the vector file is missing, or the Item is not JSON.
    """
    folder = Path(folder)
    if not (folder / name).is_file():
        raise SidecarError(f"{folder / name}: no such vector map; vectorise classes.tif first")
    path = folder / "item.json"
    item = _load(path)
    info = vector_asset(name)
    item.setdefault("assets", {})["vector"] = {"href": info.href, "type": info.media_type,
                                               "title": info.title, "roles": list(info.roles)}
    return _atomic_write(path, (json.dumps(item, indent=2) + "\n").encode("utf-8"))


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise SidecarError(f"{path}: cannot read the STAC Item ({exc.strerror}); write the "
                           "prediction first") from None
    except ValueError as exc:
        raise SidecarError(f"{path}: not JSON ({exc}); rerun the prediction to rewrite "
                           "it") from None
    if not isinstance(doc, dict) or doc.get("type") != "Feature":
        raise SidecarError(f"{path}: not a STAC Item (no \"type\": \"Feature\"); rerun the "
                           "prediction to rewrite it")
    return doc


def write_stac_collection(folder: str | Path, *, collection_id: str | None = None,
                          title: str | None = None, description: str | None = None,
                          license: str = "other") -> Path:
    """Write ``folder/collection.json``: a STAC 1.1 Collection linking the Items of a batch's
    outputs (``folder/*/item.json`` per scene, or ``folder/item.json`` of a mosaic), with
    their spatial and temporal extent; the Items are not changed.

    Args:
        folder: The batch output folder.
        collection_id: The Collection ``id`` (default: the folder's name).
        title: Its title (default: the id).
        description: Its description (default: a sentence naming the scenes and models).
        license: SPDX id of the maps' licence, or ``"other"``.

    Returns:
        The path written.

    Raises:
        SidecarError: no Item is found, or one is not a STAC Item.
    """
    root = Path(folder)
    paths = sorted(p for p in root.glob("*/item.json") if not p.parent.name.startswith("."))
    if (root / "item.json").is_file():
        paths.insert(0, root / "item.json")
    if not paths:
        raise SidecarError(f"{root}: no item.json in it or its sub-folders; run the batch "
                           "(or geomm predict) into it first")
    items = [(p, _load(p)) for p in paths]
    cid = collection_id or root.resolve().name
    bboxes = [it["bbox"] for _, it in items if len(it.get("bbox", [])) == 4]
    spatial = ([[min(b[0] for b in bboxes), min(b[1] for b in bboxes),
                 max(b[2] for b in bboxes), max(b[3] for b in bboxes)]]
               if bboxes and all(b[0] <= b[2] for b in bboxes) else
               [[-180.0, min(b[1] for b in bboxes), 180.0, max(b[3] for b in bboxes)]]
               if bboxes else [[-180.0, -90.0, 180.0, 90.0]])
    starts, ends = [], []
    for _, it in items:
        props = it.get("properties", {})
        if props.get("geomm:datetime_source") == "unknown":
            continue
        t0 = props.get("start_datetime") or props.get("datetime")
        t1 = props.get("end_datetime") or props.get("datetime")
        if t0 and t1:
            starts.append(t0)
            ends.append(t1)
    interval = [min(starts, key=_when), max(ends, key=_when)] if starts else [None, None]
    summaries: dict[str, list[Any]] = {}
    for key in ("geomm:model", "geomm:model_kind", "proj:code"):
        values = sorted({str(it["properties"][key]) for _, it in items
                         if key in it.get("properties", {})})
        if values:
            summaries[key] = values
    models = ", ".join(summaries.get("geomm:model", [])) or "geomm"
    links = [{"rel": "root", "href": "./collection.json", "type": "application/json",
              "title": title or cid}]
    links += [{"rel": "item", "href": "./" + p.relative_to(root).as_posix(),
               "type": "application/geo+json", "title": str(it.get("id"))} for p, it in items]
    collection = {
        "type": "Collection", "stac_version": STAC_VERSION,
        "stac_extensions": [PROJ_EXT] if "proj:code" in summaries else [],
        "id": cid, "title": title or cid,
        "description": description or (f"Land-cover maps of {len(items)} scene(s) predicted "
                                       f"by geomm with {models}."),
        "license": license,
        "extent": {"spatial": {"bbox": spatial}, "temporal": {"interval": [interval]}},
        "summaries": summaries, "links": links}
    return _atomic_write(root / "collection.json",
                         (json.dumps(collection, indent=2) + "\n").encode("utf-8"))


def _when(text: str) -> datetime:
    t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def item_properties(*, scene_id: str, run: str, acquired: Acquisition,
                    extra: Mapping[str, Any]) -> dict[str, Any]:
    """The Item properties geomm writes: acquisition, scene, run, ``created`` and ``extra``."""
    return {**acquired.properties(), "created": _iso(datetime.now(UTC).replace(microsecond=0)),
            "geomm:scene": scene_id, "geomm:run": run, **extra}
