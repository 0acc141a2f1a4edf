"""Other tools read the tile store: xarray/rioxarray through CF coordinates, GDAL (Debian's
3.6 too) through `geomm export`'s COGs."""

from __future__ import annotations

import shutil
import subprocess

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
