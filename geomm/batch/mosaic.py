"""Blocks' rasters joined into one COG: a VRT placing each block on the scene grid, then
GDAL's COG driver (which reads the VRT window by window: the mosaic is never in memory)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rasterio.shutil import copy as gdal_copy

from geomm.predict._region import Region
from geomm.predict.cogout import gdal_threads, vrt_bands

__all__ = ["mosaic_cog"]

_SOURCES = ("SimpleSource", "ComplexSource", "Overview")


def mosaic_cog(blocks: Sequence[tuple[Region, Path]], grid: Any, out: Path) -> Path:
    """Write the COG ``out`` covering ``grid`` from block files placed at their regions.

    Band descriptions, metadata, colour table, nodata, mask, scale and compression are taken
    from the first block; pixels no block covers are nodata (masked). Overviews: mode for a
    colour-table (class) raster, average otherwise.
    """
    import rasterio

    first = blocks[0][1]
    vrt = out.with_name(out.name + ".vrt")
    gdal_copy(first, vrt, driver="VRT")
    tree = ET.parse(vrt)
    root = tree.getroot()
    root.set("rasterXSize", str(grid.width))
    root.set("rasterYSize", str(grid.height))
    t = grid.transform
    gt = root.find("GeoTransform")
    assert gt is not None
    gt.text = ", ".join(repr(float(v)) for v in (t.c, t.a, t.b, t.f, t.d, t.e))
    # a per-dataset mask (uint8 probabilities) is mosaicked like a band: no block, no data
    for band, source in vrt_bands(root):
        for child in [c for c in band if c.tag in _SOURCES]:
            band.remove(child)
        for region, path in blocks:
            src = ET.SubElement(band, "SimpleSource")
            ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = str(path.resolve())
            ET.SubElement(src, "SourceBand").text = source
            ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=str(region.width),
                          ySize=str(region.height))
            ET.SubElement(src, "DstRect", xOff=str(region.col), yOff=str(region.row),
                          xSize=str(region.width), ySize=str(region.height))
    tree.write(vrt)
    with rasterio.open(first) as src:
        compress = str(src.profile.get("compress", "deflate")).upper()
        classes = src.count == 1 and src.colorinterp[0].name == "palette"
        floating = src.dtypes[0].startswith("float")
    opts: dict[str, Any] = {"COMPRESS": compress, "BLOCKSIZE": 512, "NUM_THREADS": gdal_threads(),
                            "BIGTIFF": "IF_SAFER",
                            "OVERVIEW_RESAMPLING": "MODE" if classes else "AVERAGE",
                            "PREDICTOR": "FLOATING_POINT" if floating else "YES"}
    if compress == "ZSTD":
        opts["LEVEL"] = 1
    tmp = out.with_name(f".{out.name}.tmp.tif")
    try:
        gdal_copy(vrt, tmp, driver="COG", **opts)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
        vrt.unlink(missing_ok=True)
    return out
