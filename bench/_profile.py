"""Where does geomm's co-registration time go? ``python bench/_profile.py WHAT [N] [TILE]``.

WHAT: ``loop`` (every chunk of every layer through geomm's reader, one thread, no dask;
per-layer ms/chunk); ``dask`` (the benchmark's ``da.store`` path; extra args THREADS (0: sync)
and PARTS (dv: data and valid, d: data only)); ``cprofile`` (``dask`` on the sync scheduler
under cProfile); ``windows`` (plain rasterio window reads of TILE x TILE, one handle, one
thread: the floor for a chunked reader); ``warp`` (warped chunk reads, one thread, per-chunk
ms); ``dask-warp`` (like ``dask``, case (b)); ``warp-proto`` (a per-chunk ``reproject``
reader instead of WarpedVRT; extra arg THREADS).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _cases  # noqa: E402
import _scene  # noqa: E402
import rasterio  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from geomm.stack.coregister import coregister  # noqa: E402


def loop(n: int, tile: int, crs: str | None = None) -> None:
    kw = {"crs": crs, "resolution": 10.0} if crs else {}
    only = _cases.VISIBLE if crs else None
    stack = coregister(_scene.modality_specs(_scene.scene(n), only), tile_size=tile, **kw)
    total_t = total_px = 0.0
    for key, layer in stack.layers.items():
        arr = layer.data.data
        ys, xs = arr.chunks[1], arr.chunks[2]
        t0 = time.perf_counter()
        nchunks, r0 = 0, 0
        for h in ys:
            c0 = 0
            for w in xs:
                layer.reader.read(r0, r0 + h, c0, c0 + w)
                c0 += w
                nchunks += 1
            r0 += h
        dt = time.perf_counter() - t0
        total_t += dt
        total_px += layer.data.size
        print(f"  {key:<20} {nchunks:4d} chunks {ys[0]}x{xs[0]}: {dt:6.2f} s, "
              f"{1e3 * dt / nchunks:6.2f} ms/chunk, {layer.data.size / dt / 1e6:6.1f} Mpx/s")
    print(f"  total {total_t:.2f} s, {total_px / total_t / 1e6:.1f} Mpx/s (1 thread, no dask)")


def windows(n: int, tile: int) -> None:
    doc, total_t, total_px = _scene.scene(n), 0.0, 0
    for path in _scene.band_paths(doc):
        with rasterio.open(path) as src:
            t = tile * 10 // int(src.res[0])
            t0 = time.perf_counter()
            for r in range(0, src.height, t):
                for c in range(0, src.width, t):
                    src.read(1, window=Window(c, r, min(t, src.width - c),
                                              min(t, src.height - r)))
            total_t += time.perf_counter() - t0
            total_px += src.width * src.height
    print(f"  window reads ({tile} base px): {total_t:.2f} s, "
          f"{total_px / total_t / 1e6:.1f} Mpx/s")


def dask_store(n: int, tile: int, threads: int = 2, parts: str = "dv",
               crs: str | None = None) -> None:
    """The benchmark's path; ``parts``: ``dv`` data and valid, ``d`` data only."""
    import dask
    import dask.array as da

    kw = {"crs": crs, "resolution": 10.0} if crs else {}
    only = _cases.VISIBLE if crs else None
    t0 = time.perf_counter()
    stack = coregister(_scene.modality_specs(_scene.scene(n), only), tile_size=tile, **kw)
    srcs = [a for lyr in stack.layers.values()
            for a in ((lyr.data.data, lyr.valid.data) if parts == "dv" else (lyr.data.data,))]
    sched = {"scheduler": "threads", "num_workers": threads} if threads else {"scheduler": "sync"}
    with dask.config.set(**sched):
        da.store(srcs, [_cases.NullSink() for _ in srcs], lock=False)
    dt = time.perf_counter() - t0
    px = sum(lyr.data.size for lyr in stack.layers.values())
    print(f"  dask store {crs or ''} tile {tile} threads {threads} {parts}: {dt:.2f} s, "
          f"{px / dt / 1e6:.1f} Mpx/s")


def warp_proto(n: int, tile: int, threads: int = 2) -> None:
    """Alternative warp reader: per chunk, ``rasterio.warp.reproject`` of each band straight
    into the chunk buffer (alpha as the valid mask), on per-thread handles; no WarpedVRT."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from affine import Affine
    from rasterio.warp import Resampling, reproject

    doc = _scene.scene(n)
    t0 = time.perf_counter()
    grid = coregister(_scene.modality_specs(doc, _cases.VISIBLE), crs=_cases.WARP_CRS,
                      resolution=10.0, tile_size=tile).grid
    (height, width), paths, local = grid.shape, _scene.band_paths(doc, _cases.VISIBLE), \
        threading.local()

    def chunk(r0: int, c0: int) -> None:
        handles = local.__dict__.setdefault("h", {})
        h, w = min(tile, height - r0), min(tile, width - c0)
        t = grid.transform @ Affine.translation(c0, r0)
        out = np.zeros((len(paths) + 1, h, w), np.uint16)
        for i, path in enumerate(paths):
            src = handles.get(path) or handles.setdefault(path, rasterio.open(path))
            dst = np.zeros((2, h, w), np.uint16)
            reproject(rasterio.band(src, 1), dst, dst_transform=t, dst_crs=grid.crs,
                      resampling=Resampling.bilinear, dst_alpha=2, num_threads=1)
            out[i] = dst[0]
            out[-1] = dst[1] > 0 if i == 0 else out[-1] & (dst[1] > 0)

    jobs = [(r, c) for r in range(0, height, tile) for c in range(0, width, tile)]
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(lambda rc: chunk(*rc), jobs))
    dt = time.perf_counter() - t0
    px = height * width * len(paths)
    print(f"  reproject-per-chunk tile {tile} threads {threads}: {dt:.2f} s, "
          f"{px / dt / 1e6:.1f} Mpx/s")


if __name__ == "__main__":
    what = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    tile = int(sys.argv[3]) if len(sys.argv) > 3 else 384
    if what == "loop":
        loop(n, tile)
    elif what == "warp":
        loop(n, tile, crs=_cases.WARP_CRS)
    elif what == "windows":
        windows(n, tile)
    elif what == "dask":
        dask_store(n, tile, *(int(a) if a.isdigit() else a for a in sys.argv[4:]))
    elif what == "dask-warp":
        dask_store(n, tile, *(int(a) if a.isdigit() else a for a in sys.argv[4:6]),
                   crs=_cases.WARP_CRS)
    elif what == "warp-proto":
        warp_proto(n, tile, *(int(a) for a in sys.argv[4:5]))
    elif what == "cprofile":
        cProfile.run("dask_store(n, tile, 0)", "/tmp/geomm-bench.prof")  # sync scheduler
        pstats.Stats("/tmp/geomm-bench.prof").sort_stats("tottime").print_stats(15)
        pstats.Stats("/tmp/geomm-bench.prof").sort_stats("cumtime").print_stats(30)
