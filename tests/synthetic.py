"""Synthetic test data shared by test modules: rasters on a UTM grid and tiny CNN bundles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import Affine

from geomm.classes import ClassTable
from geomm.model.bundle import BundleMeta, save_bundle
from geomm.model.members import MemberMean
from geomm.model.network import LayerSpec, ModelConfig, MultiBranchNet
from geomm.model.normstats import LayerStats, NormStats

H, W = 204, 276  # base pixels at 10 m; a multiple of 2 for the 20 m layer
X0, Y0 = 600000.0, 5700000.0
NAMES = ("crop", "forest", "water")


def write_band(path: Path, arr: np.ndarray, res: float, nodata: float | None = None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[-1], height=arr.shape[-2],
                       count=1, dtype=arr.dtype, crs="EPSG:32633", nodata=nodata,
                       transform=Affine(res, 0, X0, 0, -res, Y0)) as dst:
        dst.write(arr[None] if arr.ndim == 2 else arr)
    return path


LAYERS = [{"key": "optical/10m", "modality": "optical", "bands": ["A", "B"], "resolution": 10,
           "factor": 1, "dtype": "uint16"},
          {"key": "radar/20m", "modality": "radar", "bands": ["VV"], "resolution": 20,
           "factor": 2, "dtype": "float32"}]


def cnn_bundle(path: Path, *, dropout: float = 0.0, seed: int = 0,
               temperature: float | None = None, members: int = 1) -> Path:
    """A random network's bundle; ``members`` > 1: the mean of the networks of seeds
    ``seed``, ``seed + 1``, ... (each the network of a one-member bundle of that seed)."""
    cfg = ModelConfig(layers=(LayerSpec("optical/10m", "optical", 2, 1, ("A", "B")),
                              LayerSpec("radar/20m", "radar", 1, 2, ("VV",))),
                      num_classes=3, width=8, modality_dropout=dropout)
    nets = []
    for i in range(members):
        torch.manual_seed(seed + i)
        nets.append(MultiBranchNet(cfg))
    model = nets[0] if members == 1 else MemberMean(nets)
    cfg = model.config
    stats = NormStats((LayerStats("optical/10m", ("A", "B"), (1000.0, 900.0), (400.0, 350.0), 1),
                       LayerStats("radar/20m", ("VV",), (0.3,), (0.15,), 1)))
    meta = BundleMeta("synthetic", LAYERS, ClassTable.from_names(NAMES).to_dict(),
                      normalisation=stats.to_dict(),
                      config={"model": cfg.to_dict(), "training": {},
                              **({"calibration": {"temperature": temperature}}
                                 if temperature is not None else {})})
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return save_bundle(path, kind="cnn", tensors=tensors, meta=meta)




def write_scene(root: Path, h: int = H, w: int = W) -> dict[str, Path]:
    """Smooth synthetic bands: A and B at 10 m (optical), VV at 20 m (radar)."""
    root.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a = (1000 + 600 * np.sin(x / 17) * np.cos(y / 23)).astype(np.uint16)
    b = (900 + 500 * np.cos((x + y) / 29)).astype(np.uint16)
    yy, xx = np.mgrid[0:h // 2, 0:w // 2].astype(np.float32)
    r = (0.3 + 0.2 * np.sin(xx / 9 + yy / 13)).astype(np.float32)
    return {"a": write_band(root / "A.tif", a, 10), "b": write_band(root / "B.tif", b, 10),
            "r": write_band(root / "VV.tif", r, 20)}


def write_recipe(folder: Path) -> Path:
    """A recipe for :func:`write_scene`'s files in ``folder`` (no labels)."""
    path = folder / "recipe.yaml"
    path.write_text("name: synthetic\ndata_root: .\nmodalities:\n"
                    "  optical:\n    file: '{band}.tif'\n    bands: [A, B]\n"
                    "  radar:\n    file: '{band}.tif'\n    bands: [VV]\n")
    return path
