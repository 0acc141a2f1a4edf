"""Tile-seam invariance of geomm predict on the real s2-t33uuu sample.

    .venv/bin/python bench/seams.py BUNDLE [HALO ...]

Predicts the sample with tile size 256 and 512 (snapped to the model's lattice) and as one
whole-image tile, for each halo (default 48), and prints the share of identical class pixels.
Outputs go to ``bench/out/seams/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import rasterio

from geomm.predict.scene import PredictOptions, predict_recipe
from geomm.recipe import load_recipe

OUT = Path(__file__).resolve().parent / "out" / "seams"


def _classes(bundle: str, name: str, **kw: int) -> tuple[object, object]:
    (s,) = predict_recipe(bundle, load_recipe("s2-landcover"), OUT / name,
                          options=PredictOptions(overwrite=True, **kw))
    with rasterio.open(OUT / name / "classes.tif") as src:
        return s.tile_size, src.read(1)


def main() -> None:
    bundle, halos = sys.argv[1], [int(v) for v in sys.argv[2:]] or [48]
    _, whole = _classes(bundle, "whole", tile_size=100_000, halo=0)
    for h in halos:
        maps = {t: _classes(bundle, f"h{h}-t{t}", tile_size=t, halo=h) for t in (256, 512)}
        for t, (tile, m) in maps.items():
            print(f"halo {h}: tile {t} -> {tile}: vs whole image {100 * (m == whole).mean():.2f} %")
        print(f"halo {h}: 256 vs 512: {100 * (maps[256][1] == maps[512][1]).mean():.2f} %")


if __name__ == "__main__":
    main()
