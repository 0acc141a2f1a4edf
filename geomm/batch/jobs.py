"""What a batch job is: blocks (whole scenes, or pieces of one large scene) and their keys.

A block's key is a hash of everything its outputs depend on (geomm version, the bundle's
files, the prediction options, the block's place, and each input file's size and mtime), so a
rerun recomputes exactly the blocks whose key changed.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from geomm._files import file_stamp, sha256_file
from geomm._version import __version__
from geomm.errors import GeommError, GeommWarning
from geomm.modality import ModalitySpec
from geomm.predict._region import Region

__all__ = ["BatchJobError", "Block", "Job", "area_job", "grid_job", "recipe_job", "scenes_job"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_IGNORED_OPTIONS = ("progress", "overwrite")


class BatchJobError(GeommError, ValueError):
    """The job's scenes or grid cannot be read."""


@dataclass(frozen=True)
class Block:
    """One task of a job: a scene, or a region of the job's scene."""

    id: str
    """Unique name (file-system safe): the scene id, or the block's row/col or feature."""
    modalities: tuple[ModalitySpec, ...] = ()
    """Inputs (recipe scenes and grid jobs)."""
    files: tuple[tuple[str, str], ...] = ()
    """Or (modality, file) pairs in the bundle's band order (``--scenes`` jobs): opened by
    the worker, so a broken file fails its own block only."""
    region: Region | None = None
    """Rows/cols of the scene's grid (grid jobs); None: the whole scene."""

    def paths(self) -> list[Path]:
        """Every input file of the block."""
        if self.files:
            return [Path(p) for _, p in self.files]
        return list(dict.fromkeys(Path(b.path) for m in self.modalities for b in m.bands))


@dataclass(frozen=True)
class Job:
    """Blocks to predict with one bundle, and how their outputs come together."""

    blocks: tuple[Block, ...]
    grid: Any
    """The recipe's :class:`~geomm.recipe.GridRequest` (every block is co-registered so)."""
    mosaic: Any = None
    """Grid jobs: the scene's :class:`~geomm.stack.grid.GridSpec`, which the blocks are mosaicked
    into; None: every block is a scene with outputs of its own."""

    def inputs(self) -> dict[str, list[tuple[str, int | None, int | None]]]:
        """Block id -> its input files as ``[path, size, mtime_ns]`` (None when missing)."""
        return {b.id: [file_stamp(p) for p in b.paths()] for b in self.blocks}

    def keys(self, bundle: Path, options: Any) -> dict[str, str]:
        """Block id -> key (see the module docstring)."""
        opts = {k: v for k, v in asdict(options).items() if k not in _IGNORED_OPTIONS}
        common = {"geomm": __version__, "bundle": _bundle_id(bundle), "options": opts,
                  "grid": _jsonable(self.grid)}
        out = {}
        for b in self.blocks:
            doc = {**common, "block": b.id, "region": asdict(b.region) if b.region else None,
                   "inputs": [file_stamp(p) for p in b.paths()],
                   "bands": [_jsonable(m) for m in b.modalities], "files": b.files}
            out[b.id] = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str)
                                       .encode()).hexdigest()
        return out


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(asdict(v) if hasattr(v, "__dataclass_fields__") else v,
                                 default=str))


def _bundle_id(bundle: Path) -> list[Any]:
    return [[*file_stamp(p)[1:], sha256_file(p) if p.name == "bundle.json" else None]
            for p in sorted(bundle.iterdir()) if p.is_file()]


def _check_ids(blocks: Sequence[Block], where: str) -> tuple[Block, ...]:
    seen: set[str] = set()
    for b in blocks:
        if not _ID.match(b.id):
            raise BatchJobError(f"{where}: scene id {b.id!r} is not usable as a folder name; "
                                "use letters, digits, '.', '_' and '-'")
        if b.id in seen:
            raise BatchJobError(f"{where}: scene id {b.id!r} appears twice; ids must be unique")
        seen.add(b.id)
    return tuple(blocks)


def recipe_job(recipe: Any) -> Job:
    """Every scene of a recipe, a block each (STAC modalities composited first)."""
    from geomm.sources import resolve

    scenes = resolve(recipe).scene_inputs()
    blocks = [Block(s.id, modalities=tuple(s.modalities)) for s in scenes]
    return Job(_check_ids(blocks, recipe.name), recipe.grid)


