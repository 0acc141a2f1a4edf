"""Multi-resolution inference "the way a TorchGeo user would do it today" (torchgeo 0.8.1).

One ``RasterDataset`` per modality (one single-band file per band, ``separate_files``), all
opened at the base resolution, so TorchGeo resamples every 20/60 m band onto the 10 m grid
(bilinear: the dataset's dtype is float32); ``ds1 & ds2 & ...`` concatenates the modalities'
channels; a ``GridGeoSampler`` + ``DataLoader(collate_fn=stack_samples)`` yields the tiles.
Each batch is split back into the model's layers, coarse layers are average-pooled back to
their native resolution, normalised and fed to ``MultiBranchNet`` (softmax + argmax, nothing
written or stitched). Measured: wall time of the whole loop after a one-batch warm-up (tile
and scene Mpx/s) and, separately, of the DataLoader alone (tile Mpx/s).
"""

from __future__ import annotations

import functools
import itertools
import operator
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchgeo.datasets import GeoDataset, RasterDataset, stack_samples
from torchgeo.samplers import GridGeoSampler, Units


def modality_dataset(name: str, bands: list[list[Any]], res: float) -> RasterDataset:
    """A RasterDataset over one modality's band files (``[[band, path, res], ...]``)."""
    names = tuple(b for b, _, _ in bands)
    cls = type(f"{name.title()}Dataset", (RasterDataset,), {
        "filename_glob": Path(bands[0][1]).name,  # one file per scene, like Sentinel2's glob
        "filename_regex": r"^(?P<band>.+)\.tif$", "separate_files": True,
        "all_bands": names, "is_image": True})
    return cls(paths=str(Path(bands[0][1]).parent), res=res, bands=names)


def build_dataset(doc: dict, layers: list[dict]) -> tuple[GeoDataset, dict[str, list[int]], float]:
    """``ds1 & ds2 & ...`` over the layers' modalities; channel indexes of each layer; base res."""
    res = min(r for bands in doc["modalities"].values() for _, _, r in bands)
    used = [m for m in doc["modalities"] if any(la["modality"] == m for la in layers)]
    datasets = [modality_dataset(m, doc["modalities"][m], res) for m in used]
    offset, chan_of = 0, {}
    for m in used:  # IntersectionDataset torch.cat's the images in dataset order
        for i, (band, _, _) in enumerate(doc["modalities"][m]):
            chan_of[(m, band)] = offset + i
        offset += len(doc["modalities"][m])
    chans = {la["key"]: [chan_of[(la["modality"], b)] for b in la["bands"]] for la in layers}
    return functools.reduce(operator.and_, datasets), chans, res


def pooled_layers(image: torch.Tensor, layers: list[dict], chans: dict[str, list[int]]
                  ) -> dict[str, torch.Tensor]:
    """Split a (B, C, T, T) batch into raw layers at their native resolution (avg-pooled)."""
    out = {}
    for la in layers:
        x = image[:, chans[la["key"]]]
        out[la["key"]] = F.avg_pool2d(x, la["factor"]) if la["factor"] > 1 else x
    return out


def torchgeo_way(doc: dict, model: torch.nn.Module, layers: list[dict],
                 norm: dict[str, tuple[np.ndarray, np.ndarray]], *, tile: int, stride: int,
                 batch_size: int, num_workers: int = 0, channels_last: bool = False,
                 max_batches: int | None = None) -> dict:
    """Run the model over the scene through torchgeo's datasets/sampler; return throughput.

    ``scene_px`` is the dataset extent (H x W at the base res); ``scene_mpx_s`` counts the
    fraction of it that the timed tiles stand for (all of it unless ``max_batches`` cuts).
    """
    dataset, chans, res = build_dataset(doc, layers)
    sampler = GridGeoSampler(dataset, size=tile, stride=stride, units=Units.PIXELS)
    loader = DataLoader(dataset, sampler=sampler, batch_size=batch_size,
                        collate_fn=stack_samples, num_workers=num_workers)
    device = next(model.parameters()).device
    model.eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    stats = {k: (torch.as_tensor(np.asarray(m, np.float32)).view(1, -1, 1, 1).to(device),
                 torch.as_tensor(np.asarray(s, np.float32)).view(1, -1, 1, 1).to(device))
             for k, (m, s) in norm.items()}

    def infer(batch: dict[str, Any]) -> torch.Tensor:
        inputs = {}
        for key, raw in pooled_layers(batch["image"].to(device), layers, chans).items():
            mean, std = stats[key]
            x = ((raw - mean) / std).masked_fill((raw == 0).any(1, keepdim=True), 0.0)
            inputs[key] = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        probs = torch.softmax(model(inputs), dim=1)
        return probs.argmax(dim=1)

    def batches() -> Iterator[dict[str, Any]]:
        return itertools.islice(loader, max_batches)  # islice(None) = the whole loader

    with torch.inference_mode():
        infer(next(iter(loader)))  # warm-up, not counted
        t0, tiles = time.perf_counter(), 0
        for batch in batches():
            infer(batch)
            tiles += batch["image"].shape[0]
        seconds = time.perf_counter() - t0
    t0, loaded = time.perf_counter(), 0
    for batch in batches():
        loaded += batch["image"].shape[0]
    loader_s = time.perf_counter() - t0
    x, y, _ = dataset.bounds
    scene_px = round((x.stop - x.start) / res) * round((y.stop - y.start) / res)
    tile_px = tiles * tile * tile
    return {"seconds": seconds, "tiles": tiles, "tile_px": tile_px, "scene_px": scene_px,
            "tile_mpx_s": tile_px / seconds / 1e6,
            "scene_mpx_s": scene_px * tiles / len(sampler) / seconds / 1e6,
            "loader_only_mpx_s": loaded * tile * tile / loader_s / 1e6}


