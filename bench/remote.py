"""Remote reads against local ones: the same scene stacked from COGs over HTTP and from files.

    .venv/bin/python bench/remote.py [--rounds 5] [--latency-ms 20]

The sample's six 10/20 m bands (visible B02-B04, infrared B08/B11/B12) are converted once to
COGs (DEFLATE, 512 px blocks) under ``bench/out/remote/www``, served by Debian's nginx on
127.0.0.1, and stacked (2 workers, a fresh store, each run in a fresh process so that GDAL's
caches are cold; the time of the ``stack`` call alone):

- (d) local: ``data_root`` the folder;
- (a) remote: ``data_root`` the nginx URL (loopback);
- (a+) remote behind added latency: through a relay that holds every client-to-server chunk
  for ``--latency-ms`` before passing it on (each HTTP request then waits that much longer).
  ``tc netem`` in a network namespace would be the better tool; this machine's kernel has no
  ``sch_netem`` ("Specified qdisc kind is unknown"), so the delay is added in user space.

After one warm-up run of each, rounds alternate the three (shared, noisy machines: compare
within a run). Prints one JSON
line per run and a table of the median seconds, megapixel-bands per second and the ratios to
local; writes ``bench/out/remote.json``. odc-stac and stackstac are not compared yet: they load
STAC items, and geomm's STAC source is still to come (issue 15).
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

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
sys.path.insert(0, str(HERE.parent))  # tests.webserver: the nginx the tests use

BANDS = {"visible": ["B02", "B03", "B04"], "infrared": ["B08", "B11", "B12"]}

RELAY = r"""
import asyncio, sys
listen, upstream, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
async def pipe(reader, writer, wait):
    try:
        while data := await reader.read(65536):
            if wait:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()
async def serve(cr, cw):
    ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
    await asyncio.gather(pipe(cr, uw, delay), pipe(ur, cw, 0.0))
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


def _cogs(www: Path) -> None:
    import rasterio.shutil

    from geomm.sampledata import fetch

    root = fetch("s2-t33uuu").root / "IMG_DATA"
    www.mkdir(parents=True, exist_ok=True)
    for band in [b for bs in BANDS.values() for b in bs]:
        dst = www / f"{band}.tif"
        if not dst.exists():
            tmp = dst.with_suffix(".part.tif")
            rasterio.shutil.copy(root / f"T33UUU_20170216T102101_{band}.jp2", tmp, driver="COG",
                                 BLOCKSIZE=512, COMPRESS="DEFLATE", OVERVIEWS="NONE")
            tmp.rename(dst)


def _recipe(folder: Path, name: str, data_root: str) -> Path:
    import yaml

    doc = {"name": name, "data_root": data_root,
           "modalities": {m: {"file": "{band}.tif", "bands": bs, "nodata": 0}
                          for m, bs in BANDS.items()},
           "grid": {"reference": "visible"}, "tiling": {"size": 384, "halo": 48}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


STACK = r"""
import json, shutil, sys, time
from geomm.recipe import load_recipe
from geomm.stack.build import stack
shutil.rmtree(sys.argv[2], ignore_errors=True)
recipe = load_recipe(sys.argv[1])
t0 = time.perf_counter()
(summary,) = stack(recipe, out=sys.argv[2], workers=2)
seconds = time.perf_counter() - t0
px = sum(int(l["shape"][0]) * int(l["shape"][1]) * len(l["bands"])
         for l in summary.manifest["layers"])
print(json.dumps([seconds, px]))
"""


def _stack(recipe: Path, out: Path) -> tuple[float, int]:
    """One ``stack`` in a fresh process (GDAL's caches cold, as a batch worker's would be);
    the time of the ``stack`` call alone."""
    proc = subprocess.run([sys.executable, "-c", STACK, str(recipe), str(out)],
                          capture_output=True, text=True, check=True)
    seconds, px = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(seconds), int(px)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    from tests.webserver import find_nginx, start_nginx

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    args = ap.parse_args(argv)
    nginx = find_nginx()
    if nginx is None:
        print("nginx is not installed (apt-get install nginx-light)", file=sys.stderr)
        return 2
    www = OUT / "remote" / "www"
    _cogs(www)
    work = Path(tempfile.mkdtemp(prefix="geomm-remote-"))
    web = start_nginx(nginx, www, work / "nginx")
    port = _free_port()
    relay = subprocess.Popen([sys.executable, "-c", RELAY, str(port), web.url.rsplit(":", 1)[1],
                              str(args.latency_ms / 1000)], stdout=subprocess.PIPE, text=True)
    try:
        assert relay.stdout is not None and relay.stdout.readline().strip() == "ready"
        runs = {"local": _recipe(work, "local", str(www)),
                "remote": _recipe(work, "remote", web.url),
                f"remote+{args.latency_ms:g}ms": _recipe(work, "slow",
                                                         f"http://127.0.0.1:{port}")}
        rows: dict[str, list[tuple[float, int, int]]] = {k: [] for k in runs}
        for name, recipe in runs.items():  # warm-up, not counted: imports, caches, the COGs
            _stack(recipe, work / f"store-{name}")
        for r in range(args.rounds):
            for name, recipe in runs.items():
                web.clear_log()
                seconds, px = _stack(recipe, work / f"store-{name}")
                requests = len([q for q in web.requests() if q.method == "GET"])
                rows[name].append((seconds, px, requests))
                print(json.dumps({"round": r, "run": name, "seconds": round(seconds, 3),
                                  "band_pixels": px, "get_requests": requests}), flush=True)
    finally:
        relay.terminate()
        web.stop()
        shutil.rmtree(work, ignore_errors=True)
    local = statistics.median(s for s, _, _ in rows["local"])
    result = {}
    print("\n| run | median s | Mpx-bands/s | vs local | GET requests |\n|---|---|---|---|---|")
    for name, rs in rows.items():
        med = statistics.median(s for s, _, _ in rs)
        mps = rs[0][1] / med / 1e6
        result[name] = {"median_s": med, "mpx_per_s": mps, "ratio_to_local": local / med,
                        "get_requests": rs[0][2]}
        print(f"| {name} | {med:.2f} | {mps:.1f} | {local / med:.2f} | {rs[0][2]} |")
    (OUT / "remote.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
