"""Benchmark scenes: the real s2-t33uuu sample, mirror-tiled N x N, as tiled DEFLATE GeoTIFFs.

Every band is tiled the same way (10, 20 and 60 m alike), so the bands stay aligned; the
origin and CRS are the sample's. A scene is written once under
``$GEOMM_CACHE/bench/scene-NxN/`` and reused; ``scene.json`` is written last and marks it
complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import rasterio

from geomm import sampledata
from geomm._cache import cache_dir

SAMPLE = "s2-t33uuu"
BLOCK = 256


def mirror_tile(a: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Tile ``a`` ny x nx times, flipping every other copy so that edges meet seamlessly."""
    rows = []
    for i in range(ny):
        r = a[::-1] if i % 2 else a
        rows.append(np.concatenate([r[:, ::-1] if j % 2 else r for j in range(nx)], axis=1))
    return np.concatenate(rows, axis=0)


def _write_band(src_path: Path, dst: Path, n: int) -> tuple[int, int]:
    with rasterio.open(src_path) as src:
        arr = mirror_tile(src.read(1), n, n)
        profile = {
            "driver": "GTiff", "dtype": arr.dtype.name, "count": 1,
            "height": arr.shape[0], "width": arr.shape[1], "crs": src.crs,
            "transform": src.transform, "tiled": True, "blockxsize": BLOCK,
            "blockysize": BLOCK, "compress": "deflate", "predictor": 2,
            "num_threads": 2,  # compression only: scene building is not what is timed
        }
    tmp = dst.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as out:
        out.write(arr, 1)
    os.replace(tmp, dst)
    return arr.shape


def scene(n: int) -> dict:
    """Return the n x n scene's manifest (building it first if needed).

    The manifest: ``{"dir", "n", "shape" (10 m height, width), "modalities": {name: [[band,
    path, resolution], ...]}}``.
    """
    root = cache_dir() / "bench" / f"scene-{n}x{n}"
    manifest = root / "scene.json"
    if manifest.exists():
        return json.loads(manifest.read_text())
    root.mkdir(parents=True, exist_ok=True)
    sample = sampledata.fetch(SAMPLE)
    mods: dict[str, list] = {}
    shape = None
    for mod in sample.scene.modalities.values():
        for band in mod.bands:
            dst = root / f"{band.name}.tif"
            hw = _write_band(band.path, dst, n)
            if band.resolution == 10:
                shape = hw
            mods.setdefault(mod.name, []).append([band.name, str(dst), band.resolution])
    doc = {"dir": str(root), "n": n, "shape": list(shape or ()), "modalities": mods}
    manifest.write_text(json.dumps(doc, indent=1))
    return doc


def modality_specs(doc: dict, only: tuple[str, ...] | None = None) -> list:
    """geomm ``ModalitySpec`` objects for the scene's modalities (all, or ``only``)."""
    from geomm.modality import BandSpec, ModalitySpec

    return [ModalitySpec(name, tuple(BandSpec(Path(p), b) for b, p, _ in bands))
            for name, bands in doc["modalities"].items() if only is None or name in only]


def band_paths(doc: dict, only: tuple[str, ...] | None = None) -> list[str]:
    """Paths of the scene's band files, in modality order."""
    return [p for name, bands in doc["modalities"].items() if only is None or name in only
            for _, p, _ in bands]


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:] or ["4"]:
        d = scene(int(arg))
        print(d["dir"], d["shape"])
