"""Co-registration: native resolution kept bit-identical, warps equal GDAL's, bad input named."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import reproject, transform, transform_bounds

from geomm.errors import CRSMissingError, GridError, RasterReadError, RecipeError
from geomm.modality import BandSpec, ModalitySpec
from geomm.stack.coregister import coregister

X0, Y0 = 500000.0, 5800000.0


def mod(name, *paths_names, **kw):
    return ModalitySpec(name, tuple(BandSpec(p, n) for p, n in paths_names), **kw)


@pytest.fixture
def s2like(make_raster, rng):
    """A 10 m, a 20 m and a 60 m band over the same 1.2 km square, same origin."""
    a10 = rng.integers(1, 10000, (120, 120), dtype=np.uint16)
    a20 = rng.integers(1, 10000, (60, 60), dtype=np.uint16)
    a60 = rng.integers(1, 10000, (20, 20), dtype=np.uint16)
    return {
        "b10": (make_raster("b10.tif", a10, transform=Affine(10, 0, X0, 0, -10, Y0)), a10),
        "b20": (make_raster("b20.tif", a20, transform=Affine(20, 0, X0, 0, -20, Y0)), a20),
        "b60": (make_raster("b60.tif", a60, transform=Affine(60, 0, X0, 0, -60, Y0)), a60),
    }


def test_native_resolutions_are_read_bit_identical(s2like):
    mods = [mod("visible", (s2like["b10"][0], "B02")),
            mod("infrared", (s2like["b20"][0], "B11"), (s2like["b60"][0], "B09"))]
    st = coregister(mods, tile_size=60, chunk_size=60)
    assert st.grid.resolution == 10 and st.grid.shape == (120, 120)
    assert set(st.layers) == {"visible/10m", "infrared/20m", "infrared/60m"}
    for key, name, factor, chunk in [("visible/10m", "b10", 1, 60), ("infrared/20m", "b20", 2, 30),
                                     ("infrared/60m", "b60", 6, 10)]:
        layer = st.layers[key]
        assert layer.factor == factor and layer.warped == {}
        assert layer.data.chunks[1:] == ((chunk, chunk), (chunk, chunk))
        data = layer.data.values[0]
        assert data.dtype == np.uint16
        np.testing.assert_array_equal(data, s2like[name][1])  # bit-identical, not resampled
        assert layer.valid.values.all()
        assert layer.data.rio.transform() == Affine(10 * factor, 0, X0, 0, -10 * factor, Y0)
    ir_valid = st.modality_valid("infrared")  # 20 m and 60 m layers: mask at 20 m
    assert ir_valid.shape == (60, 60) and bool(ir_valid.all())


def test_band_paths_may_be_strings(s2like):
    st = coregister([ModalitySpec("v", (BandSpec(str(s2like["b10"][0]), "B02"),))], tile_size=60)
    np.testing.assert_array_equal(st.layers["v/10m"].data.values[0], s2like["b10"][1])


def test_nothing_is_read_until_computed(s2like, monkeypatch):
    from geomm.stack._blocks import LayerReader

    calls = []
    real = LayerReader.read
    monkeypatch.setattr(LayerReader, "read", lambda self, *a: calls.append(a) or real(self, *a))
    st = coregister([mod("v", (s2like["b10"][0], "B02"))], tile_size=60, chunk_size=60)
    assert calls == []
    data = st.layers["v/10m"].data.values
    assert data.shape == (1, 120, 120)
    assert len(calls) == 4  # one read per 60 px chunk


def test_nodata_hole_and_combined_mask(make_raster, rng):
    a = rng.integers(1, 100, (60, 60), dtype=np.int16)
    a[10:20, 30:40] = -9999
    b = rng.integers(1, 100, (30, 30), dtype=np.int16)
    b[0:2, 0:2] = -1
    pa = make_raster("a.tif", a, nodata=-9999)
    pb = make_raster("b.tif", b, transform=Affine(20, 0, X0, 0, -20, Y0))
    st = coregister([mod("a", (pa, "A")), mod("b", (pb, "B"), nodata=-1)], tile_size=30)
    va = st.layers["a/10m"].valid.values
    assert not va[10:20, 30:40].any() and va.sum() == 3600 - 100
    combined = st.combined_valid().values
    assert combined.shape == (60, 60)
    assert not combined[0:4, 0:4].any()  # the 20 m hole covers 4 x 4 base pixels
    assert combined.sum() == 3600 - 100 - 16
    b_valid = st.modality_valid("b").values
    assert b_valid.shape == (30, 30) and not b_valid[0:2, 0:2].any() and b_valid.sum() == 896


def _strip_authority(wkt: str) -> str:
    import re

    return re.sub(r",\s*(AUTHORITY|ID)\[[^\[\]]*\]", "", wkt)


def test_same_crs_written_differently_is_not_warped(make_raster, rng):
    from geomm.stack.coregister import plan_grid
    from geomm.stack.grid import same_crs
    from geomm.stack.sources import BandSource

    bare_wkt = _strip_authority(CRS.from_epsg(32119).to_wkt())
    assert "AUTHORITY" not in bare_wkt and "32119" not in bare_wkt
    assert same_crs("EPSG:32119", bare_wkt)
    assert not same_crs("EPSG:32119", "EPSG:32118")
    # GeoTIFF readers re-identify EPSG codes, so build the band descriptions directly
    t10, t20 = Affine(10, 0, 600000, 0, -10, 200000), Affine(20, 0, 600000, 0, -20, 200000)
    a = BandSource(BandSpec("a.tif", "A"), 1, CRS.from_epsg(32119), t10, 40, 40, "uint8", None)
    b = BandSource(BandSpec("b.tif", "B"), 1, CRS.from_wkt(bare_wkt), t20, 20, 20, "uint8", None)
    grid, plans = plan_grid({"a": (a,), "b": (b,)})
    assert plans["b"][0].warp_reason is None and plans["b"][0].factor == 2
    assert grid.shape == (40, 40)
    # and end to end from files: the 20 m band is read, not resampled
    arr = rng.integers(0, 255, (40, 40), dtype=np.uint8)
    pa = make_raster("epsg.tif", arr, crs="EPSG:32119", transform=t10)
    pb = make_raster("wkt.tif", arr[::2, ::2].copy(), crs=bare_wkt, transform=t20)
    st = coregister([mod("a", (pa, "A")), mod("b", (pb, "B"))], tile_size=20)
    assert st.layers["b/20m"].warped == {}
    np.testing.assert_array_equal(st.layers["b/20m"].data.values[0], arr[::2, ::2])


def test_wkt_only_crs_without_epsg_matches_itself(make_raster, rng):
    proj = "+proj=tmerc +lat_0=0 +lon_0=15 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80 +units=m"
    a = rng.integers(0, 255, (40, 40), dtype=np.uint8)
    pa = make_raster("p1.tif", a, crs=CRS.from_proj4(proj))
    pb = make_raster("p2.tif", a, crs=CRS.from_wkt(CRS.from_proj4(proj).to_wkt()))
    st = coregister([mod("a", (pa, "A")), mod("b", (pb, "B"))], tile_size=20)
    assert all(not lyr.warped for lyr in st.layers.values())


@pytest.fixture
def geographic_band(make_raster):
    """A smooth uint16 field in EPSG:4326 over the UTM test area, with one bright 5x5 block."""
    left, bottom, right, top = transform_bounds("EPSG:32633", "EPSG:4326",
                                                X0 - 200, Y0 - 1400, X0 + 1400, Y0 + 200)
    w, h = 160, 120
    t = Affine((right - left) / w, 0, left, 0, -(top - bottom) / h, top)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = (1000 + 5 * xx + 4 * yy).astype(np.uint16)
    arr[58:63, 78:83] = 9000
    lon, lat = t @ (80.5, 60.5)  # centre of the bright block
    return make_raster("geo.tif", arr, crs="EPSG:4326", transform=t), (lon, lat)


def test_warp_equals_gdal_reproject_and_feature_lands_in_place(make_raster, geographic_band,
                                                               rng):
    geo, (lon, lat) = geographic_band
    ref = make_raster("ref.tif", rng.integers(0, 255, (120, 120), dtype=np.uint8),
                      transform=Affine(10, 0, X0, 0, -10, Y0))
    st = coregister([mod("ref", (ref, "R")), mod("geo", (geo, "G"))], tile_size=30)
    layer = next(lyr for lyr in st.layers.values() if lyr.modality == "geo")
    assert "CRS" in layer.warped["G"]
    ours = layer.data.values[0]
    h, w = ours.shape
    expected = np.zeros((h, w), dtype=np.uint16)
    with rasterio.open(geo) as src:
        reproject(rasterio.band(src, 1), expected, dst_transform=layer.data.rio.transform(),
                  dst_crs=st.grid.crs, resampling=Resampling.bilinear)
    valid = layer.valid.values
    assert valid.mean() > 0.99
    close = np.abs(ours.astype(int) - expected.astype(int)) <= 1
    assert close[valid].mean() >= 0.999
    # the bright block's intensity centroid lands where its lon/lat projects, within 0.5 px
    xs, ys = transform("EPSG:4326", "EPSG:32633", [lon], [lat])
    col, row = ~layer.data.rio.transform() @ (xs[0], ys[0])
    bright = np.where(ours > 3000, ours.astype(float) - 2000, 0)
    rr, cc = np.indices(ours.shape)
    assert abs((bright * (cc + 0.5)).sum() / bright.sum() - col) < 0.5
    assert abs((bright * (rr + 0.5)).sum() / bright.sum() - row) < 0.5


def test_warped_band_keeps_its_native_resolution(make_raster, rng):
    ref = make_raster("r.tif", rng.integers(0, 9, (120, 120), dtype=np.uint8))
    coarse = make_raster("c.tif", rng.integers(0, 9, (40, 40), dtype=np.uint8), crs="EPSG:3857",
                         transform=Affine(30, 0, 1.67e6, 0, -30, 6.99e6))
    with pytest.raises(GridError, match="do not overlap"):
        coregister([mod("r", (ref, "R")), mod("c", (coarse, "C"))], tile_size=60)
    lon_lat = transform_bounds("EPSG:32633", "EPSG:3857", X0, Y0 - 1200, X0 + 1200, Y0)
    coarse = make_raster("c2.tif", rng.integers(0, 9, (80, 80), dtype=np.uint8), crs="EPSG:3857",
                         transform=Affine(30, 0, lon_lat[0] - 300, 0, -30, lon_lat[3] + 300))
    st = coregister([mod("r", (ref, "R")), mod("c", (coarse, "C"))], tile_size=60)
    (key,) = [k for k in st.layers if k.startswith("c/")]
    # 30 m web-mercator pixels are ~20 m on the ground at 52 N: kept near native, not 10 m
    assert st.layers[key].factor == 2 and key == "c/20m"


def test_misaligned_origin_is_warped_not_silently_shifted(make_raster, rng):
    ref = make_raster("r.tif", rng.integers(0, 9, (60, 60), dtype=np.uint16))
    shifted = make_raster("s.tif", rng.integers(0, 9, (30, 30), dtype=np.uint16),
                          transform=Affine(20, 0, X0 + 5, 0, -20, Y0))
    st = coregister([mod("r", (ref, "R")), mod("s", (shifted, "S"))], tile_size=30)
    assert "off the grid" in st.layers["s/20m"].warped["S"]


def test_union_extent_pads_with_invalid(make_raster, rng):
    a = make_raster("a.tif", rng.integers(1, 9, (60, 60), dtype=np.uint16))
    b = make_raster("b.tif", rng.integers(1, 9, (60, 60), dtype=np.uint16),
                    transform=Affine(10, 0, X0 + 300, 0, -10, Y0))
    inter = coregister([mod("a", (a, "A")), mod("b", (b, "B"))], tile_size=30)
    union = coregister([mod("a", (a, "A")), mod("b", (b, "B"))], tile_size=30, extent="union")
    assert inter.grid.shape == (60, 30) and union.grid.shape == (60, 90)
    assert union.combined_valid().values.sum() == 60 * 30
    assert union.layers["a/10m"].valid.values[:, :60].all()
    assert not union.layers["a/10m"].valid.values[:, 60:].any()
    # chunks of 30 px cut across both files' edges: values must still land in place
    small = coregister([mod("a", (a, "A")), mod("b", (b, "B"))], tile_size=30, chunk_size=30,
                       extent="union")
    with rasterio.open(b) as src:
        np.testing.assert_array_equal(small.layers["b/10m"].data.values[0][:, 30:], src.read(1))


def test_a_rotated_band_covering_the_scene_does_not_shrink_it(make_raster, rng):
    """A 1.8 km square turned 30 degrees about the 1.2 km scene's centre covers all of it:
    its footprint is the box around its four corners, not around two of them; what the
    smaller band loses of it is measured on its turned outline (1.44 of 3.24 km²), not on
    the box around that (6.05 km²: 76 %)."""
    from geomm.errors import ExtentWarning

    ref = make_raster("r.tif", rng.integers(1, 9, (120, 120), dtype=np.uint16))
    turn = (Affine.translation(X0 + 600, Y0 - 600) * Affine.rotation(30)
            * Affine.translation(-900, 900) * Affine.scale(30, -30))
    rot = make_raster("rot.tif", rng.integers(1, 9, (60, 60), dtype=np.uint16), transform=turn)
    with pytest.warns(ExtentWarning) as seen:
        st = coregister([mod("r", (ref, "R")), mod("t", (rot, "T"))], tile_size=60)
    (msg,) = [str(w.message) for w in seen if issubclass(w.category, ExtentWarning)]
    assert msg.startswith("r.tif covers less") and "loses 56 %" in msg and "~1.8 km²" in msg
    assert st.grid.shape == (120, 120) and st.grid.bounds == (X0, Y0 - 1200, X0 + 1200, Y0)
    assert "rotated" in st.layers["t/30m"].warped["T"]  # its own 30 m pixels, not 41 m
    assert st.layers["t/30m"].valid.values.all()


@pytest.mark.parametrize("fmt", ["tif", "vrt"])
def test_a_raster_georeferenced_by_control_points_only_is_refused(fmt, tmp_path, make_raster,
                                                                   rng):
    """GCPs and an identity geotransform: refused, not stacked upside down at the origin."""
    from rasterio.control import GroundControlPoint

    ref = make_raster("r.tif", rng.integers(1, 9, (60, 60), dtype=np.uint16))
    gcps = [GroundControlPoint(row=r, col=c, x=X0 + 10 * c, y=Y0 - 10 * r)
            for r, c in [(0, 0), (0, 60), (60, 0), (60, 60)]]
    path = tmp_path / "gcp.tif"
    with rasterio.open(path, "w", driver="GTiff", width=60, height=60, count=1,
                       dtype="uint16", gcps=gcps, crs="EPSG:32633") as dst:
        dst.write(rng.integers(1, 9, (1, 60, 60), dtype=np.uint16))
    if fmt == "vrt":  # an SRS and a GCP list, no GeoTransform (GDAL gives an identity)
        listed = "".join(f'<GCP Id="{i}" Pixel="{g.col}" Line="{g.row}" X="{g.x}" Y="{g.y}"/>'
                         for i, g in enumerate(gcps))
        path = tmp_path / "gcp.vrt"
        path.write_text(
            f'<VRTDataset rasterXSize="60" rasterYSize="60"><SRS>EPSG:32633</SRS>'
            f'<GCPList Projection="EPSG:32633">{listed}</GCPList>'
            '<VRTRasterBand dataType="UInt16" band="1"><SimpleSource><SourceFilename '
            'relativeToVRT="1">r.tif</SourceFilename><SourceBand>1</SourceBand></SimpleSource>'
            '</VRTRasterBand></VRTDataset>')
    with pytest.raises(CRSMissingError, match="4 ground control points only") as info:
        coregister([mod("r", (ref, "R")), mod("g", (path, "G"))], tile_size=30)
    assert "gdalwarp -t_srs EPSG:32633" in str(info.value)


@pytest.mark.parametrize("dtype, nodata", [(np.uint16, -9999), (np.uint8, 300),
                                           (np.int16, 0.5)])
def test_a_recipe_nodata_the_band_cannot_hold_is_refused(dtype, nodata, make_raster, rng):
    path = make_raster("b.tif", rng.integers(1, 9, (30, 30)).astype(dtype))
    with pytest.raises(RecipeError, match=rf"modalities\.m\.nodata: {nodata:g} cannot occur "
                                          rf"in .*b\.tif \({np.dtype(dtype).name}"):
        coregister([mod("m", (path, "B"), nodata=nodata)], tile_size=30)
    st = coregister([mod("m", (path, "B"), nodata=1.0)], tile_size=30)  # one that it can
    assert not st.layers["m/10m"].valid.values.all()


def test_bands_of_a_multi_band_file_must_be_named_by_index_or_description(make_raster, rng):
    arr = rng.integers(1, 9, (3, 30, 30), dtype=np.uint16)
    path = make_raster("vis.tif", arr, descriptions=("blue", "green", "red"))
    with pytest.raises(RecipeError, match=r"vis\.tif has 3 bands: say which one is m/1 with "
                                          r"`index:` \(1 to 3\)"):
        coregister([mod("m", (path, "1"), (path, "2"), (path, "3"))], tile_size=30)
    st = coregister([mod("m", (path, "red"), (path, "blue"))], tile_size=30)  # descriptions
    np.testing.assert_array_equal(st.layers["m/10m"].data.values, arr[[2, 0]])


def test_explicit_grid_in_another_crs(make_raster, rng):
    a = make_raster("a.tif", rng.integers(1, 9, (60, 60), dtype=np.uint16))
    st = coregister([mod("a", (a, "A"))], crs="EPSG:3035", resolution=10.0, tile_size=30)
    assert st.grid.crs.to_epsg() == 3035
    assert st.grid.bounds[0] % 10 == 0 and st.grid.bounds[3] % 10 == 0  # target-aligned pixels
    assert st.layers["a/10m"].warped


@pytest.mark.parametrize("case", ["no_overlap", "no_crs", "no_transform", "bad_index",
                                  "bad_description", "tile_size", "halo", "missing_file"])
def test_bad_input_is_one_clear_error(case, make_raster, rng):
    arr = rng.integers(0, 9, (60, 60), dtype=np.uint16)
    a = make_raster("a.tif", arr)
    b60 = make_raster("b60.tif", arr[:10, :10].copy(), transform=Affine(60, 0, X0, 0, -60, Y0))
    kwargs: dict = {"tile_size": 60}
    if case == "no_overlap":
        far = make_raster("far.tif", arr, transform=Affine(10, 0, X0 + 5000, 0, -10, Y0))
        mods, err, words = [mod("a", (a, "A")), mod("f", (far, "F"))], GridError, \
            ["a.tif", "far.tif", "500000", "505000"]
    elif case == "no_crs":
        nocrs = make_raster("nocrs.tif", arr, crs=None)
        mods, err, words = [mod("n", (nocrs, "N"))], CRSMissingError, ["nocrs.tif", "no CRS"]
    elif case == "no_transform":
        with warnings.catch_warnings():  # rasterio: "the given matrix is ... identity"
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            bare = make_raster("bare.tif", arr, transform=Affine.identity())
        mods, err, words = [mod("n", (bare, "N"))], CRSMissingError, ["bare.tif",
                                                                     "no geotransform"]
    elif case == "bad_index":
        mods = [ModalitySpec("a", (BandSpec(a, "A", index=3),))]
        err, words = RecipeError, ["a.tif", "index 3", "1 band"]
    elif case == "bad_description":
        d = make_raster("d.tif", arr, descriptions=("red",))
        mods = [ModalitySpec("a", (BandSpec(d, "A", description="nir"),))]
        err, words = RecipeError, ["d.tif", "'nir'", "'red'"]
    elif case == "tile_size":
        mods, err, words = [mod("a", (a, "A")), mod("c", (b60, "C"))], GridError, \
            ["tiling.size", "64", "factor 6", "multiple of 6"]
        kwargs["tile_size"] = 64
    elif case == "halo":
        mods, err, words = [mod("a", (a, "A")), mod("c", (b60, "C"))], GridError, \
            ["tiling.halo", "factor 6"]
        kwargs["halo"] = 8
    else:
        mods, err, words = [mod("a", (a.with_name("gone.tif"), "A"))], RasterReadError, \
            ["gone.tif", "no such file"]
    with pytest.raises(err) as info:
        coregister(mods, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg, (word, msg)


def test_default_chunks_are_whole_tiles_in_every_layer(s2like):
    mods = [mod("v", (s2like["b10"][0], "B02")), mod("c", (s2like["b60"][0], "B09"))]
    st = coregister(mods, tile_size=12)
    assert st.chunk_size % 12 == 0 and st.chunk_size >= 12
    for layer in st.layers.values():
        for sizes in layer.data.chunks[1:]:
            assert all(c * layer.factor % 12 == 0 for c in sizes[:-1])
    with pytest.raises(RecipeError, match="multiple of the tile size"):
        coregister(mods, tile_size=12, chunk_size=18)


def test_parallel_compute_matches_serial(s2like):
    mods = [mod("v", (s2like["b10"][0], "B02"), (s2like["b20"][0], "B11"))]
    st = coregister(mods, tile_size=30)
    with dask.config.set(scheduler="threads", num_workers=2):
        par = st.layers["v/20m"].data.values
    with dask.config.set(scheduler="synchronous"):
        ser = st.layers["v/20m"].data.values
    np.testing.assert_array_equal(par, ser)
