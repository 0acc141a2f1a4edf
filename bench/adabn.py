"""Does re-estimating the network's BatchNorm statistics on the mapped imagery help?

    .venv/bin/python bench/adabn.py [--k all] [--folds 0 1 2] [--recipe s2-landcover]

The test blocks differ from the training blocks in how a February field looks (farm against
meadow changes from block to block, bench/quality.md). Batch normalisation keeps the training
patches' feature statistics; mapping with statistics of the imagery being mapped (unlabelled,
so a user can do it on any scene) is the cheapest domain adaptation there is. Runs
bench/quality.py's protocol (the package's defaults) with a hook on
``geomm.learn.heldout.score_network_probs``; the trained network maps the store

- ``plain``: as the package does (192 px tiles overlapping by 48);
- ``scene``: after its BatchNorm running statistics are reset and re-estimated (cumulative
  mean) over one pass of the whole scene's tiles (AdaBN);
- ``tile``: with each tile normalised by its own statistics (BatchNorm in training mode,
  one tile per batch) at ``--tile-px`` px tiles, i.e. per-region normalisation;

and the test blocks' OA and ECE (after the validation temperature, fitted on the same map)
of each go to ``bench/out/adabn-<recipe>.jsonl``. The fold's own rows (the package's map) go
where bench/quality.py puts them, under the variant name ``adabn``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _bn(model):  # type: ignore[no-untyped-def]
    from torch import nn

    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def main(argv: list[str] | None = None) -> int:
    import quality
    from tiling import map_scored

    from geomm.learn import crossval
    from geomm.predict import engine as engine_mod
    from geomm.predict.infer import predict_store

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", nargs="+", default=["all"])
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--recipe", default="s2-landcover", help="a bundled recipe or a file")
    ap.add_argument("--tile-px", nargs="+", type=int, default=[192, 384])
    ap.add_argument("--seed", type=int, default=0, help="the draw of the label budget")
    args = ap.parse_args(argv)
    quality.OUT.mkdir(exist_ok=True)
    out = quality.OUT / f"adabn-{Path(args.recipe).stem}.jsonl"
    variant = "adabn" if args.seed == 0 else f"adabn-seed{args.seed}"
    where: dict = {"variant": variant, "seed": args.seed}
    bn_train = {"on": False}
    plain_init = engine_mod.NetworkEngine.__init__

    def init(self, model, *a, **kw):  # type: ignore[no-untyped-def]
        plain_init(self, model, *a, **kw)
        if bn_train["on"]:
            for m in _bn(model):
                m.train()

    engine_mod.NetworkEngine.__init__ = init  # type: ignore[method-assign]

    def score(model, store, stats, val_labels, test_mask):  # type: ignore[no-untyped-def]
        saved = copy.deepcopy(model.state_dict())

        def one(name: str, **kw):  # type: ignore[no-untyped-def]
            scored, seconds = map_scored(model, store, stats, val_labels, test_mask, **kw)
            held = scored[0]
            row = {**where, "mode": name, "oa": held.test.overall_accuracy,
                   "kappa": held.test.kappa, "macro_f1": held.test.macro_f1,
                   "ece": held.ece_test[1], "val_oa": held.val.overall_accuracy
                   if held.val is not None else None, "seconds": seconds}
            print(f"  {name}: OA {100 * row['oa']:.1f} ECE {row['ece']:.3f} "
                  f"({seconds:.0f} s)", flush=True)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            return scored

        kept = one("plain")
        # AdaBN: reset, then a cumulative mean over one pass of the scene's tiles
        for m in _bn(model):
            m.reset_running_stats()
            m.momentum = None
        bn_train["on"] = True
        predict_store(model, store, stats)
        bn_train["on"] = False
        one("scene")
        model.load_state_dict(saved)
        for m in _bn(model):
            m.momentum = 0.1
        bn_train["on"] = True
        for px in args.tile_px:
            one(f"tile{px}", patch_size=px, overlap=px // 4, batch_size=1)
        bn_train["on"] = False
        model.load_state_dict(saved)
        return kept

    crossval.score_network_probs = score  # type: ignore[assignment]
    log = quality.OUT / f"quality-{Path(args.recipe).stem}-variants.jsonl"
    for k in args.k:
        for fold in args.folds:
            where.update(k=k, fold=fold)
            quality._run(args.recipe, [k], [fold], log, None, {"seed": args.seed}, variant)
    return 0


if __name__ == "__main__":
    sys.exit(main())
