"""Apply a model bundle to a scene of any size: tiles streamed through the model into COGs.

The inputs are co-registered as for ``geomm stack`` (each modality at its native resolution),
then cut into overlapping tiles grouped in windows (:mod:`geomm.predict.blend`). Three threads
overlap: a reader fetches and normalises the next window's layers, the main thread runs the model on
batches of tiles and blends them, a writer turns finished windows into class / probability /
confidence blocks and writes them (:mod:`geomm.predict.cogout`). Memory holds a few windows, never
the scene. Outputs appear under their final names only when complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from geomm._lock import output_lock
from geomm._outputs import staged_outputs
from geomm._version import __version__
from geomm.errors import GeommError, GeommWarning
from geomm.modality import ModalitySpec
from geomm.predict._region import Region, RegionSink, RegionSource
from geomm.predict._stacitem import Acquisition, acquisition, item_id, run_token
from geomm.predict._stream import StackSource, stream
from geomm.predict.blend import TilePlan

__all__ = ["OUTPUTS", "PredictOptions", "PredictSummary", "predict_recipe", "predict_scene"]

OUTPUTS = ("classes.tif", "probabilities.tif", "confidence.tif", "classes.qml",
           "classes.tif.aux.xml", "item.json", "quicklook.png", "geomm-predict.json")
"""Files ``geomm predict`` writes into its output folder (the run record last)."""
GDAL_CACHE_BYTES = 64 * 2**20


class PredictError(GeommError, ValueError):
    """The inputs cannot be predicted with this bundle."""


@dataclass(frozen=True)
class PredictOptions:
    """How a scene is tiled and run through the model."""

    tile_size: int = 768
    """Tile side, base pixels (rounded to the model's lattice)."""
    halo: int = 48
    """Half the overlap of neighbouring tiles, base pixels (blended over ``2 * halo``)."""
    batch_size: int | None = None
    """Tiles per forward pass (default: as many as fit in 1 Mpx on CPU, 8 Mpx on CUDA)."""
    window: int = 2048
    """Target side of a processing window, base pixels (memory grows with its square)."""
    device: str = "auto"
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available)."""
    amp: bool = True
    """bf16 autocast on CUDA."""
    channels_last: bool = True
    """NHWC memory layout for the network."""
    compile: bool = False
    """``torch.compile`` the network (pays off on large scenes)."""
    threads: int | None = None
    """Torch CPU threads (default: the usable cores)."""
    probabilities: Literal["uint8", "float32", "none"] = "uint8"
    """Probability raster type (uint8 scaled 0-255), or none."""
    missing: tuple[str, ...] = ()
    """Modalities to predict without (a sensor outage)."""
    overwrite: bool = False
    """Replace the results of an earlier run in the output folder."""
    progress: bool = False
    """Show a progress bar of tiles."""

    def __post_init__(self) -> None:
        if self.tile_size < 1 or self.window < 1 or (self.batch_size or 1) < 1:
            raise PredictError(f"--tile-size ({self.tile_size}), --window ({self.window}) and "
                               f"--batch-size ({self.batch_size}) must be at least 1")
        if self.halo < 0 or 2 * self.halo >= self.tile_size:
            raise PredictError(f"--halo {self.halo} does not fit --tile-size {self.tile_size}: "
                               "a tile is its core plus a halo on each side, so 0 <= 2 x halo "
                               f"< tile size; use --halo {max(0, self.tile_size // 8)} or a "
                               "larger --tile-size")


@dataclass(frozen=True)
class PredictSummary:
    """What a prediction run did."""

    out_dir: Path
    files: dict[str, str]
    shape: tuple[int, int]
    tile_size: tuple[int, int]
    halo: int
    batch_size: int
    tiles: int
    tiles_run: int
    seconds: float
    model_seconds: float
    engine: str
    missing: tuple[str, ...]
    class_pixels: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds before the first tile ran (set-up, first read) and after the last (writing)."""

    @property
    def scene_px(self) -> int:
        """Pixels of the output map."""
        return self.shape[0] * self.shape[1]

    @property
    def tile_px(self) -> int:
        """Pixels the model computed (overlap and padding included)."""
        return self.tiles_run * self.tile_size[0] * self.tile_size[1]

    def describe(self) -> str:
        """A few lines for the terminal."""
        h, w = self.shape
        return (f"{self.out_dir}: {w} x {h} px in {self.seconds:.1f} s "
                f"({self.scene_px / self.seconds / 1e6:.2f} Mpx/s; model busy "
                f"{100 * self.model_seconds / self.seconds:.0f} %), {self.tiles_run} tiles of "
                f"{self.tile_size[0]} x {self.tile_size[1]} px (halo {self.halo}), "
                f"{self.engine}\n  "
                + ", ".join(n for n in self.files))


