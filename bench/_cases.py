"""One benchmark case, run in a fresh process: ``python bench/_cases.py CASE N``.

Prints one JSON line: seconds (wall), pixels (output pixels of all bands), peak RSS of this
process (or, for the gdalwarp case, of its largest child) and RSS right after the imports.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _scene  # noqa: E402
import dask  # noqa: E402
import dask.array as da  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rasterio.warp import Resampling, aligned_target, calculate_default_transform  # noqa: E402
from rasterio.warp import reproject as rio_reproject  # noqa: E402

from geomm.stack.coregister import coregister  # noqa: E402

WARP_CRS, WARP_RES, TILE = "EPSG:3035", 10.0, 384
VISIBLE = ("visible",)


class NullSink:
    """A ``da.store`` target that discards what it is given (constant memory)."""

    def __setitem__(self, key: object, value: np.ndarray) -> None:
        pass


def _stream(stack) -> int:
    """Compute every chunk of every layer's data and valid mask; return band pixels."""
    sources, pixels = [], 0
    for layer in stack.layers.values():
        sources += [layer.data.data, layer.valid.data]
        pixels += layer.data.size
    with dask.config.set(scheduler="threads", num_workers=2):
        da.store(sources, [NullSink() for _ in sources], lock=False)
    return pixels


def geomm_aligned(doc: dict) -> int:
    return _stream(coregister(_scene.modality_specs(doc), tile_size=TILE))


def plain_read(doc: dict) -> int:
    pixels = 0
    for path in _scene.band_paths(doc):
        with rasterio.open(path) as src:
            pixels += src.read(1).size
    return pixels


def geomm_warp(doc: dict) -> int:
    return _stream(coregister(_scene.modality_specs(doc, VISIBLE), crs=WARP_CRS,
                              resolution=WARP_RES, tile_size=TILE))


def gdalwarp(doc: dict) -> int:
    """One gdalwarp call per band file; peak RSS is that of the largest gdalwarp process."""
    outs = []
    timer = shutil.which("time", path="/usr/bin:/bin")  # GNU time: the child's own max RSS
    with tempfile.TemporaryDirectory(prefix="geomm-bench-") as tmp:
        for i, path in enumerate(_scene.band_paths(doc, VISIBLE)):
            out, rss = Path(tmp) / f"b{i}.tif", Path(tmp) / f"rss{i}"
            cmd = ["gdalwarp", "-q", "-t_srs", WARP_CRS, "-tr", "10", "10", "-tap", "-r",
                   "bilinear", "-wo", "NUM_THREADS=1", "-co", "TILED=YES", "-of", "GTiff",
                   path, str(out)]
            subprocess.run(([timer, "-f", "%M", "-o", str(rss)] if timer else []) + cmd,
                           check=True)
            outs.append(out)
        _Timer.stop()  # counting the output pixels below is not part of the time
        if timer:
            _Timer.child_rss_mb = max(int(p.read_text().split()[-1]) / 1024
                                      for p in Path(tmp).glob("rss*"))
        pixels = 0
        for out in outs:
            with rasterio.open(out) as ds:
                pixels += ds.width * ds.height * ds.count
    return pixels


def reproject(doc: dict) -> int:
    pixels = 0
    for path in _scene.band_paths(doc, VISIBLE):
        with rasterio.open(path) as src:
            arr = src.read(1)
            t, w, h = calculate_default_transform(src.crs, WARP_CRS, src.width, src.height,
                                                  *src.bounds, resolution=WARP_RES)
            t, w, h = aligned_target(t, w, h, WARP_RES)
            dst = np.zeros((h, w), dtype=arr.dtype)
            rio_reproject(arr, dst, src_transform=src.transform, src_crs=src.crs,
                          dst_transform=t, dst_crs=WARP_CRS, resampling=Resampling.bilinear,
                          num_threads=2)
            pixels += dst.size
    return pixels


CASES = {f.__name__: f for f in (geomm_aligned, plain_read, geomm_warp, gdalwarp, reproject)}


class _Timer:
    start = end = child_rss_mb = None

    @classmethod
    def stop(cls) -> None:
        cls.end = cls.end or time.perf_counter()


def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def main(case: str, n: int) -> dict:
    doc = _scene.scene(n)
    rss_import = _rss_mb(resource.RUSAGE_SELF)
    _Timer.start = time.perf_counter()
    pixels = CASES[case](doc)
    _Timer.stop()
    if case == "gdalwarp":  # without GNU time: an upper bound (children inherit our RSS)
        rss = _Timer.child_rss_mb or _rss_mb(resource.RUSAGE_CHILDREN)
    else:
        rss = _rss_mb(resource.RUSAGE_SELF)
    return {"case": case, "n": n, "seconds": _Timer.end - _Timer.start, "pixels": pixels,
            "maxrss_mb": rss, "rss_import_mb": rss_import, "gdal": rasterio.__gdal_version__,
            "rasterio": rasterio.__version__, "dask": dask.__version__}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
