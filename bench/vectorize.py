"""Throughput of ``geomm.vector.vectorize`` against whole-array ``rasterio.features.shapes``.

    .venv/bin/python bench/vectorize.py CLASSES.tif [--window PX] [--repeats N]
    .venv/bin/python bench/vectorize.py /tmp/classes-4096.tif --make 4096

Both write a GeoPackage of every class polygon of the raster:
  geomm      ``vectorize(tif, out.gpkg, window=PX)``: windowed reads, stitched across seams.
  reference  read the whole band, ``rasterio.features.shapes`` (4-connectivity, nodata masked),
             one ``GeoDataFrame``, ``pyogrio.write_dataframe`` to GPKG.
Each case runs in a fresh process (so peak RSS is its own); the best of N repeats (by wall
time) is shown. CPU time is printed too: on a shared machine it is the steadier measure.
``--make N`` first writes a seeded synthetic N x N uint8 class raster (smooth blobs of 6
classes, 1 % speckle, a nodata strip) at PATH if it is not there.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _case(name: str, tif: str, window: int) -> dict:
    import numpy as np
    import rasterio

    from geomm.vector.vectorize import vectorize

    out = Path(tempfile.mkdtemp()) / "out.gpkg"
    with rasterio.open(tif) as src:
        pixels = src.width * src.height
    t0, c0 = time.perf_counter(), time.process_time()
    if name == "geomm":
        n = vectorize(tif, out, window=window).n_polygons
    else:
        import geopandas
        import pyogrio
        from rasterio import features
        from shapely.geometry import shape

        with rasterio.open(tif) as src:
            arr = src.read(1)
            mask = arr != src.nodata if src.nodata is not None else None
            geoms, ids = [], []
            for geom, value in features.shapes(arr, mask=mask, connectivity=4,
                                               transform=src.transform):
                geoms.append(shape(geom))
                ids.append(int(value))
            frame = geopandas.GeoDataFrame({"class_id": np.asarray(ids, np.int32)},
                                           geometry=geoms, crs=src.crs)
        frame["area_m2"] = frame.area
        pyogrio.write_dataframe(frame, out, layer="classes", driver="GPKG")
        n = len(frame)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"case": name, "seconds": seconds, "cpu_seconds": cpu, "polygons": n,
            "pixels": pixels, "peak_rss_mib": peak}


def _make(path: Path, n: int) -> None:
    import numpy as np
    import rasterio
    from affine import Affine
    from scipy import ndimage

    from geomm.classes import ClassTable

    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.standard_normal((n, n)).astype(np.float32), 12)
    edges = np.quantile(field[::8, ::8], [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6])
    classes = np.digitize(field, edges).astype(np.uint8)
    speck = rng.random((n, n)) < 0.01
    classes[speck] = rng.integers(0, 6, int(speck.sum()))
    classes[:, n // 3:n // 3 + 40] = 255
    table = ClassTable.from_names(["water", "forest", "crop", "grass", "urban", "bare"])
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 5800000),
                       nodata=255, tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate") as dst:
        dst.write(classes, 1)
        dst.update_tags(GEOMM_CLASSES=json.dumps(table.to_dict()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tif", type=Path)
    ap.add_argument("--window", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--make", type=int, default=None, metavar="N")
    ap.add_argument("--case", choices=["geomm", "reference"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(_case(args.case, str(args.tif), args.window)))
        return
    if args.make and not args.tif.exists():
        _make(args.tif, args.make)
    best = {}
    for name in ("reference", "geomm"):
        for _ in range(args.repeats):
            proc = subprocess.run([sys.executable, __file__, str(args.tif), "--case", name,
                                   "--window", str(args.window)],
                                  capture_output=True, text=True, check=True)
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            if name not in best or res["seconds"] < best[name]["seconds"]:
                best[name] = res
    for r in best.values():
        print(f"{r['case']:<9} {r['polygons']:>8} polygons  wall {r['seconds']:6.2f} s "
              f"(CPU {r['cpu_seconds']:6.2f} s)  {r['polygons'] / r['seconds']:>7.0f} polygons/s "
              f"{r['pixels'] / r['seconds'] / 1e6:6.2f} Mpx/s  peak RSS "
              f"{r['peak_rss_mib']:5.0f} MiB")
    geomm, ref = best["geomm"], best["reference"]
    print(f"geomm/reference throughput: {ref['seconds'] / geomm['seconds']:.2f}x wall, "
          f"{ref['cpu_seconds'] / geomm['cpu_seconds']:.2f}x CPU (window {args.window})")


if __name__ == "__main__":
    main()
