"""Tests for geomm.predict.sidecars: QGIS style, STAC Item and PNG quicklook beside a class map."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from matplotlib.image import imread
from rasterio.warp import transform as warp_points

from geomm.classes import ClassTable
from geomm.errors import GeommError
from geomm.predict.sidecars import (
    CLASS_EXT,
    PROJ_EXT,
    AssetInfo,
    SidecarError,
    write_qml,
    write_quicklook,
    write_stac_item,
)

TABLE = ClassTable.from_names(["Water body", "Forest & trees", "Crop<land>", "Built-up"],
                              ["#1f77b4", "#2ca02c", "#ffbb78", "#d62728"])
TRANSFORM = Affine(10, 0, 500000, 0, -10, 5800000)


def _classes_tif(path: Path, *, absent: int | None = None, tagged: bool = True,
                 crs: str = "EPSG:32633", transform: Affine = TRANSFORM) -> Path:
    """120x80 class raster: four 30-px-wide class bands, a nodata strip, colour table, tags."""
    data = np.repeat(np.arange(4, dtype=np.uint8), 30)[None, :].repeat(80, axis=0)
    data[:, 110:] = 255
    if absent is not None:
        data[data == absent] = (absent + 1) % 4
    with rasterio.open(path, "w", driver="GTiff", width=120, height=80, count=1,
                       dtype="uint8", crs=crs, transform=transform, nodata=255) as dst:
        dst.write(data, 1)
        dst.write_colormap(1, {i: (*TABLE.colours[i], 255) for i in range(4)})
        if tagged:
            dst.update_tags(GEOMM_CLASSES=json.dumps(TABLE.to_dict()))
        dst.update_tags(1, **{f"class_{i}": n for i, n in enumerate(TABLE.names)})
    return path


@pytest.fixture
def classes_tif(tmp_path: Path) -> Path:
    return _classes_tif(tmp_path / "classes.tif")


def _assets() -> dict[str, AssetInfo]:
    return {
        "classes": AssetInfo("./classes.tif", "Land-cover classes", classes=True),
        "probabilities": AssetInfo("./probabilities.tif", "Class probabilities",
                                   bands=TABLE.names),
        "quicklook": AssetInfo("./quicklook.png", "Quicklook", roles=("overview",),
                               media_type="image/png"),
    }


def test_sidecar_error_is_geomm_and_value_error() -> None:
    assert issubclass(SidecarError, GeommError) and issubclass(SidecarError, ValueError)


# --- QGIS style ---------------------------------------------------------------------------

def test_qml_has_one_palette_entry_per_class(tmp_path: Path) -> None:
    out = write_qml(tmp_path / "classes.qml", TABLE)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE qgis")
    root = ET.fromstring(text.split("\n", 1)[1])
    assert root.tag == "qgis" and root.get("version", "").startswith("3.")
    renderer = root.find("pipe/rasterrenderer")
    assert renderer is not None
    assert (renderer.get("type"), renderer.get("band"), renderer.get("alphaBand")) == (
        "paletted", "1", "-1")
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [(e.get("value"), e.get("color"), e.get("label"), e.get("alpha")) for e in entries] == [
        ("0", "#1f77b4", "Water body", "255"), ("1", "#2ca02c", "Forest & trees", "255"),
        ("2", "#ffbb78", "Crop<land>", "255"), ("3", "#d62728", "Built-up", "255")]
    # nodata is transparent: no palette entry and a 100 % transparent pixel value
    transparent = renderer.find("rasterTransparency/singleValuePixelList/pixelListEntry")
    assert transparent is not None
    assert (transparent.get("min"), transparent.get("max"),
            transparent.get("percentTransparent")) == ("255", "255", "100")
    assert [c.tag for c in renderer] == ["rasterTransparency", "minMaxOrigin", "colorPalette"]
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_qml_overwrites_atomically(tmp_path: Path) -> None:
    out = tmp_path / "classes.qml"
    out.write_text("old")
    write_qml(out, ClassTable.from_names(["a", "b"]))
    assert len(ET.fromstring(out.read_text().split("\n", 1)[1])
               .findall(".//paletteEntry")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.qml"]


# --- STAC Item ----------------------------------------------------------------------------

def _item(tmp_path: Path, raster: Path, **kw: object) -> dict:
    out = write_stac_item(tmp_path / "item.json", item_id="scene-1", raster=raster,
                          assets=_assets(), table=TABLE, **kw)  # type: ignore[arg-type]
    return json.loads(out.read_text())


def test_stac_item_has_required_fields(tmp_path: Path, classes_tif: Path) -> None:
    item = _item(tmp_path, classes_tif, properties={"datetime": "2024-06-01T10:30:00Z"})
    for key in ("type", "stac_version", "id", "geometry", "bbox", "properties", "links",
                "assets", "stac_extensions"):
        assert key in item
    assert (item["type"], item["stac_version"], item["id"]) == ("Feature", "1.1.0", "scene-1")
    assert item["stac_extensions"] == [PROJ_EXT, CLASS_EXT]
    assert item["links"] == []
    props = item["properties"]
    assert props["datetime"] == "2024-06-01T10:30:00Z"
    assert props["geomm:datetime_source"] == "properties"
    assert props["proj:code"] == "EPSG:32633" and "proj:wkt2" not in props
    assert props["proj:shape"] == [80, 120]
    assert props["proj:transform"] == [10, 0, 500000, 0, -10, 5800000]
    assert props["proj:bbox"] == [500000, 5799200, 501200, 5800000]


def test_stac_geometry_and_bbox_cover_the_footprint(tmp_path: Path, classes_tif: Path) -> None:
    item = _item(tmp_path, classes_tif)
    geom, (w, s, e, n) = item["geometry"], item["bbox"]
    assert geom["type"] == "Polygon"
    ring = geom["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) > 5  # densified edges
    xs, ys = zip(*ring, strict=True)
    area = sum(x0 * y1 - x1 * y0 for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:], strict=False))
    assert area > 0  # RFC 7946: exterior ring counter-clockwise
    assert w <= min(xs) and e >= max(xs) and s <= min(ys) and n >= max(ys)
    lon, lat = warp_points("EPSG:32633", "EPSG:4326", [500000, 501200, 500600],
                           [5800000, 5799200, 5799600])
    assert all(w <= x <= e for x in lon) and all(s <= y <= n for y in lat)
    assert 14.9 < w < e < 15.1 and 52.3 < s < n < 52.4  # UTM 33N, central meridian 15°E


def test_stac_classes_on_the_classes_asset(tmp_path: Path, classes_tif: Path) -> None:
    assets = _item(tmp_path, classes_tif)["assets"]
    assert {k: a["href"] for k, a in assets.items()} == {
        "classes": "./classes.tif", "probabilities": "./probabilities.tif",
        "quicklook": "./quicklook.png"}
    assert assets["classes"]["type"] == "image/tiff; application=geotiff; profile=cloud-optimized"
    assert assets["quicklook"]["roles"] == ["overview"]
    assert assets["probabilities"]["bands"] == [{"name": n} for n in TABLE.names]
    assert "classification:classes" not in assets["probabilities"]
    classes = assets["classes"]["classification:classes"]
    assert [(c["value"], c["title"], c.get("color_hint")) for c in classes] == [
        (0, "Water body", "1F77B4"), (1, "Forest & trees", "2CA02C"),
        (2, "Crop<land>", "FFBB78"), (3, "Built-up", "D62728"), (255, "No data", None)]
    names = [c["name"] for c in classes]
    assert names == ["Water_body", "Forest_trees", "Crop_land", "Built-up", "nodata"]
    assert classes[-1]["nodata"] is True and not any(c.get("nodata") for c in classes[:-1])


def test_stac_datetime_defaults_to_now_and_says_so(tmp_path: Path, classes_tif: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    props = _item(tmp_path, classes_tif, properties={"title": "Map"})["properties"]
    when = datetime.fromisoformat(props["datetime"])
    assert props["datetime"].endswith("Z") and before <= when <= datetime.now(UTC)
    assert props["geomm:datetime_source"] == "written" and props["title"] == "Map"


def test_stac_datetime_range_keeps_null(tmp_path: Path, classes_tif: Path) -> None:
    props = _item(tmp_path, classes_tif, properties={
        "datetime": None, "start_datetime": "2024-01-01T00:00:00Z",
        "end_datetime": "2024-12-31T23:59:59Z"})["properties"]
    assert props["datetime"] is None and props["start_datetime"] == "2024-01-01T00:00:00Z"


def test_stac_custom_crs_writes_wkt2(tmp_path: Path) -> None:
    crs = "+proj=laea +lat_0=51.3 +lon_0=11.3 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs"
    raster = _classes_tif(tmp_path / "classes.tif", crs=crs,
                          transform=Affine(10, 0, -600, 0, -10, 400))
    item = _item(tmp_path, raster)
    props = item["properties"]
    assert "proj:code" not in props and props["proj:wkt2"].startswith(("PROJCRS", "PROJCS"))
    w, s, e, n = item["bbox"]
    assert w < 11.3 < e and s < 51.3 < n


def test_stac_without_classes_asset_omits_extension(tmp_path: Path, classes_tif: Path) -> None:
    out = write_stac_item(tmp_path / "item.json", item_id="x", raster=classes_tif,
                          assets={"c": AssetInfo("confidence.tif", "Confidence")}, table=TABLE)
    assert json.loads(out.read_text())["stac_extensions"] == [PROJ_EXT]


@pytest.mark.parametrize(("kw", "match"), [
    ({"raster": "missing.tif"}, "not found"),
    ({"assets": {"c": AssetInfo("/abs/classes.tif", "C")}}, "absolute"),
    ({"assets": {"c": AssetInfo("C:\\out\\classes.tif", "C")}}, "absolute"),
    ({"properties": {"datetime": "last tuesday"}}, "RFC 3339"),
])
def test_stac_bad_inputs(tmp_path: Path, classes_tif: Path, kw: dict, match: str) -> None:
    args: dict = {"item_id": "x", "raster": classes_tif, "assets": _assets(), "table": TABLE}
    args.update(kw)
    if args["raster"] == "missing.tif":
        args["raster"] = tmp_path / "missing.tif"
    with pytest.raises(SidecarError, match=match):
        write_stac_item(tmp_path / "item.json", **args)
    assert not (tmp_path / "item.json").exists()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_stac_raster_without_crs(tmp_path: Path) -> None:
    raster = tmp_path / "plain.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=4, height=4, count=1,
                       dtype="uint8") as dst:
        dst.write(np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(SidecarError, match="no CRS"):
        _item(tmp_path, raster)


# --- quicklook ----------------------------------------------------------------------------

def _colours(png: Path) -> set[tuple[int, int, int]]:
    img = imread(png)
    rgb = np.round(img[..., :3] * 255).astype(int).reshape(-1, 3)
    return {tuple(c) for c in np.unique(rgb, axis=0)}


def test_quicklook_draws_classes_and_legend(tmp_path: Path) -> None:
    raster = _classes_tif(tmp_path / "classes.tif", absent=2)
    out = write_quicklook(raster, tmp_path / "quicklook.png", max_size=400, title="Scene 1")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5_000
    colours = _colours(out)
    assert len(colours) > 10
    for i in (0, 1, 3):
        assert TABLE.colours[i] in colours
    assert TABLE.colours[2] not in colours  # absent class: not on the map, not in the legend
    assert (255, 255, 255) in colours  # nodata strip shown white
    h, w = imread(out).shape[:2]
    assert 250 < h < 700 and 400 < w < 1000


def test_quicklook_reads_names_without_table_tag(tmp_path: Path) -> None:
    raster = _classes_tif(tmp_path / "classes.tif", tagged=False)
    out = write_quicklook(raster, tmp_path / "q.png", max_size=200)
    colours = _colours(out)
    assert all(c in colours for c in TABLE.colours)  # colours from the GeoTIFF colour table


def test_quicklook_of_large_raster_is_bounded(tmp_path: Path) -> None:
    raster = tmp_path / "big.tif"
    data = (np.arange(3000)[None, :] // 750).astype(np.uint8).repeat(2000, axis=0)
    with rasterio.open(raster, "w", driver="GTiff", width=3000, height=2000, count=1,
                       dtype="uint8", crs="EPSG:32633", transform=TRANSFORM, nodata=255,
                       tiled=True) as dst:
        dst.write(data, 1)
    out = write_quicklook(raster, tmp_path / "q.png", table=TABLE, max_size=300)
    h, w = imread(out).shape[:2]
    assert h < 450 and w < 700
    assert all(c in _colours(out) for c in TABLE.colours)


def test_quicklook_rejects_multiband_and_missing(tmp_path: Path) -> None:
    raster = tmp_path / "probabilities.tif"
    with rasterio.open(raster, "w", driver="GTiff", width=8, height=8, count=4,
                       dtype="uint8", crs="EPSG:32633", transform=TRANSFORM) as dst:
        dst.write(np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(SidecarError, match="4 bands"):
        write_quicklook(raster, tmp_path / "q.png")
    with pytest.raises(SidecarError, match="not found"):
        write_quicklook(tmp_path / "nope.tif", tmp_path / "q.png")
    assert not (tmp_path / "q.png").exists()


def test_stac_rotated_and_south_up_grids(tmp_path: Path) -> None:
    rotated = TRANSFORM * Affine.rotation(20)
    south_up = Affine(10, 0, 500000, 0, 10, 5799200)
    for name, transform in (("rotated.tif", rotated), ("south_up.tif", south_up)):
        raster = _classes_tif(tmp_path / name, transform=transform)
        item = _item(tmp_path, raster)
        ring = item["geometry"]["coordinates"][0]
        xs, ys = zip(*ring, strict=True)
        area = sum(x0 * y1 - x1 * y0
                   for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:], strict=False))
        assert area > 0, name
        corners = [transform * c for c in ((0, 0), (120, 0), (120, 80), (0, 80))]
        lon, lat = warp_points("EPSG:32633", "EPSG:4326", *zip(*corners, strict=True))
        w, s, e, n = item["bbox"]
        assert all(w <= x <= e for x in lon) and all(s <= y <= n for y in lat), name
        assert item["properties"]["proj:transform"] == list(transform)[:6]
