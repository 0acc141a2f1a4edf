"""The same area loaded from a STAC API: geomm against odc-stac and stackstac, and from files.

    .venv/bin/python bench/stac_load.py [--rounds 5] [--latency-ms 20]

The sample's six 10/20 m bands (visible B02-B04, infrared B08/B11/B12) as COGs (DEFLATE,
512 px blocks; made once by ``bench/remote.py``'s helper), served by Debian's nginx on
127.0.0.1, described by one STAC item (with ``proj:`` metadata, as Earth Search serves them)
in a real STAC API (PostgreSQL + pgstac + stac-fastapi-pgstac, ``tests/stacserver.py``).
Each run is a fresh process (cold GDAL caches, an empty geomm cache), 2 threads, timed from
the search to the arrays in memory or on disk:

- (a) geomm: ``geomm stack`` of a recipe with ``stac: api:`` (search, composite ``first`` per
  band at its native resolution, co-registration, the tile store written);
- (a') geomm load: the same search and composites, then the co-registered layers computed
  into memory (no store): the work odc-stac and stackstac do;
- (a+) the same with the COGs behind a relay that adds ``--latency-ms`` to every request
  (``tc netem`` is not available on this kernel: no ``sch_netem``);
- (b) odc-stac: ``odc.stac.load(items, bands, resolution=10).compute()``;
- (c) stackstac: ``stackstac.stack(items, assets, resolution=10, epsg=32633).compute()``
  (its default float64 output: its integer types refuse a fill value of 0);
- (d) geomm from the local files (``geomm stack`` of the file recipe).

odc-stac and stackstac put every band on one 10 m grid (the 20 m bands resampled) and keep the
arrays in memory; geomm keeps the 20 m bands at 20 m and writes a chunked store. All read the
same source pixels. Rounds alternate the runs after one warm-up each; prints a table of median
seconds and the ratios; writes ``bench/out/stac_load.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # tests.webserver, tests.stacserver: the tests' servers

from remote import BANDS, OUT, RELAY, _cogs, _free_port, _recipe  # noqa: E402

COLLECTION = "bench-s2"

RUN = r"""
import json, os, sys, time
mode, arg, out = sys.argv[1], sys.argv[2], sys.argv[3]
os.environ["GEOMM_CACHE"] = out + "-cache"
t0 = time.perf_counter()
if mode == "geomm":
    from geomm.recipe import load_recipe
    from geomm.stack.build import stack
    stack(load_recipe(arg), out=out, workers=2)
elif mode == "geomm-load":
    import dask
    from geomm.recipe import load_recipe
    from geomm.sources import resolve
    from geomm.stack.coregister import coregister_request
    rec = resolve(load_recipe(arg), workers=2)
    st = coregister_request(rec.scene_inputs()[0].modalities, rec.grid)
    with dask.config.set(scheduler="threads", num_workers=2):
        dask.compute(*[a for lyr in st.layers.values() for a in (lyr.data, lyr.valid)])
else:
    import dask
    from pystac_client import Client
    api, collection, bands = arg.split("|")
    items = list(Client.open(api).search(collections=[collection]).items())
    bands = bands.split(",")
    with dask.config.set(scheduler="threads", num_workers=2):
        if mode == "odc":
            import odc.stac
            ds = odc.stac.load(items, bands=bands, resolution=10, chunks={"x": 1536, "y": 1536})
            ds.compute()
        else:
            import stackstac
            arr = stackstac.stack(items, assets=bands, resolution=10, epsg=32633,
                                  chunksize=1536, rescale=False)  # float64, NaN fill
            arr.compute()