STRIDE_SLACK = 1.15
"""How far above the requested stride the planner may go to end tiles at the scene edge."""


def _lattice_round(value: int, lattice: int, *, minimum: int) -> int:
    return max(minimum, int(round(value / lattice)) * lattice)


def plan_tiles(height: int, width: int, lattice: int, opts: PredictOptions) -> TilePlan:
    """Tile plan: halo and strides multiples of ``lattice``, tiles of about
    ``opts.tile_size``; along each axis the stride is chosen so that the tiles end at the
    scene's edge: the model computes ``n_tiles * tile_px`` pixels for ``height * width`` of
    map, and tiles see the scene's edge the way training patches saw theirs (no rows of
    filler). Among tile counts whose stride stays within ``STRIDE_SLACK`` of the request, the
    one with the least overshoot past the edge wins (then the fewest tiles)."""
    halo = math.ceil(opts.halo / lattice) * lattice if opts.halo else 0
    top = _lattice_round(opts.tile_size - 2 * halo, lattice, minimum=lattice)

    def axis(size: int) -> int:
        inner = max(size - 2 * halo, 1)
        most = max(1, math.ceil(inner / top))
        fewest = max(1, math.ceil(inner / (top * STRIDE_SLACK)))

        def stride(n: int) -> int:
            return max(lattice, math.ceil(inner / n / lattice) * lattice)

        return stride(min(range(fewest, most + 1), key=lambda n: (n * stride(n) - inner, n)))

    sy, sx = axis(height), axis(width)
    window = max(1, round(opts.window / max(sy, sx)))
    return TilePlan(height, width, (sy + 2 * halo, sx + 2 * halo), halo, window)


def predict_scene(bundle: str | Path, modalities: Sequence[ModalitySpec], out_dir: str | Path,
                  *, grid: Any = None, options: PredictOptions = PredictOptions(),
                  scene_id: str = "scene", region: Region | None = None,
                  sidecars: bool = True, empty_ok: bool = False,
                  acquired: Acquisition | None = None, run_id: str | None = None
                  ) -> PredictSummary:
    """Predict one scene (or one block of it) with a model bundle; write the map files into
    ``out_dir``. This is the one tiled-inference path: ``geomm predict`` calls it for a
    scene, ``geomm batch`` workers for each block.

    Args:
        bundle: model bundle folder (``geomm train``): network, RF or SVM.
        modalities: the scene's inputs, with the bands the bundle was trained on.
        out_dir: output folder (created; see :data:`OUTPUTS`).
        grid: a recipe's :class:`~geomm.recipe.GridRequest` (default: the finest band's grid).
        options: tiling, device and output settings.
        scene_id: identifier of the scene in the STAC item (its id is
            ``<scene_id>-<run_id>``).
        region: only this block of the scene's grid (read with ``options.halo`` pixels of
            context around it where the scene has them); the outputs cover the block.
        sidecars: write the QGIS style, quicklook and STAC item too.
        empty_ok: write all-nodata outputs when no input pixel is valid (else an error).
        acquired: when the inputs were acquired (default: from the modalities' STAC notes
            or the files, see :func:`geomm.predict._stacitem.acquisition`).
        run_id: token of this run in the item id (default: a new one).

    Returns:
        A :class:`PredictSummary`.

    Raises:
        BundleMismatchError: the inputs' layers or bands differ from the bundle's.
        PredictError: no valid input pixel, a region outside the scene, or a classification
            bundle.
        OutputExistsError: ``out_dir`` holds results and not ``options.overwrite``.
        OutputBusyError: another run is writing ``out_dir``.
    """
    out = Path(out_dir)
    with output_lock(out, "geomm predict"):  # held from the start: one writer per folder
        return _predict(bundle, modalities, out, grid, options, scene_id, region, sidecars,
                        empty_ok, acquired, run_id)