def scene_layers(doc: dict) -> list[dict]:
    """geomm-style layers of a scene: one per (modality, resolution), bands in file order."""
    base = min(r for bands in doc["modalities"].values() for _, _, r in bands)
    out: dict[str, dict] = {}
    for m, bands in doc["modalities"].items():
        for band, _, r in bands:
            la = out.setdefault(f"{m}/{int(r)}m", {"key": f"{m}/{int(r)}m", "modality": m,
                                                   "bands": [], "factor": int(r // base)})
            la["bands"].append(band)
    return list(out.values())


def _self_test() -> None:
    import json
    import sys

    import rasterio
    from rasterio.windows import from_bounds

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _scene

    from geomm.model.network import LayerSpec, ModelConfig, MultiBranchNet

    torch.set_num_threads(2)
    doc, tile, stride = _scene.scene(1), 258, 258 - 2 * 24
    layers = scene_layers(doc)
    paths = {(m, b): (p, r) for m, bands in doc["modalities"].items() for b, p, r in bands}
    dataset, chans, res = build_dataset(doc, layers)
    sampler = GridGeoSampler(dataset, size=tile, stride=stride, units=Units.PIXELS)
    (x, y, _), (h, w) = dataset.bounds, doc["shape"]
    offs = [(round((y.stop - q[1].stop) / res), round((q[0].start - x.start) / res))
            for q in sampler]
    rows, cols = sorted({r for r, _ in offs}), sorted({c for _, c in offs})
    print(f"scene {h}x{w}, crs {dataset.crs.to_epsg()}, res {dataset.res}; GridGeoSampler: "
          f"{len(sampler)} tiles = {len(rows)} rows x {len(cols)} cols; first tile at "
          f"(row, col) = {offs[0]}, last at {offs[-1]}; row offsets {rows}, col offsets {cols}"
          f"; overhang past the scene: {max(0, -min(rows))} px north, "
          f"{max(0, max(rows) + tile - h)} px south, {max(0, -min(cols))} px west, "
          f"{max(0, max(cols) + tile - w)} px east")
    norm: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for la in layers:
        arrs = []
        for b in la["bands"]:
            with rasterio.open(paths[(la["modality"], b)][0]) as src:
                a = src.read(1).astype(np.float64)
            arrs.append(a[a != 0])
        norm[la["key"]] = (np.array([a.mean() for a in arrs]), np.array([a.std() for a in arrs]))
    for label, i in (("interior", len(cols) + 1), ("north-east edge", len(sampler) - 1)):
        q = list(sampler)[i]
        got = pooled_layers(dataset[q]["image"][None], layers, chans)
        for la in layers:
            ref = []
            for b in la["bands"]:
                p, _ = paths[(la["modality"], b)]
                with rasterio.open(p) as src:
                    win = from_bounds(q[0].start, q[1].start, q[0].stop, q[1].stop, src.transform)
                    ref.append(src.read(1, window=win.round_offsets().round_lengths(),
                                        boundless=True, fill_value=0).astype(np.float32))
            d = (got[la["key"]][0] - torch.from_numpy(np.stack(ref))).abs()
            rel = (d / torch.as_tensor(norm[la["key"]][1], dtype=torch.float32)[:, None, None])
            print(f"{label:16s} tile {offs[i]}: {la['key']:18s} {tuple(d.shape)} max|diff| "
                  f"{d.max().item():8.2f} DN  mean {d.mean().item():6.2f} DN  "
                  f"(max {rel.max().item():.3f} std)")
    torch.manual_seed(0)
    model = MultiBranchNet(ModelConfig(layers=tuple(
        LayerSpec(la["key"], la["modality"], len(la["bands"]), la["factor"], tuple(la["bands"]))
        for la in layers), num_classes=8))
    out = torchgeo_way(doc, model, layers, norm, tile=tile, stride=stride, batch_size=4)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}))


if __name__ == "__main__":
    _self_test()
