"""``geomm stack``: co-register a recipe's inputs and persist them as a tile store.

Every scene of the recipe is planned first (files opened, grid chosen, labels checked), so bad
input fails before anything is written; then each scene is written into a staged folder that
replaces its target only when complete.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from geomm._files import file_stamp
from geomm._lock import output_locks
from geomm._remote import as_path
from geomm._version import __version__
from geomm.classes import ClassTable
from geomm.errors import GridError
from geomm.recipe import LabelSpec, Recipe, SceneInputs
from geomm.stack.coregister import CoregisteredStack, coregister_request
from geomm.stack.grid import GridSpec
from geomm.stack.store import (
    check_target,
    read_manifest,
    staged_store,
    tidy_store,
    write_manifest,
)
from geomm.stack.windows import tile_windows

__all__ = ["SceneSummary", "stack"]


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

    def describe(self) -> str:
        """Text summary: grid, layers (native res, warped or not), tiles, labels per class."""
        m = self.manifest
        grid = GridSpec.from_dict(m["grid"])
        state = "up to date, nothing written" if self.up_to_date else f"{self.seconds:.1f} s"
        lines = [f"scene {self.scene} -> {self.path} ({state})", f"  grid: {grid.describe()}"]
        for lyr in m["layers"]:
            how = "read as stored" if not lyr["warped"] else "warped: " + "; ".join(
                f"{b}: {r}" for b, r in lyr["warped"].items())
            cover = lyr.get("valid_fraction", 1.0)
            lines.append(f"  {lyr['key']:<20} {len(lyr['bands'])} band(s) "
                         f"{','.join(lyr['bands'])}, {lyr['shape'][1]} x {lyr['shape'][0]} px, "
                         f"{how}" + (f", data on {100 * cover:.1f} %" if cover < 0.999 else ""))
        t = m["tiling"]
        lines.append(f"  tiles: {m['tiles']} of {t['size']} px (halo {t['halo']}), "
                     f"valid pixels {100 * m['valid_fraction']:.1f} %")
        if m.get("label_pixels"):
            total = sum(m["label_pixels"].values())
            lines.append(f"  labelled pixels: {total} "
                         f"({100 * total / max(1, grid.width * grid.height):.1f} %)")
            lines += [f"    {name:<16} {n:>10}" for name, n in m["label_pixels"].items()]
        if m.get("scene_labels") is not None:
            lines.append(f"  scene labels: {'; '.join(m['scene_labels']) or '(none)'}")
        lines += [f"  note: {n}" for n in m.get("notes", [])]
        return "\n".join(lines)


@dataclass
class _Plan:
    """A scene ready to write: lazy arrays, labels and what goes into the manifest."""

    recipe: Recipe
    scene: SceneInputs
    out: Path
    fingerprint: str
    st: CoregisteredStack
    labels: xr.DataArray | None = None
    table: ClassTable | None = None
    scene_labels: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def _fingerprint(recipe: Recipe, scene: SceneInputs) -> str:
    files = sorted({str(b.path) for m in scene.modalities for b in m.bands}
                   | ({scene.labels.path} if scene.labels else set()))
    stats = [[f, *file_stamp(f)[1:]] for f in files]
    doc = {"recipe": recipe.raw, "scene": scene.id, "files": stats, "format": 1}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _plan(recipe: Recipe, scene: SceneInputs, out: Path, overwrite: bool) -> _Plan | SceneSummary:
    fp = _fingerprint(recipe, scene)
    if check_target(out, fp, overwrite=overwrite):
        return SceneSummary(scene.id, out, read_manifest(out) or {}, up_to_date=True)
    st = coregister_request(scene.modalities, recipe.grid, tile_size=recipe.tiling.size,
                            halo=recipe.tiling.halo)
    plan = _Plan(recipe, scene, out, fp, st)
    if scene.labels is not None:
        _add_labels(plan, scene.labels)
    return plan


def _add_labels(plan: _Plan, spec: LabelSpec) -> None:
    from geomm.stack import labels as lab
    st = plan.st
    if spec.kind == "json-multilabel":
        assert spec.class_column is not None  # checked when the recipe was parsed
        plan.scene_labels, plan.table = lab.read_scene_labels(
            spec.path, spec.class_column, classes=spec.classes, colours=spec.colours)
        return
    if spec.kind == "vector":
        assert spec.class_column is not None
        res = lab.burn_vector_labels(as_path(spec.path), spec.class_column, st.grid,
                                     classes=spec.classes, tile_size=st.chunk_size,
                                     ignore_value=spec.ignore_value, layer=spec.layer)
    else:
        res = lab.burn_raster_labels(as_path(spec.path), st.grid, values=spec.values,
                                     tile_size=st.chunk_size, ignore_value=spec.ignore_value)
    plan.labels, plan.table, plan.notes = res.labels, res.classes, res.report.messages()
    if spec.colours:
        plan.table = ClassTable.from_names(res.classes.names, spec.colours,
                                           ignore_value=spec.ignore_value)


def _tile_counts(valid: np.ndarray, labels: np.ndarray, tile: int, n_classes: int
                 ) -> np.ndarray:
    """Per tile of a chunk: [pixels, valid pixels, pixels of class 0..K-1, pixels of class
    0..K-1 where some layer has no data]."""
    ny, nx = -(-valid.shape[0] // tile), -(-valid.shape[1] // tile)
    out = np.zeros((ny, nx, 2 * n_classes + 2), dtype=np.int64)
    for i in range(ny):
        for j in range(nx):
            sl = (slice(i * tile, (i + 1) * tile), slice(j * tile, (j + 1) * tile))
            out[i, j, 0] = valid[sl].size
            out[i, j, 1] = int(valid[sl].sum())
            if n_classes:
                out[i, j, 2:2 + n_classes] = np.bincount(labels[sl].ravel(),
                                                         minlength=256)[:n_classes]
                out[i, j, 2 + n_classes:] = np.bincount(labels[sl][~valid[sl]].ravel(),
                                                        minlength=256)[:n_classes]
    return out


def _write(plan: _Plan, workers: int | None) -> SceneSummary:
    t0 = time.perf_counter()
    st = plan.st
    valid = st.combined_valid()
    pixel_labels = plan.labels is not None and plan.table is not None
    n_cls = len(plan.table) if pixel_labels and plan.table is not None else 0
    labels = plan.labels.data if plan.labels is not None else da.zeros_like(valid.data, np.uint8)
    tile = st.tile_size
    counts = da.map_blocks(_tile_counts, valid.data, labels, tile, n_cls, dtype=np.int64,
                           chunks=(*(tuple(-(-c // tile) for c in ch) for ch in valid.data.chunks),
                                   (2 * n_cls + 2,)), new_axis=2)
    layer_valid = {key: lyr.valid.data.mean() for key, lyr in st.layers.items()}
    with staged_store(plan.out) as tmp:
        zpath = tmp / "store.zarr"
        writes = [_to_zarr({"data": lyr.data, "valid": lyr.valid}, zpath, key, tile // lyr.factor)
                  for key, lyr in st.layers.items()]
        base = {"valid": valid} | ({"labels": plan.labels} if plan.labels is not None else {})
        writes.append(_to_zarr(base, zpath, "base", tile))
        with dask.config.set(scheduler="threads", num_workers=workers):
            *_, tile_counts, layer_valid = dask.compute(*writes, counts, layer_valid)
        _check_has_data(plan, layer_valid)  # raised here, the work folder goes: no store
        index = _tile_index(plan, tile_counts, n_cls)
        index.to_parquet(tmp / "index.parquet")
        write_manifest(tmp, _manifest(plan, tile_counts, n_cls, len(index), layer_valid))
    return SceneSummary(plan.scene.id, plan.out, read_manifest(plan.out) or {},
                        seconds=time.perf_counter() - t0)


def _check_has_data(plan: _Plan, layer_valid: dict[str, float]) -> None:
    """Refuse layers without one valid pixel (all nodata, all NaN, or undecodable data)."""
    for key, frac in layer_valid.items():
        if float(frac) <= 0:
            files = sorted({p.name for p in plan.st.layers[key].files})
            raise GridError(f"layer {key}{' (' + ', '.join(files) + ')' if files else ''} has "
                            "no valid pixel in the scene: every value is nodata or NaN (or the "
                            "file could not be decoded); check the files and the recipe's "
                            "`nodata`")


def _to_zarr(variables: dict[str, xr.DataArray], path: Path, group: str, chunk: int) -> Any:
    """Lazy write of one group; Zarr chunks are one tile, whatever the dask chunks.

    CF conventions: every variable names ``spatial_ref`` (the CRS as WKT and the group's
    GeoTransform) as its ``grid_mapping`` and as a coordinate, so ``xr.open_zarr`` gives it
    back as a coordinate and ``.rio.crs`` / ``.rio.transform()`` work without help."""
    ds = xr.Dataset(variables)
    enc = {name: {"chunks": (*v.shape[:-2], chunk, chunk)} for name, v in ds.data_vars.items()}
    if "spatial_ref" in ds.coords:
        for var in ds.data_vars.values():
            var.variable.encoding.pop("grid_mapping", None)
            var.attrs["grid_mapping"] = "spatial_ref"
            var.variable.encoding["coordinates"] = "spatial_ref"
    return ds.to_zarr(path, group=group, mode="w", compute=False, consolidated=False,
                      encoding=enc)


def _manifest(plan: _Plan, counts: np.ndarray, n_cls: int, n_tiles: int,
              layer_valid: dict[str, float]) -> dict[str, Any]:
    st, table = plan.st, plan.table
    lost = ({name: int(counts[..., 2 + n_cls + i].sum()) for i, name in enumerate(table.names)}
            if n_cls and table else {})
    return {
        "geomm": __version__, "recipe": plan.recipe.name, "scene": plan.scene.id,
        "fingerprint": plan.fingerprint, "grid": st.grid.to_dict(),
        "tiling": {"size": plan.recipe.tiling.size, "halo": plan.recipe.tiling.halo},
        "layers": [{"key": k, "modality": lyr.modality, "factor": lyr.factor,
                    "resolution": lyr.data.attrs["resolution"],
                    "bands": [str(b) for b in lyr.data.band.values],
                    "files": [str(p) for p in lyr.files],
                    "dtype": str(lyr.data.dtype), "shape": list(lyr.data.shape[1:]),
                    "nodata": lyr.data.attrs["nodata"], "scale": lyr.data.attrs["scale"],
                    "offset": lyr.data.attrs["offset"], "warped": lyr.warped,
                    "valid_fraction": float(layer_valid[k])}
                   for k, lyr in st.layers.items()],
        "classes": table.to_dict() if table is not None else None,
        "label_kind": plan.scene.labels.kind if plan.scene.labels else None,
        "scene_labels": plan.scene_labels, "tiles": n_tiles,
        "valid_fraction": float(counts[..., 1].sum() / max(1, counts[..., 0].sum())),
        "label_pixels": ({name: int(counts[..., 2 + i].sum())
                          for i, name in enumerate(table.names)} if n_cls and table else {}),
        "label_pixels_without_data": lost,
        "notes": plan.notes + _lost_notes(lost, layer_valid, counts[..., 2:2 + n_cls].sum(
            axis=(0, 1)) if n_cls else None),
    }


def _lost_notes(lost: dict[str, int], layer_valid: dict[str, float],
                labelled: np.ndarray | None) -> list[str]:
    """Say which labelled pixels no model can use (some layer has no data there) and why."""
    if labelled is None or not any(lost.values()):
        return []
    short = sorted((v, k) for k, v in layer_valid.items() if v < 0.999)
    why = ("; layers with the least data: " + ", ".join(
        f"{k} {100 * v:.1f} % of the grid" for v, k in short[:3])) if short else ""
    per = ", ".join(f"{name} {n} of {int(total)} ({100 * n / max(1, total):.0f} %)"
                    for (name, n), total in zip(lost.items(), labelled, strict=True) if n)
    return [f"labelled pixels without data in some layer (not used for training): "
            f"{per}{why}"]


def _tile_index(plan: _Plan, counts: np.ndarray, n_cls: int) -> Any:
    import geopandas as gpd
    from shapely.geometry import box

    st, table = plan.st, plan.table
    rows = []
    for w in tile_windows(*st.grid.shape, st.tile_size):
        c = counts[w.row, w.col]
        row: dict[str, Any] = {"tile_id": w.id, "row": w.row, "col": w.col,
                               "row0": w.row0, "col0": w.col0, "height": w.core_shape[0],
                               "width": w.core_shape[1],
                               "geometry": box(*w.bounds(st.grid.transform)),
                               "valid_fraction": float(c[1] / c[0])}
        if n_cls and table is not None:
            row["labelled_fraction"] = float(c[2:2 + n_cls].sum() / c[0])
            row.update({f"frac_{name}": float(c[2 + i] / c[0])
                        for i, name in enumerate(table.names)})
        if plan.scene_labels is not None and table is not None:
            row.update({f"has_{name}": name in plan.scene_labels for name in table.names})
        rows.append(row)
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=st.grid.crs)


def stack(recipe: Recipe, *, out: Path | None = None, workers: int | None = None,
          overwrite: bool = False, echo: Callable[[str], object] | None = None
          ) -> list[SceneSummary]:
    """Build the tile store(s) of ``recipe``.

    Args:
        recipe: a loaded recipe (:func:`geomm.recipe.load_recipe`); its STAC modalities are
            searched and composited first (:func:`geomm.sources.resolve`, the plan said
            through ``echo``).
        out: store folder (default ``tiles/<name>``); multi-scene recipes get one
            sub-folder per scene.
        workers: dask threads (default: all cores).
        overwrite: replace stores made from other inputs (never anything else).
        echo: receives the STAC plan (recipes with ``stac:`` modalities).

    Returns:
        One summary per scene. A scene whose store matches its inputs is not rewritten.

    Raises:
        GeommError: any bad input, found before anything is written.
    """
    from geomm.sources import resolve

    recipe = resolve(recipe, workers=workers, echo=echo)
    base = Path(out) if out is not None else Path("tiles") / recipe.name
    scenes = recipe.scene_inputs()
    single = len(scenes) == 1 and not recipe.scenes
    targets = [base if single else base / s.id for s in scenes]
    with output_locks(targets, "geomm stack"):  # one writer per store, from the check on
        for t in targets:
            tidy_store(t)
        plans = [_plan(recipe, s, t, overwrite) for s, t in zip(scenes, targets, strict=True)]
        return [p if isinstance(p, SceneSummary) else _write(p, workers) for p in plans]
