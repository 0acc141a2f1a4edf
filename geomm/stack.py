"""``geomm stack``: co-register a recipe's inputs and persist them as a tile store."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from geomm import __version__
from geomm.coregister import CoregisteredStack, coregister
from geomm.errors import LabelError
from geomm.grid import GridSpec, to_crs
from geomm.recipe import LabelSpec, Recipe, SceneInputs
from geomm.store import check_target, read_manifest, staged_store, write_manifest
from geomm.windows import tile_windows

__all__ = ["SceneSummary", "stack", "stack_scene"]


@dataclass
class SceneSummary:
    """What a stack run made (or found already made) for one scene."""

    scene: str
    """Scene id."""
    path: Path
    """Store folder."""
    manifest: dict[str, Any]
    """The store's manifest."""
    up_to_date: bool = False
    """True when the store already matched the inputs and nothing was written."""
    seconds: float = 0.0
    """Wall time of the run."""
    notes: list[str] = field(default_factory=list)
    """Label repairs and other remarks."""

    def describe(self) -> str:
        """Text summary: grid, layers (native res, warped or not), tiles, labels per class."""
        m = self.manifest
        grid = GridSpec.from_dict(m["grid"])
        state = "up to date, nothing written" if self.up_to_date else f"{self.seconds:.1f} s"
        lines = [f"scene {self.scene} -> {self.path} ({state})", f"  grid: {grid.describe()}"]
        for lyr in m["layers"]:
            how = "read as stored" if not lyr["warped"] else "warped: " + "; ".join(
                f"{b}: {r}" for b, r in lyr["warped"].items())
            lines.append(f"  {lyr['key']:<20} {len(lyr['bands'])} band(s) "
                         f"{','.join(lyr['bands'])}, {lyr['shape'][1]} x {lyr['shape'][0]} px, "
                         f"{how}")
        t = m["tiling"]
        lines.append(f"  tiles: {m['tiles']} of {t['size']} px (halo {t['halo']}), "
                     f"valid pixels {100 * m['valid_fraction']:.1f} %")
        if m.get("label_pixels"):
            total = sum(m["label_pixels"].values())
            lines.append(f"  labelled pixels: {total} "
                         f"({100 * total / max(1, grid.width * grid.height):.1f} %)")
            for name, n in m["label_pixels"].items():
                lines.append(f"    {name:<16} {n:>10}")
        if m.get("scene_labels") is not None:
            lines.append(f"  scene labels: {', '.join(m['scene_labels']) or '(none)'}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _fingerprint(recipe: Recipe, scene: SceneInputs) -> str:
    files = sorted({str(b.path) for m in scene.modalities for b in m.bands}
                   | ({scene.labels.path} if scene.labels else set()))
    stats = []
    for f in files:
        p = Path(f)
        st = p.stat() if p.exists() else None
        stats.append([f, st.st_size if st else None, st.st_mtime_ns if st else None])
    doc = {"recipe": recipe.raw, "scene": scene.id, "files": stats, "format": 1}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _labels(spec: LabelSpec, st: CoregisteredStack) -> tuple[Any, Any, list[str], Any]:
    """Return (labels DataArray or None, ClassTable, notes, scene label names or None)."""
    from geomm import labels as lab
    from geomm.classes import ClassTable

    if spec.kind == "vector":
        assert spec.class_column is not None  # checked when the recipe was parsed
        res = lab.burn_vector_labels(Path(spec.path), spec.class_column, st.grid,
                                     classes=spec.classes, tile_size=st.tile_size,
                                     ignore_value=spec.ignore_value)
    elif spec.kind == "raster":
        res = lab.burn_raster_labels(Path(spec.path), st.grid, values=spec.values,
                                     tile_size=st.tile_size, ignore_value=spec.ignore_value)
    else:
        path = Path(spec.path)
        try:
            names = json.loads(path.read_text())[spec.class_column]
        except (OSError, ValueError) as exc:
            raise LabelError(f"{path}: cannot read labels JSON ({exc})") from None
        except KeyError:
            raise LabelError(f"{path}: no key {spec.class_column!r}; set labels.key to the key "
                             "holding the list of class names") from None
        table = ClassTable.from_names(spec.classes or sorted(names), spec.colours)
        return None, table, [], [str(n) for n in names]
    if spec.colours and len(spec.colours) == len(res.classes):
        res = type(res)(res.labels, ClassTable.from_names(list(res.classes.names), spec.colours),
                        res.report)
    return res.labels, res.classes, res.report.messages(), None


def _tile_counts(valid: np.ndarray, labels: np.ndarray | None, n_classes: int) -> np.ndarray:
    out = np.zeros((1, 1, n_classes + 2), dtype=np.int64)
    out[0, 0, 0] = valid.size
    out[0, 0, 1] = int(valid.sum())
    if labels is not None:
        out[0, 0, 2:] = np.bincount(labels.ravel(), minlength=256)[:n_classes]
    return out


def stack_scene(recipe: Recipe, scene: SceneInputs, out: Path, *, workers: int | None = None,
                overwrite: bool = False) -> SceneSummary:
    """Co-register one scene of ``recipe`` and write its tile store to ``out``.

    Re-running with the same inputs is a no-op; with changed inputs it raises
    :class:`~geomm.errors.StoreError` unless ``overwrite``. Everything is validated before
    anything is written, and the store appears at ``out`` only when complete.
    """
    t0 = time.perf_counter()
    fp = _fingerprint(recipe, scene)
    if check_target(out, fp, overwrite=overwrite):
        return SceneSummary(scene.id, out, read_manifest(out) or {}, up_to_date=True)
    g = recipe.grid
    grid = (GridSpec(to_crs(g.crs), float(g.resolution or 0), g.bounds)
            if g.bounds is not None else None)
    st = coregister(scene.modalities, grid=grid, crs=None if grid else g.crs,
                    resolution=None if grid else g.resolution, reference=g.reference,
                    extent=g.extent, tile_size=recipe.tiling.size, halo=recipe.tiling.halo)
    labels, table, notes, scene_labels = (_labels(scene.labels, st) if scene.labels
                                          else (None, None, [], None))
    valid = st.combined_valid()
    n_cls = len(table) if (table is not None and labels is not None) else 0
    counts = da.map_blocks(_tile_counts, valid.data,
                           labels.data if labels is not None else None, n_cls,
                           dtype=np.int64, chunks=(1, 1, n_cls + 2), new_axis=2) \
        if labels is not None else da.map_blocks(
            _tile_counts, valid.data, None, 0, dtype=np.int64, chunks=(1, 1, 2), new_axis=2)
    with staged_store(out) as tmp:
        import xarray as xr

        zpath = tmp / "store.zarr"
        writes = [xr.Dataset({"data": lyr.data, "valid": lyr.valid}).to_zarr(
            zpath, group=key, mode="w", compute=False, consolidated=False)
            for key, lyr in st.layers.items()]
        base = {"valid": valid} | ({"labels": labels} if labels is not None else {})
        writes.append(xr.Dataset(base).to_zarr(zpath, group="base", mode="w", compute=False,
                                               consolidated=False))
        with dask.config.set(scheduler="threads", num_workers=workers):
            *_, tile_counts = dask.compute(*writes, counts)
        index = _tile_index(st, tile_counts, table if labels is not None else None,
                            scene_labels, table)
        index.to_parquet(tmp / "index.parquet")
        label_pixels = ({name: int(tile_counts[..., 2 + i].sum())
                         for i, name in enumerate(table.names)} if labels is not None else {})
        write_manifest(tmp, {
            "geomm": __version__, "recipe": recipe.name, "scene": scene.id, "fingerprint": fp,
            "grid": st.grid.to_dict(),
            "tiling": {"size": recipe.tiling.size, "halo": recipe.tiling.halo},
            "layers": [{"key": k, "modality": lyr.modality, "factor": lyr.factor,
                        "resolution": lyr.data.attrs["resolution"],
                        "bands": [str(b) for b in lyr.data.band.values],
                        "dtype": str(lyr.data.dtype), "shape": list(lyr.data.shape[1:]),
                        "nodata": lyr.data.attrs["nodata"], "scale": lyr.data.attrs["scale"],
                        "offset": lyr.data.attrs["offset"], "warped": lyr.warped}
                       for k, lyr in st.layers.items()],
            "classes": table.to_dict() if table is not None else None,
            "label_kind": scene.labels.kind if scene.labels else None,
            "scene_labels": scene_labels,
            "tiles": len(index), "valid_fraction": float(tile_counts[..., 1].sum()
                                                         / max(1, tile_counts[..., 0].sum())),
            "label_pixels": label_pixels, "notes": notes,
        })
    return SceneSummary(scene.id, out, read_manifest(out) or {},
                        seconds=time.perf_counter() - t0, notes=notes)


def _tile_index(st: CoregisteredStack, counts: np.ndarray, pixel_table: Any,
                scene_labels: list[str] | None, table: Any) -> Any:
    import geopandas as gpd
    from shapely.geometry import box

    rows = []
    tr = st.grid.transform
    for w in tile_windows(*st.grid.shape, st.tile_size):
        c = counts[w.row, w.col]
        row: dict[str, Any] = {"tile_id": w.id, "row": w.row, "col": w.col,
                               "row0": w.row0, "col0": w.col0, "height": w.core_shape[0],
                               "width": w.core_shape[1], "geometry": box(*w.bounds(tr)),
                               "valid_fraction": float(c[1] / c[0])}
        if pixel_table is not None:
            row["labelled_fraction"] = float(c[2:].sum() / c[0])
            for i, name in enumerate(pixel_table.names):
                row[f"frac_{name}"] = float(c[2 + i] / c[0])
        if scene_labels is not None:
            for name in table.names:
                row[f"has_{name}"] = name in scene_labels
        rows.append(row)
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=st.grid.crs)


def stack(recipe: Recipe, *, out: Path | None = None, workers: int | None = None,
          overwrite: bool = False) -> list[SceneSummary]:
    """Build the tile store(s) of ``recipe``: ``out`` (default ``tiles/<name>``), one
    sub-folder per scene for multi-scene recipes."""
    base = Path(out) if out is not None else Path("tiles") / recipe.name
    scenes = recipe.scene_inputs()
    if len(scenes) == 1 and not recipe.scenes:
        return [stack_scene(recipe, scenes[0], base, workers=workers, overwrite=overwrite)]
    return [stack_scene(recipe, s, base / s.id, workers=workers, overwrite=overwrite)
            for s in scenes]