def scenes_job(recipe: Any, path: str | Path) -> Job:
    """Scenes listed in a YAML file, a block each::

        scenes:
          - id: t33uuu-2017-02
            modalities:
              visible: [B04.jp2, B03.jp2, B02.jp2]   # the bundle's band order
              infrared: stack_ir.tif                   # or one multi-band file

    Relative paths are relative to the file. The recipe supplies the grid settings.

    Raises:
        BatchJobError: unreadable file, a missing or misspelled key, a duplicate id.
    """
    import yaml

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise BatchJobError(f"{p}: cannot read the scenes file ({e})") from None
    scenes = doc.get("scenes") if isinstance(doc, dict) else None
    if not isinstance(scenes, list) or not scenes:
        raise BatchJobError(f"{p}: needs a non-empty list under 'scenes:' (each with 'id' and "
                            "'modalities: {NAME: [FILE, ...]}')")
    blocks = []
    for i, s in enumerate(scenes):
        where = f"{p}: scenes[{i}]"
        if not isinstance(s, dict) or set(s) - {"id", "modalities"}:
            raise BatchJobError(f"{where}: expected the keys 'id' and 'modalities' only")
        if "modalities" not in s:
            raise BatchJobError(f"{where}: no 'modalities' (give NAME: FILE or NAME: [FILE, ...] "
                                "for each modality of the model)")
        mods = s["modalities"]
        if not isinstance(mods, dict) or not mods:
            raise BatchJobError(f"{where}.modalities: expected a mapping NAME: FILE or "
                                "NAME: [FILE, ...]")
        files = []
        for name, given in mods.items():
            for f in given if isinstance(given, list) else [given]:
                if not isinstance(f, str):
                    raise BatchJobError(f"{where}.modalities.{name}: {f!r} is not a file name")
                files.append((str(name), str((p.parent / f).resolve())))
        blocks.append(Block(str(s.get("id", f"scene-{i:03d}")), files=tuple(files)))
    return Job(_check_ids(blocks, str(p)), recipe.grid)


def grid_job(recipe: Any, grid: str | Path | int) -> Job:
    """The recipe's one scene cut into blocks (see :func:`area_job`).

    Raises:
        BatchJobError: a multi-scene recipe, an unreadable grid file, no block on the scene.
    """
    scenes = recipe.scene_inputs()
    if len(scenes) != 1:
        raise BatchJobError(f"recipe {recipe.name}: --grid cuts one large scene into blocks, "
                            f"but the recipe has {len(scenes)} scenes; use --scenes or the "
                            "recipe alone for many scenes")
    return area_job(scenes[0].modalities, recipe.grid, grid)


def area_job(modalities: Sequence[ModalitySpec], request: Any, grid: str | Path | int) -> Job:
    """One scene cut into blocks: squares of ``grid`` base pixels, or the bounding boxes of
    the polygons of a vector file (any CRS; an ``id`` column names them).

    Raises:
        BatchJobError: an unreadable grid file, no block on the scene.
    """
    from geomm.stack.coregister import coregister_request

    mods = tuple(modalities)
    scene_grid = coregister_request(mods, request).grid  # file headers only
    h, w = scene_grid.shape
    if isinstance(grid, int):
        if grid < 64:
            raise BatchJobError(f"--grid {grid}: a block side of at least 64 px is needed")
        regions = [(f"r{r // grid:03d}c{c // grid:03d}",
                    Region(r, c, min(grid, h - r), min(grid, w - c)))
                   for r in range(0, h, grid) for c in range(0, w, grid)]
    else:
        regions = _regions_from_file(Path(grid), scene_grid)
    blocks = [Block(i, modalities=mods, region=r) for i, r in regions]
    return Job(_check_ids(blocks, str(grid)), request, mosaic=scene_grid)


def _regions_from_file(path: Path, g: Any) -> list[tuple[str, Region]]:
    import geopandas as gpd

    try:
        df = gpd.read_file(path)
    except Exception as e:  # pyogrio's own errors
        raise BatchJobError(f"{path}: cannot read the grid file ({e})") from None
    if df.crs is None:
        raise BatchJobError(f"{path}: the grid has no CRS; set one (e.g. ogr2ogr -a_srs)")
    read = len(df)
    df = df[~df.geometry.is_empty & df.geometry.notna()].to_crs(g.crs)
    ids = (df["id"].astype(str).tolist() if "id" in df.columns and df["id"].is_unique
           else [f"f{i:04d}" for i in range(len(df))])
    left, top, res = g.bounds[0], g.bounds[3], g.resolution
    out = []
    for bid, (x0, y0, x1, y1) in zip(ids, df.geometry.bounds.to_numpy(), strict=True):
        c0, c1 = max(0, round((x0 - left) / res)), min(g.width, round((x1 - left) / res))
        r0, r1 = max(0, round((top - y1) / res)), min(g.height, round((top - y0) / res))
        if r1 > r0 and c1 > c0:
            out.append((bid, Region(r0, c0, r1 - r0, c1 - c0)))
    if not out:
        raise BatchJobError(f"{path}: none of its {len(df)} polygons overlaps the scene "
                            f"({g.describe()})")
    kept = {bid for bid, _ in out}
    if missed := [bid for bid in ids if bid not in kept]:
        listed = ", ".join(missed[:5]) + (", ..." if len(missed) > 5 else "")
        warnings.warn(f"{path}: {len(missed)} of its polygons lie outside the scene and get "
                      f"no block ({listed})", GeommWarning, stacklevel=3)
    if read > len(df):
        warnings.warn(f"{path}: {read - len(df)} features without a geometry get no block",
                      GeommWarning, stacklevel=3)
    return out
