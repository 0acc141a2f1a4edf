"""The presets of :mod:`geomm.stacpresets` against real item documents of their catalogues.

The fixtures (``tests/sources/items/*.json``) are trimmed copies of items that public projects
published; ``tests/sources/items/README.md`` says where each came from and what was left out.
No network: the documents are read from disk.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from geomm.stacpresets import PRESETS, MaskSpec

ITEMS = Path(__file__).parent / "items"

FIXTURES = {
    "sentinel-2-l2a/earth-search": "earth-search-sentinel-2-l2a.json",
    "sentinel-2-l2a/planetary-computer": "planetary-computer-sentinel-2-l2a.json",
    "landsat-c2-l2": "planetary-computer-landsat-c2-l2.json",
    "sentinel-1-rtc": "planetary-computer-sentinel-1-rtc.json",
    "cop-dem-glo-30": "planetary-computer-cop-dem-glo-30.json",
}
"""Preset name -> fixture file."""

DOCUMENTED_OFFSETS = {
    "sentinel-2-l2a/earth-search": (
        -0.1,
        "Earth Search v1 declares raster:bands offset -0.1 (with scale 0.0001) on the "
        "reflectance bands of processing-baseline >= 04.00 items (the +1000 DN of baseline "
        "04.00). The preset's offset (0.0) is only the fallback for items that do not say; "
        "geomm takes an asset's raster:bands first (geomm/sources/plan.py), so these items "
        "are composited with the declared -0.1.",
    ),
}
"""Preset name -> (offset the item declares, why it differs from the preset's offset)."""

KNOWN_COMMON_NAME_DIFFERENCES = {"B8A": ("nir08", "rededge")}
"""geomm band -> (Earth Search common_name, Planetary Computer common_name): the catalogues
label band 8A differently; the centre wavelength (0.865 um) shows it is the same band."""


def load(name: str) -> dict[str, Any]:
    return json.loads((ITEMS / FIXTURES[name]).read_text())


def raster_band(asset: dict[str, Any]) -> dict[str, Any]:
    bands = asset.get("raster:bands") or [{}]
    return bands[0]


def eo_band(item: dict[str, Any], key: str) -> dict[str, Any]:
    bands = item["assets"][key].get("eo:bands") or []
    assert len(bands) == 1, f"asset {key!r} of {item['id']} has {len(bands)} eo:bands"
    return bands[0]


def preset_keys(name: str) -> list[str]:
    """Asset keys the preset reads: its bands, then its mask."""
    preset = PRESETS[name]
    keys = list(preset.assets.values())
    if preset.mask is not None:
        keys.append(preset.mask.asset)
    return keys


def mask_of(name: str) -> MaskSpec:
    mask = PRESETS[name].mask
    assert mask is not None, f"preset {name} has no mask"
    return mask


NAMES = sorted(FIXTURES)


def test_every_preset_has_a_fixture() -> None:
    assert set(FIXTURES) == set(PRESETS)
    for file in FIXTURES.values():
        assert (ITEMS / file).is_file(), file


@pytest.mark.parametrize("name", NAMES)
def test_fixture_is_a_small_stac_item(name: str) -> None:
    item = load(name)
    assert (ITEMS / FIXTURES[name]).stat().st_size < 10_240
    assert item["type"] == "Feature"
    assert item["stac_version"] == "1.0.0"
    assert item["id"] and item["assets"] and item["properties"]["datetime"]
    assert len(item["bbox"]) == 4 and item["geometry"]["type"] == "Polygon"


@pytest.mark.parametrize("name", NAMES)
def test_collection_id(name: str) -> None:
    assert load(name)["collection"] == PRESETS[name].collection


@pytest.mark.parametrize("name", NAMES)
def test_asset_keys_exist(name: str) -> None:
    assets = load(name)["assets"]
    missing = [k for k in preset_keys(name) if k not in assets]
    assert not missing, f"preset {name}: asset keys {missing} not in the item; it has " \
                        f"{sorted(assets)}"


@pytest.mark.parametrize("name", NAMES)
def test_assets_are_cog_rasters_with_data_role(name: str) -> None:
    assets = load(name)["assets"]
    for key in preset_keys(name):
        asset = assets[key]
        assert asset["type"].startswith("image/tiff"), (key, asset["type"])
        assert asset["href"].lower().endswith((".tif", ".tiff")), (key, asset["href"])
    for key in PRESETS[name].assets.values():
        assert "data" in assets[key]["roles"], (key, assets[key]["roles"])


@pytest.mark.parametrize("name", NAMES)
def test_declared_scale_agrees(name: str) -> None:
    preset, item = PRESETS[name], load(name)
    for band, key in preset.assets.items():
        rb = raster_band(item["assets"][key])
        if "scale" in rb:
            assert math.isclose(rb["scale"], preset.scale, rel_tol=1e-9), \
                f"{name}: {band} ({key}) declares scale {rb['scale']}, preset {preset.scale}"


@pytest.mark.parametrize("name", NAMES)
def test_declared_offset_agrees(name: str) -> None:
    preset, item = PRESETS[name], load(name)
    documented = DOCUMENTED_OFFSETS.get(name)
    expected = documented[0] if documented else preset.offset
    declared = [raster_band(item["assets"][k]).get("offset") for k in preset.assets.values()]
    for band, off in zip(preset.assets, declared, strict=True):
        if off is not None:
            assert math.isclose(off, expected, abs_tol=1e-12), \
                f"{name}: {band} declares offset {off}, expected {expected}"
    if documented:
        # the difference is the documented one, not a preset error: the fallback stays 0.0
        assert preset.offset == 0.0 and all(o is not None for o in declared)


def test_earth_search_offset_is_the_baseline_04_offset() -> None:
    props = load("sentinel-2-l2a/earth-search")["properties"]
    assert props["s2:processing_baseline"] >= "04.00"
    assert props["earthsearch:boa_offset_applied"] is True


def test_planetary_computer_sentinel2_declares_no_scale() -> None:
    """Planetary Computer's Sentinel-2 items have no raster:bands, so the preset's scale (and
    its offset 0.0) apply. The item is processing baseline 05.10: its DNs carry the +1000 of
    baseline 04.00, which the preset's note documents (composites of such items are
    ``DN * 0.0001``, not offset-corrected reflectance)."""
    name = "sentinel-2-l2a/planetary-computer"
    item, preset = load(name), PRESETS[name]
    assert all("raster:bands" not in item["assets"][k] for k in preset_keys(name))
    assert item["properties"]["s2:processing_baseline"] >= "04.00"
    assert (preset.scale, preset.offset) == (0.0001, 0.0)
    assert "04.00" in preset.note


def test_sentinel2_band_names_agree_across_catalogues() -> None:
    """A geomm band name reads the same band at Earth Search and at Planetary Computer."""
    es_p = PRESETS["sentinel-2-l2a/earth-search"]
    pc_p = PRESETS["sentinel-2-l2a/planetary-computer"]
    es, pc = load(es_p.name), load(pc_p.name)
    assert list(es_p.assets) == list(pc_p.assets)
    for band in es_p.assets:
        e, p = eo_band(es, es_p.assets[band]), eo_band(pc, pc_p.assets[band])
        # each catalogue names the band by its own asset key; PC's is geomm's band name
        assert e["name"] == es_p.assets[band]
        assert p["name"] == band
        assert e["center_wavelength"] == p["center_wavelength"], band
        assert e["full_width_half_max"] == p["full_width_half_max"], band
        if "common_name" in e and "common_name" in p:
            if band in KNOWN_COMMON_NAME_DIFFERENCES:
                assert (e["common_name"], p["common_name"]) == \
                    KNOWN_COMMON_NAME_DIFFERENCES[band]
            else:
                assert e["common_name"] == p["common_name"], band
    # where only one catalogue gives a common_name: band 9 (water vapour) at PC has none
    assert "common_name" not in eo_band(pc, "B09")
    assert eo_band(es, "nir09")["common_name"] == "nir09"


def test_sentinel2_mask_assets() -> None:
    es, pc = load("sentinel-2-l2a/earth-search"), load("sentinel-2-l2a/planetary-computer")
    es_mask, pc_mask = mask_of("sentinel-2-l2a/earth-search"), \
        mask_of("sentinel-2-l2a/planetary-computer")
    assert (es_mask.asset, pc_mask.asset) == ("scl", "SCL")
    assert raster_band(es["assets"]["scl"])["data_type"] == "uint8"
    assert "(SCL)" in es["assets"]["scl"]["title"] and "(SCL)" in pc["assets"]["SCL"]["title"]
    assert es_mask.drop == pc_mask.drop and not es_mask.bits


def test_landsat_qa_pixel_bits() -> None:
    """The QA_PIXEL bits the preset leaves out are the ones the item names fill, dilated cloud,
    cirrus, cloud and cloud shadow."""
    mask = mask_of("landsat-c2-l2")
    qa = load("landsat-c2-l2")["assets"][mask.asset]
    fields = {f["offset"]: f for f in qa["classification:bitfields"]}
    named = {}
    for bit in mask.bits:
        assert fields[bit]["length"] == 1, bit
        named[bit] = fields[bit]["name"]
    assert named == {0: "fill", 1: "dilated_cloud", 2: "cirrus", 3: "cloud", 4: "cloud_shadow"}
    assert not mask.drop


def test_landsat_band_names_are_common_names() -> None:
    preset, item = PRESETS["landsat-c2-l2"], load("landsat-c2-l2")
    for band, key in preset.assets.items():
        assert eo_band(item, key)["common_name"] == band


def test_sentinel1_polarisations() -> None:
    preset, item = PRESETS["sentinel-1-rtc"], load("sentinel-1-rtc")
    assert set(preset.assets) == set(item["properties"]["sar:polarizations"])
    for band, key in preset.assets.items():
        assert key == band.lower()
        assert raster_band(item["assets"][key])["data_type"] == "float32"
        assert "scale" not in raster_band(item["assets"][key])
    assert preset.scale == 1.0 and preset.offset == 0.0


def test_cop_dem_single_data_asset() -> None:
    preset, item = PRESETS["cop-dem-glo-30"], load("cop-dem-glo-30")
    assert preset.assets == {"elevation": "data"}
    assert item["properties"]["proj:epsg"] == 4326
    assert preset.composite == "first"
