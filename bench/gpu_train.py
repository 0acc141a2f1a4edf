"""GPU path of geomm train: the fusion CNN trained on CUDA against the CPU, and a cnn+rf bundle
mapped on CUDA (run on a GPU machine).

    python bench/gpu_train.py OUT_JSON STORE [--smoke]

(``--smoke``: every step on the CPU with one epoch, to check the script on a machine without
a GPU.)

1. ``fit_cnn`` on the s2-landcover tile store STORE, test fold 0, every default, on CUDA
   with bf16 mixed precision and in fp32: seconds, epochs, validation and test OA, the
   calibration error on the test blocks (the CPU's figures for the same fold are in
   ``bench/results/quality-s2-landcover.jsonl``).
2. The same fit on this machine's CPU for 2 epochs, against CUDA bf16 for 2 epochs: seconds
   per epoch side by side (the ratio is the figure; one run each).
3. The bf16 network and a random forest fitted on the same split, saved as one ``cnn+rf``
   bundle; the real sample mapped with that bundle and with the network alone on CUDA (bf16)
   and on the CPU: class agreement and seconds.
Needs the sample under $GEOMM_CACHE.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _scene import modality_specs, scene  # noqa: E402

from geomm.learn.config import TrainConfig  # noqa: E402
from geomm.learn.ensemble import save_ensemble_bundle, score_ensemble  # noqa: E402
from geomm.learn.pixelfit import fit_pixel_classifier  # noqa: E402
from geomm.learn.result import save_cnn_bundle  # noqa: E402
from geomm.learn.train import fit_cnn, score_result  # noqa: E402
from geomm.predict.scene import PredictOptions, predict_scene  # noqa: E402
from geomm.stack.store import open_store  # noqa: E402

RESULT: dict = {}


def _say(key: str, value: object) -> None:
    """Print one figure and rewrite the JSON file (a run cut short keeps what it measured)."""
    RESULT[key] = value
    print(key, json.dumps(value, default=float), flush=True)
    Path(sys.argv[1]).write_text(json.dumps(RESULT, indent=1, default=float))


def _fit(store, cfg: TrainConfig, tag: str):
    t0 = time.perf_counter()
    result, held, probs = score_result(fit_cnn(store, cfg, progress=False), store)
    m = result.metrics
    _say(f"train_{tag}", {"seconds_fit": m["seconds"], "seconds_with_scoring":
                          time.perf_counter() - t0, "epochs": m["epochs"],
                          "best_epoch": m["best_epoch"], "val_oa": held.val_oa,
                          "test_oa": held.test.overall_accuracy, "test_kappa": held.test.kappa,
                          "test_ece_before": held.ece_test[0], "test_ece": held.ece_test[1]})
    return result, probs


def _map(bundle: Path, device: str, amp: bool, out: Path) -> tuple[np.ndarray, float]:
    import rasterio

    t0 = time.perf_counter()
    predict_scene(bundle, modality_specs(scene(1)), out,
                  options=PredictOptions(device=device, amp=amp, overwrite=True))
    with rasterio.open(out / "classes.tif") as src:
        return src.read(1), time.perf_counter() - t0


def main() -> None:
    smoke = "--smoke" in sys.argv
    gpu = "cpu" if smoke else "cuda"
    _say("device", {"torch": torch.__version__,
                    "cuda": None if smoke else torch.cuda.get_device_name(0)})
    store = open_store(Path(sys.argv[2]))
    base = TrainConfig(device=gpu, max_epochs=1 if smoke else TrainConfig.max_epochs)
    result, probs = _fit(store, base, "cuda_bf16")
    _fit(store, replace(base, amp=False), "cuda_fp32")
    for device in (gpu, "cpu"):
        t0 = time.perf_counter()
        res = fit_cnn(store, replace(base, device=device, max_epochs=1 if smoke else 2),
                      progress=False)
        sec = time.perf_counter() - t0
        _say(f"two_epochs_{device}", {"seconds": sec, "epochs": res.metrics["epochs"]})
    fit = fit_pixel_classifier(store, base, "rf")
    ens = score_ensemble(store, probs, fit)
    _say("ensemble_heldout", {"val_oa": ens.val_oa, "test_oa": ens.test.overall_accuracy,
                              "rf_test_oa": fit.held.test.overall_accuracy})
    work = Path(tempfile.mkdtemp(prefix="gpu-train-"))
    bundles = {"cnn+rf": save_ensemble_bundle(result, fit, ens, store, work / "ens",
                                              recipe_raw=None),
               "cnn": save_cnn_bundle(result, store, work / "cnn", recipe_raw=None)}
    for name, bundle in bundles.items():
        on_gpu, gpu_s = _map(bundle, gpu, True, work / f"{name}-cuda")
        on_cpu, cpu_s = _map(bundle, "cpu", False, work / f"{name}-cpu")
        _say(f"map_{name}", {"cuda_bf16_vs_cpu_classes": float((on_gpu == on_cpu).mean()),
                             "seconds_cuda_bf16": gpu_s, "seconds_cpu": cpu_s})
    n = 1 if smoke else 4
    t0 = time.perf_counter()
    s = predict_scene(bundles["cnn"], modality_specs(scene(n)), work / "scene",
                      options=PredictOptions(device=gpu, overwrite=True))
    sec = time.perf_counter() - t0
    _say(f"predict_{n}x{n}_cnn", {"seconds": sec, "scene_mpx_s": s.scene_px / sec / 1e6,
                                  "model_busy": s.model_seconds / sec, "engine": s.engine})


if __name__ == "__main__":
    main()
