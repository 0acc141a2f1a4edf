"""One case of bench/predict.py, run in a fresh process; prints one JSON line.

    python bench/_predict_cases.py CASE N [VARIANT]

CASE: ``model`` (the model-only ceiling on in-memory tensors), ``predict`` (geomm predict end
to end), ``torchgeo`` (RasterDataset + IntersectionDataset + GridGeoSampler + DataLoader).
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _scene import modality_specs, scene  # noqa: E402

from geomm._cache import cache_dir  # noqa: E402

THREADS = 2
OPTIONS = {"tile_size": 768, "halo": 48, "device": "cpu", "threads": THREADS}
VARIANTS = {"eager": {"channels_last": False, "compile": False},
            "channels_last": {"channels_last": True, "compile": False},
            "compiled": {"channels_last": True, "compile": True}}


def bench_bundle() -> Path:
    """A bundle with the s2-landcover model (default TrainConfig), random weights, real stats.

    Throughput does not depend on the weights; the architecture and input layers are those of
    ``geomm train s2-landcover``.
    """
    out = cache_dir() / "bench" / "bundle-s2-random"
    if (out / "bundle.json").exists():
        return out
    from geomm.learn.normalize import compute_norm_stats
    from geomm.learn.train import TrainConfig, model_config_for, recipe_store
    from geomm.model.bundle import BundleMeta, layers_from_manifest, save_bundle
    from geomm.model.netbundle import state_tensors
    from geomm.model.network import MultiBranchNet
    from geomm.recipe import load_recipe

    store = recipe_store(load_recipe("s2-landcover"))
    torch.manual_seed(0)
    cfg = model_config_for(store, TrainConfig())
    stats = compute_norm_stats(store, np.ones(store.grid.shape, bool))
    meta = BundleMeta("s2-landcover", layers_from_manifest(store.manifest, cfg_keys(cfg)),
                      store.manifest["classes"], normalisation=stats.to_dict(),
                      config={"model": cfg.to_dict(), "training": {}})
    return save_bundle(out, kind="cnn", tensors=state_tensors(MultiBranchNet(cfg)), meta=meta)


def cfg_keys(cfg) -> list[str]:
    return [layer.key for layer in cfg.layers]


def _engine(variant: str):
    from geomm.model.bundle import load_bundle
    from geomm.predict._engines import _network
    from geomm.predict.scene import PredictOptions

    path = bench_bundle()
    opts = PredictOptions(**OPTIONS, **VARIANTS[variant])
    return _network(path, load_bundle(path), opts, []), opts


def case_model(n: int, variant: str) -> dict:
    """(a) the engine alone on random tensors of the tile shape: the ceiling."""
    from geomm.predict.scene import plan_tiles

    engine, opts = _engine(variant)
    h, w = scene(n)["shape"]
    plan = plan_tiles(h, w, engine.lattice, opts)
    batch = max(1, round(2**20 / plan.tile_px))
    rng = np.random.default_rng(0)
    ty, tx = plan.tile
    inputs = {la.key: rng.standard_normal((batch, len(la.shift), ty // la.factor,
                                           tx // la.factor), dtype=np.float32)
              for la in engine.layers}
    t0 = time.perf_counter()
    engine(inputs)  # warm-up (and compilation)
    warm = time.perf_counter() - t0
    reps = max(3, min(12, plan.n_tiles // batch))
    t0 = time.perf_counter()
    for _ in range(reps):
        engine(inputs)
    sec = time.perf_counter() - t0
    tile_px_s = reps * batch * plan.tile_px / sec
    return {"variant": variant, "tile": list(plan.tile), "halo": plan.halo, "batch": batch,
            "tiles": plan.n_tiles, "tile_mpx_s": tile_px_s / 1e6,
            "scene_mpx_s": tile_px_s * h * w / (plan.n_tiles * plan.tile_px) / 1e6,
            "warmup_s": warm, "engine": engine.description}


def case_predict(n: int, variant: str) -> dict:
    """(b) geomm predict end to end: read, co-register, infer, blend, write COGs + sidecars."""
    from geomm.predict.scene import PredictOptions, predict_scene

    doc = scene(n)
    out = Path(doc["dir"]) / f"predict-{variant}"
    shutil.rmtree(out, ignore_errors=True)
    path = bench_bundle()
    opts = PredictOptions(**OPTIONS, **VARIANTS[variant])
    t0 = time.perf_counter()
    s = predict_scene(path, modality_specs(doc), out, options=opts)
    sec = time.perf_counter() - t0
    return {"variant": variant, "seconds": sec, "tiles": s.tiles_run, "tile": s.tile_size,
            "scene_mpx_s": s.scene_px / sec / 1e6, "tile_mpx_s": s.tile_px / sec / 1e6,
            "model_busy": s.model_seconds / sec, "out": str(out), "engine": s.engine,
            **s.phases,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def case_torchgeo(n: int, variant: str, tile: int = 0, stride: int = 0) -> dict:
    """(c) the TorchGeo way, same model variant; tile and stride as given (default: those
    of (b))."""
    from _torchgeo_way import scene_layers, torchgeo_way

    from geomm.predict.scene import plan_tiles

    engine, opts = _engine(variant)
    doc = scene(n)
    plan = plan_tiles(*doc["shape"], engine.lattice, opts)
    norm = {la.key: (np.asarray(la.shift, np.float32), np.asarray(la.scale, np.float32))
            for la in engine.layers}
    layers = [la for la in scene_layers(doc) if la["key"] in norm]
    tile, stride = tile or max(plan.tile), stride or max(plan.stride)
    batch = max(1, round(2**20 / tile ** 2))
    r = torchgeo_way(doc, engine.model, layers, norm, tile=tile, stride=stride,
                     batch_size=batch, num_workers=0,
                     channels_last=VARIANTS[variant]["channels_last"], max_batches=40)
    return {"variant": variant, "tile": tile, "stride": stride, "batch": batch, **r}


if __name__ == "__main__":
    torch.set_num_threads(THREADS)
    case, n = sys.argv[1], int(sys.argv[2])
    variant = sys.argv[3] if len(sys.argv) > 3 else "channels_last"
    extra = [int(v) for v in sys.argv[4:]]
    result = {"model": case_model, "predict": case_predict, "torchgeo": case_torchgeo}[case](
        n, variant, *extra)
    print(json.dumps({"case": case, "n": n, **result}, default=float))
