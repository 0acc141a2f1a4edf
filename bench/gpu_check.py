"""GPU path of geomm predict: CUDA inference, bf16 autocast, throughput (run on a GPU machine).

    python bench/gpu_check.py OUT_JSON

1. The engine alone on CUDA (the s2-landcover model, channels-last) for fp32 and bf16 and a
   few batch sizes: tile Mpx/s (the ceiling).
2. Agreement of one batch between CPU fp32, CUDA fp32 and CUDA bf16 (argmax, max |dp|).
3. ``predict_scene`` on the mirror-tiled 4x4 sample (6144 x 3072 px) with device cuda + bf16,
   end to end (reading, co-registration, blending and COG writing stay on the CPU): seconds,
   scene / tile Mpx/s, share of the time the model was busy.
4. The real sample predicted on CUDA (bf16) and on the CPU (fp32): class agreement.
Needs the bench bundle and the sample under $GEOMM_CACHE (see bench/_predict_cases.py).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _predict_cases import bench_bundle  # noqa: E402
from _scene import modality_specs, scene  # noqa: E402

from geomm.model.bundle import load_bundle  # noqa: E402
from geomm.predict._engines import _network  # noqa: E402
from geomm.predict.scene import PredictOptions, predict_scene  # noqa: E402

RESULT: dict = {}


def _say(key: str, value: object) -> None:
    RESULT[key] = value
    print(key, json.dumps(value, default=float), flush=True)


def _engine(device: str, amp: bool):
    path = bench_bundle()
    return _network(path, load_bundle(path), PredictOptions(device=device, amp=amp), [])


def _inputs(engine, batch: int, tile: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {la.key: rng.standard_normal((batch, len(la.shift), tile // la.factor,
                                         tile // la.factor), dtype=np.float32)
            for la in engine.layers}


def ceiling() -> None:
    for amp in (False, True):
        eng = _engine("cuda", amp)
        for tile, batch in ((696, 2), (768, 14), (1536, 4)):
            x = _inputs(eng, batch, tile)
            eng(x)
            torch.cuda.synchronize()
            reps, t0 = 10, time.perf_counter()
            for _ in range(reps):
                eng(x)
            torch.cuda.synchronize()
            sec = time.perf_counter() - t0
            _say(f"ceiling_{'bf16' if amp else 'fp32'}_t{tile}_b{batch}",
                 {"tile_mpx_s": reps * batch * tile * tile / sec / 1e6,
                  "ms_per_batch": 1000 * sec / reps})


def agreement() -> None:
    x = _inputs(_engine("cpu", False), 2, 768, seed=1)
    cpu = _engine("cpu", False)(x)
    f32 = _engine("cuda", False)(x)
    b16 = _engine("cuda", True)(x)
    _say("agreement", {
        "cuda_fp32_vs_cpu_argmax": float((f32.argmax(1) == cpu.argmax(1)).mean()),
        "cuda_fp32_vs_cpu_max_abs_dp": float(np.abs(f32 - cpu).max()),
        "cuda_bf16_vs_cpu_argmax": float((b16.argmax(1) == cpu.argmax(1)).mean()),
        "cuda_bf16_vs_cpu_max_abs_dp": float(np.abs(b16 - cpu).max())})


def end_to_end(n: int, device: str, amp: bool, tag: str) -> Path:
    doc = scene(n)
    out = Path(doc["dir"]) / f"gpu-{tag}"
    opts = PredictOptions(device=device, amp=amp, overwrite=True)
    t0 = time.perf_counter()
    s = predict_scene(bench_bundle(), modality_specs(doc), out, options=opts)
    sec = time.perf_counter() - t0
    _say(f"predict_{tag}", {"seconds": sec, "scene_mpx_s": s.scene_px / sec / 1e6,
                            "tile_mpx_s": s.tile_px / sec / 1e6,
                            "model_busy": s.model_seconds / sec, "tiles": s.tiles_run,
                            "batch": s.batch_size, "engine": s.engine, **s.phases})
    return out


def main() -> None:
    _say("device", {"torch": torch.__version__, "cuda": torch.cuda.get_device_name(0)})
    ceiling()
    agreement()
    end_to_end(4, "cuda", True, "4x4-cuda-bf16")
    a = end_to_end(1, "cuda", True, "1x1-cuda-bf16")
    b = end_to_end(1, "cpu", False, "1x1-cpu-fp32")
    import rasterio

    with rasterio.open(a / "classes.tif") as ca, rasterio.open(b / "classes.tif") as cb:
        _say("sample_cuda_bf16_vs_cpu_classes", float((ca.read(1) == cb.read(1)).mean()))
    Path(sys.argv[1]).write_text(json.dumps(RESULT, indent=1, default=float))


if __name__ == "__main__":
    main()