print(json.dumps(time.perf_counter() - t0))
"""


def _item(www: Path, url: str) -> dict[str, Any]:
    import rasterio
    from rasterio.warp import transform_bounds

    assets = {}
    for band in [b for bs in BANDS.values() for b in bs]:
        with rasterio.open(www / f"{band}.tif") as src:
            assets[band] = {"href": f"{url}/{band}.tif", "type": "image/tiff; "
                            "application=geotiff; profile=cloud-optimized",
                            "roles": ["data"], "proj:shape": [src.height, src.width],
                            "proj:transform": list(src.transform)[:6],
                            "raster:bands": [{"nodata": 0, "data_type": "uint16"}]}
            crs, bounds = src.crs, src.bounds
    w, s, e, n = transform_bounds(crs, "EPSG:4326", *bounds)
    return {"type": "Feature", "stac_version": "1.0.0", "id": "T33UUU_20170216",
            "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
            "bbox": [w, s, e, n],
            "geometry": {"type": "Polygon",
                         "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
            "properties": {"datetime": "2017-02-16T10:21:01Z", "proj:epsg": crs.to_epsg()},
            "links": [], "assets": assets}


def _collection(cid: str) -> dict[str, Any]:
    return {"type": "Collection", "stac_version": "1.0.0", "id": cid, "license": "CC-BY-4.0",
            "description": "the s2-t33uuu sample's 10/20 m bands", "links": [],
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]},
                       "temporal": {"interval": [[None, None]]}}}


def _stac_recipe(folder: Path, name: str, api: str, collection: str) -> Path:
    import yaml

    doc = {"name": name, "stac": {"api": api},
           "modalities": {m: {"stac": {"collection": collection, "assets": {b: b for b in bs},
                                       "composite": "first"}, "nodata": 0}
                          for m, bs in BANDS.items()},
           "grid": {"reference": "visible"}, "tiling": {"size": 384, "halo": 48}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _run(mode: str, arg: str, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(f"{out}-cache", ignore_errors=True)
    proc = subprocess.run([sys.executable, "-c", RUN, mode, arg, str(out)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{mode} failed: {proc.stderr.strip().splitlines()[-1]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    from tests.stacserver import missing_stac_tools, start_stac_api
    from tests.webserver import find_nginx, start_nginx

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    args = ap.parse_args(argv)
    nginx, missing = find_nginx(), missing_stac_tools()
    if nginx is None or missing:
        print(missing or "nginx is not installed (apt-get install nginx-light)", file=sys.stderr)
        return 2
    www = OUT / "remote" / "www"
    _cogs(www)
    work = Path(tempfile.mkdtemp(prefix="geomm-stacload-"))
    web = start_nginx(nginx, www, work / "nginx")
    api = start_stac_api(work / "api")
    port = _free_port()
    relay = subprocess.Popen([sys.executable, "-c", RELAY, str(port), web.url.rsplit(":", 1)[1],
                              str(args.latency_ms / 1000)], stdout=subprocess.PIPE, text=True)
    slow = f"geomm+{args.latency_ms:g}ms"
    try:
        assert relay.stdout is not None and relay.stdout.readline().strip() == "ready"
        api.load([_collection(COLLECTION)], [{**_item(www, web.url), "collection": COLLECTION}])
        api.load([_collection(COLLECTION + "-slow")],
                 [{**_item(www, f"http://127.0.0.1:{port}"), "collection": COLLECTION + "-slow"}])
        bands = ",".join(b for bs in BANDS.values() for b in bs)
        stac_recipe = str(_stac_recipe(work, "stac", api.url, COLLECTION))
        runs = {"geomm": ("geomm", stac_recipe), "geomm load": ("geomm-load", stac_recipe),
                slow: ("geomm", str(_stac_recipe(work, "slow", api.url, COLLECTION + "-slow"))),
                "odc-stac": ("odc", f"{api.url}|{COLLECTION}|{bands}"),
                "stackstac": ("stackstac", f"{api.url}|{COLLECTION}|{bands}"),
                "local": ("geomm", str(_recipe(work, "local", str(www))))}
        rows: dict[str, list[float]] = {k: [] for k in runs}
        for name, (mode, arg) in runs.items():  # warm-up: imports, the OS's file cache
            _run(mode, arg, work / f"out-{name}")
        for r in range(args.rounds):
            for name, (mode, arg) in runs.items():
                sec = _run(mode, arg, work / f"out-{name}")
                rows[name].append(sec)
                print(json.dumps({"round": r, "run": name, "seconds": round(sec, 3)}),
                      flush=True)
    finally:
        relay.terminate()
        api.stop()
        web.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print("\n| run | median s | odc-stac / run | local / run |\n|---|---|---|---|")
    for name, m in med.items():
        print(f"| {name} | {m:.2f} | {med['odc-stac'] / m:.2f} | {med['local'] / m:.2f} |")
    (OUT / "stac_load.json").write_text(json.dumps({"median_s": med, "rounds": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
