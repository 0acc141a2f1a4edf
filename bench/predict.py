"""Scene prediction throughput and memory: geomm predict against its ceiling and TorchGeo.

    .venv/bin/python bench/predict.py [--quick]

Scene: the real s2-t33uuu sample mirror-tiled 4x4 (6144 x 3072 px at 10 m, 12 bands at 10, 20
and 60 m), model: the s2-landcover fusion CNN (5 native-resolution branches, default training
config; random weights: speed does not depend on them), 2 torch threads. Every case runs in a
fresh process (bench/_predict_cases.py), one after the other:
  (a) model-only ceiling: the same engine, tile, batch and threads on tensors already in
      memory, for each variant (eager, channels-last, compiled); tile Mpx/s, and scene Mpx/s
      = tile Mpx/s x scene px / (tiles x tile px) of the plan geomm predict uses;
  (b) ``geomm predict`` end to end (co-register, read, infer, blend, write the three COGs with
      overviews, QML, STAC item, quicklook), channels-last; target >= 0.9x (a) in tile px/s;
  (c) the TorchGeo way: RasterDataset per modality + IntersectionDataset + GridGeoSampler +
      DataLoader, resampled to 10 m, pooled back per layer, same model variant, nothing
      written (40 batches timed), with the tiling TorchGeo's own tiled-inference example uses
      (256 px patches with 64 px overlap; 264 here, the nearest size the model's 12 px lattice
      allows, stride 192); target: (b) >= 1.8x (c) in scene px/s;
  (c') the same with (b)'s tile and stride (what TorchGeo would cost with geomm's tiling);
  (d) peak RSS of (b) on the 8x8 scene (4x the pixels) over the 4x4 scene; target <= 1.15;
  (e) ``geomm vectorize`` of (b)'s class map against ``rasterio.features.shapes`` on the whole
      array (bench/vectorize.py).
Results go to ``bench/out/predict.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "predict.json"


def _case(*args: str) -> dict:
    proc = subprocess.run([sys.executable, str(HERE / "_predict_cases.py"), *args],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.exit(f"case {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {' '.join(args):<24} " + ", ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
        if k not in ("case", "n", "engine", "out")), flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 8x8 scene and compiled")
    args = ap.parse_args()
    variants = ["eager", "channels_last"] + ([] if args.quick else ["compiled"])
    res: dict = {"machine": f"{platform.machine()}, {platform.python_version()}"}
    print("(a) model-only ceiling, scene 4x4")
    res["model"] = {v: _case("model", "4", v) for v in variants}
    print("(b) geomm predict, scene 4x4")
    res["predict"] = _case("predict", "4", "channels_last")
    print("(c) the TorchGeo way, scene 4x4, 264 px tiles, stride 192")
    res["torchgeo"] = _case("torchgeo", "4", "channels_last", "264", "192")
    print("(c') the TorchGeo way, scene 4x4, geomm's tiling")
    res["torchgeo_same_tiles"] = _case("torchgeo", "4", "channels_last")
    if not args.quick:
        print("(d) geomm predict, scene 8x8")
        res["predict_8x8"] = _case("predict", "8", "channels_last")
    print("(e) vectorize")
    classes = Path(res["predict"]["out"]) / "classes.tif"
    proc = subprocess.run([sys.executable, str(HERE / "vectorize.py"), str(classes)],
                          capture_output=True, text=True, cwd=ROOT)
    res["vectorize"] = proc.stdout.strip()
    print(res["vectorize"] or proc.stderr[-2000:])
    a, b, c = res["model"]["channels_last"], res["predict"], res["torchgeo"]
    ratios = {"b_over_a_tile_px": b["tile_mpx_s"] / a["tile_mpx_s"],
              "b_over_c_scene_px": b["scene_mpx_s"] / c["scene_mpx_s"],
              "b_over_c_same_tiles_scene_px":
                  b["scene_mpx_s"] / res["torchgeo_same_tiles"]["scene_mpx_s"]}
    if "predict_8x8" in res:
        ratios["rss_8x8_over_4x4"] = res["predict_8x8"]["maxrss_mb"] / b["maxrss_mb"]
    res["ratios"] = ratios
    print("\n| measure | value | target |\n|---|---:|---|")
    for v in variants:
        m = res["model"][v]
        print(f"| (a) ceiling, {v} | {m['tile_mpx_s']:.3f} tile Mpx/s, "
              f"{m['scene_mpx_s']:.3f} scene Mpx/s | |")
    print(f"| (b) geomm predict | {b['tile_mpx_s']:.3f} tile Mpx/s, {b['scene_mpx_s']:.3f} "
          f"scene Mpx/s ({b['seconds']:.1f} s, model busy {100 * b['model_busy']:.0f} %) | |")
    for key, what in (("torchgeo", "(c) TorchGeo way, 264/192"),
                      ("torchgeo_same_tiles", "(c') TorchGeo way, geomm's tiles")):
        t = res[key]
        print(f"| {what} | {t['tile_mpx_s']:.3f} tile Mpx/s, {t['scene_mpx_s']:.3f} scene "
              f"Mpx/s (loader alone {t['loader_only_mpx_s']:.2f} tile Mpx/s) | |")
    print(f"| (b)/(a) tile px/s | {ratios['b_over_a_tile_px']:.2f} | >= 0.9 |")
    print(f"| (b)/(c) scene px/s | {ratios['b_over_c_scene_px']:.2f} | >= 1.8 |")
    print(f"| (b)/(c') scene px/s | {ratios['b_over_c_same_tiles_scene_px']:.2f} | — |")
    if "rss_8x8_over_4x4" in ratios:
        print(f"| peak RSS 8x8 / 4x4 | {res['predict_8x8']['maxrss_mb']:.0f} / "
              f"{b['maxrss_mb']:.0f} MB = {ratios['rss_8x8_over_4x4']:.2f} | <= 1.15 |")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
