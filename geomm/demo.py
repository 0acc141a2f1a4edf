"""``geomm demo``: the whole pipeline on the real ``s2-t33uuu`` sample scene.

stack -> train (a short CNN run) -> predict (COGs, style, STAC item, quicklook) -> vectorize
-> evaluate (the map against the labels of the test blocks the model never saw).
Everything goes under one folder (default ``demo/``); the store stays in ``tiles/``. A second
run reuses the store and the model and makes the map again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from geomm import sampledata
from geomm.recipe import load_recipe
from geomm.stack.build import stack

DEMO_EPOCHS, DEMO_STEPS, DEMO_MINUTES = 4, 40, 8.0
"""A short run (3-8 minutes of training on 2 cores, by CPU; the time limit caps it): a demo
map, not the cross-validated model."""

OUTPUTS = ("model", "model-logs", "map", "reference-test-blocks.tif", "report")
"""What the demo writes under its folder."""

MARKER = ".geomm-demo"
"""In a folder the demo writes: its later runs may replace :data:`OUTPUTS` there."""


def claim_folder(out: Path) -> bool:
    """Make ``out`` the demo's folder, or refuse it; whether it is new (before any work).

    Raises:
        OutputExistsError: ``out`` is a file, or holds one of :data:`OUTPUTS` that no demo
            run wrote (no :data:`MARKER` beside it): nothing of the user's is replaced.
    """
    from geomm._outputs import OutputExistsError

    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: is a file; give geomm demo --out a folder")
    clash = [n for n in OUTPUTS if (out / n).exists()]
    if clash and not (out / MARKER).is_file():
        raise OutputExistsError(f"{out}: holds {', '.join(clash)}, which geomm demo did not "
                                "write; choose another --out or move them away")
    new = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("geomm demo writes model/, map/, report/ and "
                              "reference-test-blocks.tif here, and replaces them on a rerun\n")
    return new


def run_demo(*, out: Path | None = None, workers: int | None = None,
             echo: Callable[[str], object] = print) -> dict[str, Path]:
    """Fetch the sample, stack it, train a small fusion CNN, map the scene, vectorise the map.

    Args:
        out: folder for the model, the map and the polygons (default ``demo/``).
        workers: dask threads for stacking (default: all cores).
        echo: where the report goes.

    Returns:
        Paths of the outputs: store, model, map folder, polygons.

    Raises:
        OutputExistsError: ``out`` holds files of the same names that the demo did not
            write (checked first).
    """
    import shutil

    out = Path(out or "demo")
    t0 = time.perf_counter()
    new = claim_folder(out)  # before a minute is spent
    try:
        return _run(out, t0, workers, echo)
    except BaseException:
        if new and [p.name for p in out.iterdir()] == [MARKER]:  # nothing came of it
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run(out: Path, t0: float, workers: int | None, echo: Callable[[str], object]
         ) -> dict[str, Path]:
    from geomm.learn.train import TrainConfig, train_recipe
    from geomm.model.bundle import load_bundle
    from geomm.predict.scene import PredictOptions, predict_recipe
    from geomm.vector.vectorize import vectorize

    sample = sampledata.fetch("s2-t33uuu")
    echo(sample.summary())
    recipe = load_recipe("s2-landcover")
    echo("\n[1/5] co-register and tile (recipe s2-landcover)")
    summaries = stack(recipe, workers=workers)
    for summary in summaries:
        echo(summary.describe())
    model = out / "model"
    echo(f"\n[2/5] train a fusion CNN ({DEMO_EPOCHS} short epochs)")
    if (model / "bundle.json").exists():
        echo(f"{model}: model already trained; delete the folder to train again")
    else:
        cfg = TrainConfig(max_epochs=DEMO_EPOCHS, steps_per_epoch=DEMO_STEPS,
                          max_minutes=DEMO_MINUTES)
        train_recipe(recipe, out=model, cfg=cfg, workers=workers, progress=False,
                     echo=echo)
    metrics = load_bundle(model).meta.metrics
    keep = ("test_oa", "test_kappa", "test_macro_f1", "test_ece", "temperature", "kept_epoch",
            "epochs", "seconds")
    shown = {k: v for k, v in metrics.items() if k in keep and isinstance(v, float | int)}
    echo(f"{model}: " + ", ".join(f"{k} {v:.3g}" for k, v in sorted(shown.items())))
    echo("\n[3/5] predict the scene (streamed tiles, blended, written as COGs)")
    (pred,) = predict_recipe(model, recipe, out / "map",
                             options=PredictOptions(overwrite=True))
    echo(pred.describe())
    echo("\n[4/5] vectorise the class map")
    polygons = out / "map" / "map.gpkg"
    vec = vectorize(out / "map" / "classes.tif", polygons, min_area=2000, simplify=5,
                    overwrite=True)
    echo(f"{polygons}: {vec.n_polygons} polygons")
    echo("\n[5/5] accuracy on the held-out test blocks (labels the model never saw)")
    from geomm.assess.evaluate import evaluate

    reference = held_out_labels(summaries[0].path, model, out / "reference-test-blocks.tif")
    a = evaluate(out / "map" / "classes.tif", reference, out / "report", column=None,
                 overwrite=True)
    echo(f"{int(a.error_matrix.sum())} test pixels: OA {a.scores.overall_accuracy:.3f}, kappa "
         f"{a.scores.kappa:.3f}, macro-F1 {a.scores.macro.f1:.3f}; "
         f"report {out / 'report' / 'report.html'}")
    echo(f"\ndone in {time.perf_counter() - t0:.0f} s. Open {out / 'map' / 'classes.tif'} (with "
         f"classes.qml) and {polygons} in QGIS; {out / 'map' / 'quicklook.png'} is a preview, "
         f"{out / 'map' / 'item.json'} the STAC item, "
         f"{out / 'report' / 'report.html'} the accuracy report.")
    return {"store": summaries[0].path, "model": model, "map": out / "map",
            "polygons": polygons, "report": out / "report"}


def held_out_labels(store_path: Path, model: Path, out: Path) -> Path:
    """The store's labels on the model's test blocks only (255 elsewhere), as a GeoTIFF with
    the class table, for ``geomm evaluate``."""
    import json

    import numpy as np
    import rasterio

    from geomm.learn.split import SpatialSplit, train_val_test
    from geomm.model.bundle import load_bundle
    from geomm.stack.store import open_store

    meta = load_bundle(model).meta
    training = meta.config["training"]
    _, _, test = train_val_test(SpatialSplit.from_dict(meta.split), int(training["test_fold"]),
                                training.get("val_fold"))
    store = open_store(store_path)
    table = meta.class_table
    labels = np.asarray(store.base()["labels"]).astype(np.uint8)
    labels[~test] = table.ignore_value
    g = store.grid
    tmp = out.with_name(f".{out.name}.tmp")
    with rasterio.open(tmp, "w", driver="GTiff", height=g.height, width=g.width, count=1,
                       dtype="uint8", crs=g.crs, transform=g.transform,
                       nodata=table.ignore_value, compress="deflate") as dst:
        dst.write(labels, 1)
        dst.update_tags(GEOMM_CLASSES=json.dumps(table.to_dict()))
    tmp.replace(out)
    return out