def _predict(bundle: str | Path, modalities: Sequence[ModalitySpec], out: Path, grid: Any,
             options: PredictOptions, scene_id: str, region: Region | None, sidecars: bool,
             empty_ok: bool, acquired: Acquisition | None, run_id: str | None
             ) -> PredictSummary:
    import rasterio

    from geomm.predict._engines import engine_for
    from geomm.predict._inputrange import check_value_range
    from geomm.recipe import GridRequest
    from geomm.stack.coregister import coregister_request

    t0 = time.perf_counter()
    st = coregister_request(modalities, grid or GridRequest())
    engine, bundle_obj = engine_for(Path(bundle), st, options)
    if region is None:  # (a batch job checks its scene once, before its blocks)
        check_value_range(bundle_obj, st)
    opts = options if engine.context else replace(options, halo=0)
    on_gpu = getattr(getattr(engine, "device", None), "type", "cpu") != "cpu"
    source, out_grid, extent, own = _area(st, engine, opts, region, on_gpu, _files(modalities))
    plan = plan_tiles(extent.height, extent.width, engine.lattice, opts)
    # at most batch_px per pass: on CPU two large tiles per pass run slower per pixel than one
    batch = options.batch_size or max(1, engine.batch_px // plan.tile_px)
    with staged_outputs(out, OUTPUTS, overwrite=options.overwrite,
                        record="geomm-predict.json") as work, \
            rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        from geomm.predict._mapfiles import MapWriter

        writer = MapWriter(work, out_grid, bundle_obj.meta.class_table, options.probabilities)
        try:
            stats = stream(engine, plan, source, RegionSink(writer, own), batch,
                           progress=options.progress)
        finally:
            writer.close()
        if stats["valid_px"] == 0 and not empty_ok:
            raise PredictError(f"no valid input pixel in the scene ({_files(modalities)}): "
                               "every pixel is nodata in some modality; check the files and "
                               "their nodata values")
        run = run_id or run_token()
        when = (acquired or acquisition(modalities)) if sidecars else None
        files = writer.finish(scene_id=scene_id, bundle=bundle_obj, counts=stats["counts"],
                              sidecars=sidecars, acquired=when, run_id=run,
                              missing=tuple(sorted(getattr(engine, "missing", ()))))
        t_end = time.perf_counter()
        summary = PredictSummary(
            out, files, out_grid.shape, plan.tile, plan.halo, batch, plan.n_tiles,
            stats["tiles_run"], time.perf_counter() - t0, stats["model_seconds"],
            engine.description, tuple(sorted(getattr(engine, "missing", ()))),
            {n: int(c) for n, c in zip(bundle_obj.meta.class_table.names, stats["counts"],
                                       strict=True)},
            {"before_first_tile": (stats["first_model_call"] or t_end) - t0,
             "after_last_tile": t_end - (stats["last_model_call"] or t_end)})
        record = {"geomm_version": __version__, "bundle": str(Path(bundle).resolve()),
                  "bundle_json_sha256": hashlib.sha256(
                      (Path(bundle) / "bundle.json").read_bytes()).hexdigest(),
                  "inputs": {m.name: [str(b.path) for b in m.bands] for m in modalities},
                  "options": asdict(options), "grid": out_grid.to_dict(),
                  "scene_grid": st.grid.to_dict(),
                  "region": asdict(region) if region is not None else None,
                  "run_id": run, "item_id": item_id(scene_id, run) if sidecars else None,
                  "acquired": when.properties() if when is not None else None,
                  "summary": {**asdict(summary), "out_dir": str(out)}}
        (work / "geomm-predict.json").write_text(json.dumps(record, indent=1, default=str))
    return summary


def _area(st: Any, engine: Any, opts: PredictOptions, region: Region | None, on_gpu: bool,
          files: str) -> tuple[Any, Any, Region, Region]:
    """What is read (source over the extent), the output grid, the extent predicted and the
    block inside it (extent coordinates)."""
    from geomm.stack.grid import GridSpec

    height, width = st.grid.shape
    source: Any = StackSource(st, threaded=on_gpu)
    whole = Region(0, 0, height, width)
    if region is None:
        return source, st.grid, whole, whole
    own = region.clip(height, width)
    if own is None:
        raise PredictError(f"block {region} lies outside the scene grid of {height} x {width} "
                           f"px ({files})")
    margin = math.ceil(opts.halo / engine.lattice) * engine.lattice if opts.halo else 0
    ext = own.extent(margin, engine.lattice, height, width)
    source = RegionSource(source, ext, {la.key: la.factor for la in engine.layers})
    g, res = st.grid, st.grid.resolution
    left, top = g.bounds[0] + own.col * res, g.bounds[3] - own.row * res
    out_grid = GridSpec(g.crs, res, (left, top - own.height * res,
                                     left + own.width * res, top))
    return source, out_grid, ext, Region(own.row - ext.row, own.col - ext.col,
                                         own.height, own.width)


def predict_recipe(bundle: str | Path, recipe: Any, out_dir: str | Path, *,
                   options: PredictOptions = PredictOptions()) -> list[PredictSummary]:
    """:func:`predict_scene` on every scene of a recipe (``out_dir/<scene>`` when several);
    STAC modalities are searched and composited first. The scenes share one run token; their
    acquisition comes from the recipe's ``acquired:``, the STAC items or the files."""
    from geomm.sources import resolve

    resolved = resolve(recipe)
    scenes = resolved.scene_inputs()
    out, run = Path(out_dir), run_token()
    return [predict_scene(bundle, s.modalities, out / s.id if len(scenes) > 1 else out,
                          grid=recipe.grid, options=options, scene_id=s.id,
                          acquired=acquisition(s.modalities, recipe=resolved, scene=i),
                          run_id=run) for i, s in enumerate(scenes)]


def _files(modalities: Sequence[ModalitySpec]) -> str:
    paths = [str(b.path) for m in modalities for b in m.bands]
    return ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def modalities_from_files(bundle: str | Path, files: Sequence[tuple[str, str | Path]], *,
                          what: str = "--modality") -> list[ModalitySpec]:
    """Modalities for ``--modality NAME=FILE`` inputs, band names taken from the bundle.

    The files of a modality supply its bands in the bundle's order (finest layer first, a
    multi-band file contributing its bands in order), so ``visible=rgb.tif`` or
    ``infrared=B08.tif --modality infrared=B11.tif ...`` both work.

    ``what`` names the inputs in messages (a batch job's ``scene <id>: modality``).

    Raises:
        PredictError: a modality the bundle does not know, or a band count that differs.
    """
    import rasterio

    from geomm._remote import AnyPath, RemotePath, as_path
    from geomm.modality import BandSpec
    from geomm.model.bundle import load_bundle
    from geomm.stack.sources import open_remote

    meta = load_bundle(bundle).meta
    want: dict[str, list[str]] = {}
    first: dict[str, dict[str, Any]] = {}
    for lyr in meta.layers:
        want.setdefault(str(lyr["modality"]), []).extend(str(b) for b in lyr["bands"])
        first.setdefault(str(lyr["modality"]), lyr)
    given: dict[str, list[AnyPath]] = {}
    for name, path in files:
        if name not in want:
            raise PredictError(f"{what} {name}={path}: the model has no modality {name!r}; "
                               f"it takes {', '.join(want)}")
        given.setdefault(name, []).append(as_path(path))
    out = []
    for name, paths in given.items():
        bands: list[BandSpec] = []
        tags: set[float | None] = set()
        for p in paths:
            if not p.exists():
                raise PredictError(f"{what} {name}={p}: no such file")
            with (open_remote(p, what=f"{what} {name}=URL") if isinstance(p, RemotePath)
                  else rasterio.open(p)) as src:
                count = src.count
                tags |= set(src.nodatavals)
            bands += [BandSpec(p, "", i if count > 1 else None) for i in range(1, count + 1)]
        if len(bands) != len(want[name]):
            raise PredictError(f"{what} {name}: the files hold {len(bands)} band(s) but the "
                               f"model's {name} has {len(want[name])} ({', '.join(want[name])});"
                               f" give files holding exactly those bands, in that order, or "
                               f"pick bands of larger files in a RECIPE (`bands:` with "
                               f"`index:`) and give it instead of --modality")
        lyr = first[name]  # read the files as the training inputs were read
        out.append(ModalitySpec(name, tuple(BandSpec(b.path, n, b.index)
                                            for b, n in zip(bands, want[name], strict=True)),
                                nodata=_nodata(f"{what} {name}", lyr.get("nodata"), tags),
                                scale=float(lyr.get("scale", 1.0)),
                                offset=float(lyr.get("offset", 0.0))))
    return out


def _nodata(name: str, trained: float | None, tags: set[float | None]) -> float | None:
    """The nodata of the files of input ``name`` (``--modality NAME``): the model's (its
    recipe's ``nodata:``), unless the files declare another one, which then masks (None:
    each file's own tag)."""
    import math
    import warnings

    declared = {t for t in tags if t is not None}
    if trained is None or all(t == trained or math.isnan(t) and math.isnan(trained)
                              for t in declared):
        return trained
    warnings.warn(f"{name}: the files declare nodata "
                  f"{', '.join(f'{t:g}' for t in sorted(declared))}, the model was trained "
                  f"with nodata {trained:g}; the files' own is masked (give a recipe with "
                  "`nodata:` to choose)", GeommWarning, stacklevel=3)
    return None if None in tags or len(declared) > 1 else declared.pop()
