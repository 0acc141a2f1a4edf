"""Other tools read the tile store: xarray/rioxarray through CF coordinates, GDAL (Debian's
3.6 too) through `geomm export`'s COGs."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from click.testing import CliRunner

from geomm.cli import main
from geomm.errors import StoreError
from geomm.recipe import load_recipe
from geomm.stack.build import stack
from geomm.stack.export import export_layer
from geomm.stack.store import open_store
from tests.synthetic import write_recipe, write_scene


@pytest.fixture
def store(tmp_path):
    write_scene(tmp_path)
    (summary,) = stack(load_recipe(write_recipe(tmp_path)), out=tmp_path / "store")
    return summary.path


def test_xarray_gets_crs_and_transform_of_every_layer_without_help(store):
    st = open_store(store)
    for key in [*st.layer_keys, "base"]:
        ds = xr.open_zarr(store / "store.zarr", group=key, consolidated=False)
        assert "spatial_ref" in ds.coords
        assert ds.rio.crs.to_epsg() == 32633
        factor = 1 if key == "base" else st.factor(key)
        for var in ds.data_vars.values():
            mapping = var.attrs.get("grid_mapping") or var.encoding.get("grid_mapping")
            assert mapping == "spatial_ref"
            assert var.rio.crs.to_epsg() == 32633
            assert var.rio.transform().almost_equals(st.grid.transform_at(factor))


def test_export_writes_a_cog_gdal_reads_with_names_mask_and_scale(store, tmp_path):
    st = open_store(store)
    out = export_layer(store, "radar/20m", tmp_path / "radar.tif")
    with rasterio.open(out) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.crs.to_epsg() == 32633 and src.transform == st.grid.transform_at(2)
        assert src.descriptions == ("VV",)
        ds = st.layer("radar/20m")
        np.testing.assert_array_equal(src.read(1), ds["data"].values[0])
        np.testing.assert_array_equal(src.dataset_mask() > 0, ds["valid"].values)
    gdalinfo = shutil.which("gdalinfo")
    if gdalinfo:  # Debian's GDAL (3.6 on Debian 12): what QGIS 3.22 reads with
        info = subprocess.run([gdalinfo, str(out)], capture_output=True, text=True,
                              check=True).stdout
        assert "LAYOUT=COG" in info and "Description = VV" in info and "EPSG" in info
    with pytest.raises(StoreError, match="exists; pass --overwrite"):
        export_layer(store, "radar/20m", out)
    with pytest.raises(StoreError, match=r"out.png: geomm export writes a GeoTIFF"):
        export_layer(store, "radar/20m", tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()
    with pytest.raises(StoreError, match="no layer 'radar/10m'; layers are optical/10m"):
        export_layer(store, "radar/10m", tmp_path / "x.tif")
    assert not (tmp_path / "x.tif").exists()


def test_export_command(store, tmp_path):
    res = CliRunner().invoke(main, ["export", str(store), "optical/10m", "-o",
                                    str(tmp_path / "opt.tif")])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "opt.tif") as src:
        assert src.count == 2 and src.descriptions == ("A", "B")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".opt.tif")]


def test_exported_labels_carry_the_class_table(tmp_path):
    from geomm.assess._classmap import open_class_map

    write_scene(tmp_path)
    with rasterio.open(tmp_path / "A.tif") as src:
        profile = {**src.profile, "count": 1, "dtype": "uint8", "nodata": 0}
        shape = src.shape
    with rasterio.open(tmp_path / "L.tif", "w", **profile) as dst:
        dst.write((np.arange(shape[0] * shape[1]).reshape(shape) % 3 + 1).astype(np.uint8), 1)
    recipe = write_recipe(tmp_path)
    recipe.write_text(recipe.read_text()
                      + "labels:\n  raster: L.tif\n  values: {1: crop, 2: forest, 3: water}\n")
    (summary,) = stack(load_recipe(recipe), out=tmp_path / "store")
    store = summary.path
    st = open_store(store)
    out = export_layer(store, "labels", tmp_path / "labels.tif")
    names = tuple(c["name"] for c in st.manifest["classes"]["classes"])
    cmap = open_class_map(out)  # what `geomm evaluate` reads a reference raster with
    assert tuple(cmap.table.names) == names and len(names) >= 2
    with rasterio.open(out) as src:
        assert src.tags(1)["class_0"] == names[0] and src.colormap(1)[0][3] == 255
        np.testing.assert_array_equal(src.read(1), st.labels())
    style = (tmp_path / "labels.qml").read_text()  # QGIS names the classes with it
    assert all(f'label="{n}"' in style for n in names) and 'type="paletted"' in style
    with pytest.raises(StoreError, match="labels.tif exists"):
        export_layer(store, "labels", out)
    (tmp_path / "labels.qml").write_text("mine")
    out.unlink()
    with pytest.raises(StoreError, match="labels.qml exists"):  # nor is a style replaced
        export_layer(store, "labels", out)
    assert (tmp_path / "labels.qml").read_text() == "mine" and not out.exists()
    export_layer(store, "labels", out, overwrite=True)
    assert 'type="paletted"' in (tmp_path / "labels.qml").read_text()


def test_export_overviews_average_values_and_take_the_mode_of_labels(tmp_path):
    """Overview pixels sit where their block is: a mean of it (a class: its most frequent),
    not its top-left pixel, which moves the content (f - 1) / 2 pixels up-left."""
    from tests.synthetic import write_band

    write_scene(tmp_path, 1200, 1200)
    y, x = np.mgrid[0:1200, 0:1200]
    write_band(tmp_path / "L.tif", (1 + ((x // 3 + y // 3) % 3)).astype(np.uint8), 10, nodata=0)
    recipe = write_recipe(tmp_path)
    recipe.write_text(recipe.read_text() + "labels:\n  raster: L.tif\n"
                      "  values: {1: a, 2: b, 3: c}\n")
    (summary,) = stack(load_recipe(recipe), out=tmp_path / "store")
    st = open_store(summary.path)
    opt = export_layer(summary.path, "optical/10m", tmp_path / "opt.tif")
    lab = export_layer(summary.path, "labels", tmp_path / "lab.tif")
    a = st.layer("optical/10m")["data"].values[0].astype(np.float64)
    with rasterio.open(opt) as src:
        assert src.overviews(1)[0] == 2
        half = src.read(1, out_shape=(600, 600))  # the first overview
    mean = a.reshape(600, 2, 600, 2).mean(axis=(1, 3))
    assert np.abs(half - mean).max() <= 1  # uint16 rounding
    assert not np.array_equal(half, a[::2, ::2].astype(half.dtype))
    labels = st.labels()
    with rasterio.open(lab) as src:
        half = src.read(1, out_shape=(600, 600))
    blocks = labels.reshape(600, 2, 600, 2).transpose(0, 2, 1, 3).reshape(600, 600, 4)
    counts = np.stack([(blocks == k).sum(-1) for k in range(3)], -1)
    clear = np.sort(counts, -1)[..., -1] > np.sort(counts, -1)[..., -2]  # one most frequent
    assert (half[clear] == counts.argmax(-1)[clear]).all() and clear.mean() > 0.3


def test_what_a_killed_export_left_is_cleared_by_the_next(store, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    out = tmp_path / "k.tif"
    left = [tmp_path / f".k.tif.{dead}.plain.tif", tmp_path / f".k.tif.{dead}.partial",
            tmp_path / f".k.tif.{dead}.partial.ovr.tmp"]
    for p in left:
        p.write_bytes(b"x" * 100)
    mine = tmp_path / ".k.tif.notes"  # not a pid's: not geomm's to remove
    mine.write_text("mine")
    export_layer(store, "radar/20m", out)
    assert not any(p.exists() for p in left) and mine.exists() and out.is_file()
