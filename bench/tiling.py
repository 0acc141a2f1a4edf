"""Does the tile size the network maps with matter? One training per fold, several tilings.

    .venv/bin/python bench/tiling.py [--k all] [--folds 0 1 2] [--recipe s2-landcover]
                                     [--tiles 192:48 72:36 384:96]

Runs bench/quality.py's protocol (the package's defaults) with a hook on
``geomm.learn.heldout.score_network_probs``: the trained network maps the store once with
each ``TILE:OVERLAP`` (base pixels) of ``--tiles`` and the test blocks' OA, kappa and ECE
(after the validation temperature), and the OA inside the polygons and on their edges
(:func:`_edges`), of each are written to ``bench/out/tiling-<recipe>.jsonl``;
the forest's OA inside and on the edges too. The fold's own rows (the package's tiling,
192:48) go where bench/quality.py puts them, under the variant name ``--variant`` (default
``tiling``). The network trains on patches of about 72 px (:data:`geomm.learn.config.PATCH_PX`);
:func:`geomm.predict.infer.predict_store` maps with 192 px tiles overlapping by 48, and
``geomm predict`` with 768 px tiles overlapping by 96.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _edges(store, labels: np.ndarray, pred: np.ndarray,  # type: ignore[no-untyped-def]
           test_mask: np.ndarray) -> dict:
    """OA on the test pixels inside a polygon (their 3 x 3 neighbourhood one class) and on
    its edge (next to another class or to unlabelled pixels), the share of the edge, and the
    test pixels' confusion matrix (rows reference, columns prediction, the last column for
    pixels not predicted)."""
    from scipy import ndimage

    from geomm.metrics import confusion_matrix

    test = test_mask & (labels != store.ignore_value)
    inside = test & (ndimage.minimum_filter(labels, 3) == ndimage.maximum_filter(labels, 3))
    edge = test & ~inside
    right = pred == labels
    n = len(store.manifest["classes"]["classes"])
    cm = confusion_matrix(labels, np.where(pred == store.ignore_value, n, pred), n + 1,
                          ignore_value=store.ignore_value, mask=test)[:n]
    return {"oa_inside": float(right[inside].mean()), "oa_edge": float(right[edge].mean()),
            "edge_share": float(edge.sum() / max(1, test.sum())),
            "cm": cm.astype(int).tolist()}


def map_scored(model, store, stats, val_labels, test_mask, **kw):  # type: ignore[no-untyped-def]
    """``geomm.learn.heldout.score_network_probs`` with ``predict_store``'s options ``kw``
    (tile size, overlap, batch): the scores, class map and calibrated probabilities, and the
    seconds the mapping took."""
    from geomm.learn import heldout
    from geomm.predict.infer import predict_store

    t0 = time.perf_counter()
    pred, probs = predict_store(model, store, stats, **kw)
    seconds = time.perf_counter() - t0
    probs[:, pred == store.ignore_value] = 0  # as the package: not predicted
    return heldout.score_probs(store, probs, val_labels, test_mask), seconds


def main(argv: list[str] | None = None) -> int:
    import quality

    from geomm.learn import crossval, heldout
    from geomm.predict.infer import predict_store

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", nargs="+", default=["all"])
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--tiles", nargs="+", default=["192:48", "72:36", "384:96"])
    ap.add_argument("--recipe", default="s2-landcover", help="a bundled recipe or a file")
    ap.add_argument("--variant", default="tiling", help="the rows' variant name (resumable)")
    ap.add_argument("--save-maps", action="store_true",
                    help="save each fold's class map of the first tiling and its test mask "
                         "(bench/out/tiling-maps/<variant>-k<K>-fold<F>.npz)")
    args = ap.parse_args(argv)
    tilings = [tuple(int(v) for v in t.split(":")) for t in args.tiles]
    quality.OUT.mkdir(exist_ok=True)
    out = quality.OUT / f"tiling-{Path(args.recipe).stem}.jsonl"
    where: dict = {"variant": args.variant}
    plain = heldout.score_network_probs

    package = tuple(inspect.signature(predict_store).parameters[name].default
                    for name in ("patch_size", "overlap"))

    def score(model, store, stats, val_labels, test_mask):  # type: ignore[no-untyped-def]
        labels, kept = store.labels(), None
        for tile, overlap in tilings:
            scored, seconds = map_scored(model, store, stats, val_labels, test_mask,
                                         patch_size=tile, overlap=overlap)
            held, pred, _ = scored
            if (tile, overlap) == package:  # what the package's own scoring gives
                kept = scored
            s = held.test
            row = {**where, "tile": tile, "overlap": overlap, "oa": s.overall_accuracy,
                   "kappa": s.kappa, "macro_f1": s.macro_f1, "ece": held.ece_test[1],
                   "seconds": seconds, **_edges(store, labels, pred, test_mask)}
            print(f"  tiles {tile}:{overlap} OA {100 * s.overall_accuracy:.1f} "
                  f"ECE {held.ece_test[1]:.3f} ({seconds:.0f} s)", flush=True)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            if args.save_maps and (tile, overlap) == tilings[0]:
                maps = quality.OUT / "tiling-maps"
                maps.mkdir(exist_ok=True)
                np.savez_compressed(maps / f"{args.variant}-k{where['k']}-fold{where['fold']}.npz",
                                    pred=pred, test=test_mask, labels=labels)
        return kept if kept is not None else plain(model, store, stats, val_labels, test_mask)

    plain_ens = crossval.score_ensemble

    def score_ensemble(store, cnn_probs, fit):  # type: ignore[no-untyped-def]
        if fit.probs is not None:  # the forest's own map, for its edge and inside OA
            pred = fit.probs.argmax(axis=0).astype(np.uint8)
            pred[~(fit.probs.sum(axis=0) > 0)] = store.ignore_value
            with out.open("a") as f:
                f.write(json.dumps({**where, "method": "rf", **_edges(store, store.labels(), pred,
                                                                 fit.test_mask)})
                        + "\n")
        return plain_ens(store, cnn_probs, fit)

    crossval.score_network_probs = score  # type: ignore[assignment]
    crossval.score_ensemble = score_ensemble  # type: ignore[assignment]
    log = quality.OUT / f"quality-{Path(args.recipe).stem}-variants.jsonl"
    for k in args.k:
        for fold in args.folds:
            where.update(k=k, fold=fold)
            quality._run(args.recipe, [k], [fold], log, None, {}, args.variant)
    return 0


if __name__ == "__main__":
    sys.exit(main())
