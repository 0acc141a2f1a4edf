"""Batch throughput: geomm batch on 1 worker vs 2 workers (same total threads) vs geomm predict.

    .venv/bin/python bench/batch.py [N] [BLOCK]

Scene: the real s2-t33uuu sample mirror-tiled N x N (default 8: 12288 x 6144 px at 10 m, 12
bands at 10/20/60 m), model: the s2-landcover fusion CNN (bench bundle, random weights), 2
cores. One after another, each in a fresh process:
  (p) ``geomm predict`` of the whole scene, 2 torch threads;
  (1) ``geomm batch`` of the scene cut into BLOCK-px blocks (default 3072) on a LocalCluster of
      1 worker process x 2 threads, mosaic COGs at the end (no vector map: predict makes none);
  (2) the same on 2 worker processes x 1 thread.
Reported: seconds, blocks/s, scene Mpx/s; distribution overhead at equal thread count =
1 - (1)/(p) in px/s (target <= 10 %); (2)/(1). The batch's wall time includes starting the
cluster and writing the mosaic. Results go to ``bench/out/batch.json``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "batch.json"


def _case(kind: str, n: int, block: int, workers: int) -> dict:
    sys.path.insert(0, str(HERE))
    from _predict_cases import bench_bundle
    from _scene import modality_specs, scene

    from geomm.batch.jobs import area_job
    from geomm.batch.runner import BatchOptions, run_batch
    from geomm.predict.scene import PredictOptions, predict_scene
    from geomm.recipe import GridRequest

    doc = scene(n)
    bundle = bench_bundle()
    out = Path(doc["dir"]) / f"batch-{kind}-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    mods = modality_specs(doc)
    h, w = doc["shape"]
    if kind == "predict":
        t0 = time.perf_counter()
        s = predict_scene(bundle, mods, out, options=PredictOptions(device="cpu", threads=2))
        sec = time.perf_counter() - t0
        return {"case": "predict", "seconds": sec, "blocks": 1, "px": h * w,
                "tiles": s.tiles_run, "model_seconds": s.model_seconds}
    t0 = time.perf_counter()
    job = area_job(mods, GridRequest(), block)
    r = run_batch(job, bundle, out, predict=PredictOptions(device="cpu"),
                  options=BatchOptions(workers=workers, vector=False, progress=False),
                  echo=lambda s: None)
    sec = time.perf_counter() - t0
    assert r.ok and r.final, r.describe()
    return {"case": f"batch {workers} worker(s)", "seconds": sec, "blocks": len(job.blocks),
            "px": h * w, "where": r.where}


def _run(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--case", *args], capture_output=True,
                          text=True)
    if proc.returncode:
        sys.exit(f"case {args} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["blocks_s"] = r["blocks"] / r["seconds"]
    r["mpx_s"] = r["px"] / r["seconds"] / 1e6
    print(f"  {r['case']:<20} {r['seconds']:7.1f} s  {r['blocks']:3d} blocks  "
          f"{r['blocks_s']:.3f} blocks/s  {r['mpx_s']:.3f} Mpx/s", flush=True)
    return r


def main() -> None:
    if sys.argv[1:2] == ["--case"]:
        kind, n, block, workers = sys.argv[2], *map(int, sys.argv[3:6])
        print(json.dumps(_case(kind, n, block, workers)))
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    block = int(sys.argv[2]) if len(sys.argv) > 2 else 3072
    print(f"scene {n}x{n}, blocks of {block} px, 2 cores")
    p = _run("predict", str(n), str(block), "0")
    one = _run("batch", str(n), str(block), "1")
    two = _run("batch", str(n), str(block), "2")
    overhead = 1 - one["mpx_s"] / p["mpx_s"]
    print(f"distribution overhead at 2 threads: 1 - (1)/(p) = {100 * overhead:.1f} % "
          f"(target <= 10 %); 2 workers / 1 worker = {two['mpx_s'] / one['mpx_s']:.2f}")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"scene": n, "block": block, "predict": p, "one_worker": one,
                               "two_workers": two, "overhead": overhead}, indent=1))


if __name__ == "__main__":
    main()
