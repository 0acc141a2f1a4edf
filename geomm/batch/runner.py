"""Batch prediction on Dask distributed: blocks as tasks, a manifest to resume from, a mosaic.

Each block runs :func:`geomm.predict.scene.predict_scene` on a worker (which reads its own inputs;
the bundle is loaded once per worker process) and appears under its final folder only when
complete. The client records every finished or failed block in ``geomm-batch.json`` as it
happens, so a rerun after any interruption runs only what is missing or changed. Grid jobs
end with one COG per output (VRT + COG driver), style, STAC item, quicklook and the vector
map; scene jobs leave one output folder per scene.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from geomm._files import sha256_file
from geomm._lock import output_lock, remove_empty
from geomm._version import __version__
from geomm.batch import _blockrun as br
from geomm.batch.folder import MANIFEST, check_folder, check_scheduler
from geomm.batch.jobs import Job
from geomm.errors import GeommError
from geomm.predict.scene import PredictOptions

__all__ = ["MANIFEST", "BatchError", "BatchOptions", "BatchSummary", "run_batch"]

SCHEDULER_TIMEOUT_S = 10
"""Seconds to reach a user's Dask scheduler before giving up with one line."""
MOSAIC_RASTERS = ("classes.tif", "probabilities.tif", "confidence.tif")
MOSAIC_OUTPUTS = (*MOSAIC_RASTERS, "classes.qml", "classes.tif.aux.xml", "item.json",
                  "quicklook.png", "map.gpkg")


class BatchError(GeommError, RuntimeError):
    """The output folder cannot hold this job, or blocks failed."""


@dataclass(frozen=True)
class BatchOptions:
    """Where and how the blocks run."""

    workers: int | None = None
    """Local worker processes (default: one per 4 usable cores, at least 1)."""
    scheduler: str | None = None
    """Address of an existing Dask scheduler (then no local cluster is started)."""
    in_process: bool = False
    """Run the blocks one after another in this process, without Dask."""
    retries: int = 2
    """Extra attempts for a block that raised an error."""
    vector: bool = True
    """Also write the vector map (``map.gpkg``)."""
    vector_out: str | None = None
    """Where the vector map goes: a file name with a vector suffix (``map.fgb``,
    ``map.parquet``, ...) written instead of ``map.gpkg``; or a PostgreSQL connection string
    (``postgresql://...``, ``PG:...``): ``map.gpkg`` as well, and the polygons of every block
    (grid jobs: of the mosaic) in one PostGIS table, a ``block_id`` column naming their block."""
    vector_table: str | None = None
    """The PostGIS table, ``[SCHEMA.]TABLE`` (default ``public.classes``)."""
    vector_append: bool = False
    """Add to a PostGIS table that exists before the job's first run (a block's rows replace
    that block's earlier rows); without it such a table is refused."""
    progress: bool = True
    """Progress bar of blocks."""


@dataclass
class BatchSummary:
    """What a batch run did."""

    out: Path
    blocks: int
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    where: str = ""
    dashboard: str | None = None
    final: list[str] = field(default_factory=list)
    """Mosaic outputs written (grid jobs)."""
    pixels: int = 0
    """Map pixels of the blocks computed in this run."""

    @property
    def ok(self) -> bool:
        """No block failed."""
        return not self.failed

    def describe(self) -> str:
        """Lines for the terminal."""
        lines = [f"{self.out}: {self.blocks} blocks: {len(self.computed)} computed, "
                 f"{len(self.reused)} already done, {len(self.failed)} failed, "
                 f"{self.seconds:.1f} s ({self.where})"]
        lines += [f"  FAILED {b}: {e}" for b, e in self.failed.items()]
        if self.final:
            lines.append("  mosaic: " + ", ".join(self.final))
        return "\n".join(lines)


def _sizes(workers: int | None) -> tuple[int, int]:
    from geomm.predict.engine import default_threads

    cores = default_threads()
    n = workers or max(1, cores // 4)
    return n, max(1, cores // n)


class _Manifest:
    """``geomm-batch.json``: every block's state; replaced atomically on each change."""

    def __init__(self, out: Path, job: Job, bundle: Path) -> None:
        self.path = out / MANIFEST
        try:
            self.doc: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.doc = {}
        self.doc.update(geomm_version=__version__, bundle=str(bundle.resolve()),
                        kind="grid" if job.mosaic is not None else "scenes")
        self.doc.setdefault("blocks", {})
        self.doc.setdefault("runs", [])
        self.doc.setdefault("final", {})
        self.run = len(self.doc["runs"]) + 1
        self.doc["runs"].append({"run": self.run, "started": time.time(), "pid": os.getpid()})

    def record(self, block_id: str, entry: dict[str, Any]) -> None:
        self.doc["blocks"][block_id] = entry
        self.save()

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.doc, indent=1, default=str))
        os.replace(tmp, self.path)


def run_batch(job: Job, bundle: str | Path, out: str | Path, *,
              predict: PredictOptions = PredictOptions(),
              options: BatchOptions = BatchOptions(),
              echo: Callable[[str], None] = print) -> BatchSummary:
    """Run every block of ``job`` not already done with the same key; mosaic grid jobs.

    Returns:
        A :class:`BatchSummary` (``ok`` is False when blocks failed: their errors are in the
        summary and the manifest, and the other blocks' outputs are complete).

    Raises:
        BatchError: ``out`` is not a batch folder.
    """
    t0 = time.perf_counter()
    root, bpath = Path(out), Path(bundle)
    check_scheduler(options.scheduler, BatchError)
    with output_lock(root, "geomm batch"):  # one run per folder, from the start
        check_folder(root, BatchError)
        _preflight(job, bpath, predict)
        _vector_target(options, root)  # a bad name, address or password: one line, nothing
        created = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        try:
            return _run(job, bpath, root, predict, options, echo, t0)
        except _NoCluster:
            if created:  # the job never started: leave nothing behind
                shutil.rmtree(root, ignore_errors=True)
            raise
        finally:
            remove_empty([root / br.PARTIAL])  # an interrupted run's, with nothing in it


def _preflight(job: Job, bundle: Path, predict: PredictOptions) -> None:
    """Refuse at once, in one line, what would fail every block: a damaged bundle, one that
    does not fit the recipe's scene (grid jobs), or modalities it does not know (scenes)."""
    from geomm.model.bundle import load_bundle

    if job.mosaic is not None and job.blocks:
        from geomm.predict._engines import checked_bundle
        from geomm.predict._inputrange import check_value_range
        from geomm.stack.coregister import coregister_request

        st = coregister_request(list(job.blocks[0].modalities), job.grid)
        check_value_range(checked_bundle(bundle, st, predict)[0], st)
        return
    known = {str(lyr["modality"]) for lyr in load_bundle(bundle).meta.layers}
    for b in job.blocks:
        unknown = sorted({m for m, _ in b.files} - known)
        if unknown:
            raise BatchError(f"scene {b.id}: modality {unknown[0]!r} is not one of the model's "
                             f"{sorted(known)} ({bundle}); name the scenes' modalities as in "
                             "the recipe the model was trained on")


def _vector_target(options: BatchOptions, root: Path | None = None) -> tuple[str, Any]:
    """The vector map's file name and the PostGIS table (or None); with ``root``, also check
    the table: one that exists is refused on a job's first run unless ``vector_append``."""
    if options.vector_out is None:
        return "map.gpkg", None
    from geomm.vector._sinks import resolve_driver, style_path
    from geomm.vector.postgis import PgTarget, is_postgis

    if not options.vector:
        raise BatchError("--vector-out needs the vector map; leave out --no-vector")
    if is_postgis(options.vector_out):
        target = PgTarget.parse(options.vector_out, options.vector_table)
        if root is not None and _recorded(root).get("vector_table") != str(target):
            from geomm.vector.pgload import check_table

            check_table(target, append=options.vector_append)
        return "map.gpkg", target
    name, driver = options.vector_out, resolve_driver(Path(options.vector_out), None)
    if Path(name).name != name or driver == "ESRI Shapefile" \
            or style_path(Path(name), driver) == Path("classes.qml"):  # the class map's style
        raise BatchError(f"--vector-out {name!r}: give a file name (no folder, not classes.*: "
                         "it goes beside classes.tif) ending in .gpkg, .parquet, .fgb or "
                         ".geojson, or a postgresql:// or PG: connection string")
    return name, None


def _recorded(root: Path) -> dict[str, Any]:
    try:
        doc = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


class _NoCluster(BatchError):
    """The Dask scheduler could not be reached: no block ran."""


def _run(job: Job, bpath: Path, root: Path, predict: PredictOptions, options: BatchOptions,
         echo: Callable[[str], None], t0: float) -> BatchSummary:
    mosaic = job.mosaic is not None
    if options.scheduler is None and not options.in_process and predict.threads is None:
        predict = replace(predict, threads=_sizes(options.workers)[1])
    keys, inputs = job.keys(bpath, predict), job.inputs()
    map_name, target = _vector_target(options)
    manifest = _Manifest(root, job, bpath)
    if target is not None:  # this job's table from now on: a resumed run adds to it
        manifest.doc["vector_table"] = str(target)
    summary = BatchSummary(root, len(job.blocks))
    todo = []
    scene_map = options.vector and not mosaic
    for b in job.blocks:
        rec = br.read_record(br.block_dir(root, b, mosaic))
        if rec is not None and rec.get("key") == keys[b.id] and (
                not scene_map or map_name in rec.get("outputs", {})):
            manifest.doc["blocks"][b.id] = {**rec, "status": "done",  # "run": which made it
                                            "inputs": inputs[b.id]}
            summary.reused.append(b.id)
        else:
            todo.append(b)
    manifest.save()
    common = {"bundle": str(bpath.resolve()), "grid": job.grid,
              "options": replace(predict, progress=False, overwrite=True), "out": str(root),
              "mosaic": mosaic, "vector": scene_map, "run": manifest.run,
              "map_name": map_name, "vector_to": target if scene_map else None}

    def done(bid: str, rec: dict[str, Any] | None, error: BaseException | None) -> None:
        if rec is not None:
            manifest.record(bid, {**rec, "status": "done", "inputs": inputs[bid]})
            summary.computed.append(bid)
            summary.pixels += int(rec["shape"][0]) * int(rec["shape"][1])
        else:
            msg = br.failure_text(error)
            manifest.record(bid, {"id": bid, "key": keys[bid], "status": "failed",
                                  "error": msg, "run": manifest.run, "inputs": inputs[bid]})
            summary.failed[bid] = msg

    if todo:
        with _runner(options, echo) as (submit, where, dashboard):
            summary.where, summary.dashboard = where, dashboard
            echo(f"geomm batch: {len(job.blocks)} blocks, {len(summary.reused)} already done, "
                 f"{len(todo)} to run on {where}"
                 + (f"; dashboard {dashboard}" if dashboard else ""))
            submit(todo, keys, common, done)
    else:
        summary.where = "nothing to run"
    # every task of this run has ended: what is left there is from killed attempts
    shutil.rmtree(root / br.PARTIAL, ignore_errors=True)
    if mosaic and not summary.failed:
        summary.final = _mosaic(job, bpath, root, keys, manifest, options.vector, map_name)
    if target is not None and not (mosaic and summary.failed):
        # maps whose rows are not in the table: the mosaic's (again when rewritten), scenes
        # done in an earlier run (a scene computed now copied its rows before it was done)
        from geomm.vector.pgload import load_missing

        load_missing(target, {"mosaic": root / map_name} if mosaic else {
            b.id: br.block_dir(root, b, False) / map_name for b in job.blocks
            if b.id in summary.reused}, again=["mosaic"] if summary.final else [])
    elif mosaic and summary.failed:
        echo(f"geomm batch: no mosaic: {len(summary.failed)} block(s) failed; fix the inputs "
             "and rerun the same command (finished blocks are kept)")
    if not summary.failed:  # a STAC Collection of the job's Items, for a catalogue to index
        from geomm.predict._stacitem import write_stac_collection
        write_stac_collection(root)
    manifest.doc["runs"][-1].update(finished=time.time(), computed=summary.computed,
                                    failed=sorted(summary.failed))
    manifest.save()
    summary.seconds = time.perf_counter() - t0
    return summary


Submit = Callable[[list[Any], dict[str, str], dict[str, Any],
                   Callable[[str, dict[str, Any] | None, BaseException | None], None]], None]


@contextmanager
def _runner(options: BatchOptions, echo: Callable[[str], None]
            ) -> Iterator[tuple[Submit, str, str | None]]:
    """A function running blocks (in this process, or on a Dask cluster) and its place."""
    if options.in_process:
        def serial(todo: list[Any], keys: dict[str, str], common: dict[str, Any],
                   done: Callable[..., None]) -> None:
            for b in _bar(todo, options.progress):
                try:
                    done(b.id, br.run_block(b, block_key=keys[b.id], **common), None)
                except Exception as e:  # noqa: BLE001  (recorded against the block)
                    done(b.id, None, e)

        yield serial, "this process", None
        return
    from distributed import Client, LocalCluster, as_completed

    with _quiet_dask():
        if options.scheduler:
            cluster = None
            try:  # one line within seconds, not a traceback after 30 s
                client = Client(options.scheduler, timeout=SCHEDULER_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise _NoCluster(f"cannot reach the Dask scheduler at {options.scheduler} "
                                 f"within {SCHEDULER_TIMEOUT_S} s ({exc}); check the address "
                                 "and that the scheduler runs, or leave --scheduler out to "
                                 "use a local cluster") from None
            where = f"the cluster at {options.scheduler}"
        else:
            import dask

            n, threads = _sizes(options.workers)
            # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers: every large array
            # is then a fresh mmap, and page faults cost torch and numpy ~25 % here; geomm's
            # arrays are short-lived and alike in size: glibc's default is kept.
            with dask.config.set({"distributed.nanny.pre-spawn-environ."
                                  "MALLOC_TRIM_THRESHOLD_": None}):
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                       env={"OMP_NUM_THREADS": str(threads),
                                            "GDAL_NUM_THREADS": str(threads)})
            client = Client(cluster)
            client.run(br.quiet_task_failures)  # geomm names failed blocks itself
            where = (f"a local Dask cluster of {n} worker(s) x {threads} thread(s) at "
                     f"{cluster.scheduler_address}")

    def distributed(todo: list[Any], keys: dict[str, str], common: dict[str, Any],
                    done: Callable[..., None]) -> None:
        futures = {client.submit(br.run_block, b, block_key=keys[b.id], **common, pure=False,
                                 retries=options.retries,
                                 key=f"geomm-block-{b.id}-{keys[b.id][:12]}"): b
                   for b in todo}
        bar = _bar(None, options.progress, total=len(todo))
        for fut in as_completed(futures):
            b = futures[fut]
            if fut.status == "finished":
                done(b.id, fut.result(), None)
            else:
                done(b.id, None, fut.exception())
            bar.update(1)
        bar.close()

    try:
        yield distributed, where, client.dashboard_link
    finally:
        with _quiet_dask():
            client.close()
            if cluster is not None:
                cluster.close()


@contextmanager
def _quiet_dask() -> Iterator[None]:
    """Dask's start-up and shutdown chatter below warnings."""
    loggers = [logging.getLogger(n) for n in ("distributed", "bokeh")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def _bar(items: Any, enabled: bool, total: int | None = None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(items, total=total, unit="block", disable=not enabled, leave=False)


def _mosaic(job: Job, bundle: Path, root: Path, keys: dict[str, str], manifest: _Manifest,
            vector: bool, map_name: str = "map.gpkg") -> list[str]:
    """One COG per output over the scene grid, sidecars and vector map (skipped when the
    blocks are those of the mosaic already there)."""
    from geomm._outputs import staged_outputs
    from geomm.batch.mosaic import mosaic_cog
    from geomm.model.bundle import load_bundle
    from geomm.predict._mapfiles import write_sidecars
    from geomm.predict._stacitem import acquisition

    parts: list[Any] = [sorted(keys.items()), vector]
    if map_name != "map.gpkg":
        parts.append(map_name)
    key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
    final = manifest.doc["final"]
    names = [map_name if n == "map.gpkg" else n for n in MOSAIC_OUTPUTS
             if vector or n != "map.gpkg"]
    if final.get("key") == key and all(
            (root / n).is_file() and (root / n).stat().st_size == size
            for n, (_, size) in final.get("outputs", {}).items()):
        return []
    blocks = [(b.region, br.block_dir(root, b, True)) for b in job.blocks]
    bundle_obj = load_bundle(bundle)
    table = bundle_obj.meta.class_table
    counts = np.array([[manifest.doc["blocks"][b.id].get("class_pixels", {}).get(n, 0)
                        for n in table.names] for b in job.blocks]).sum(axis=0)
    with staged_outputs(root, names, overwrite=True, command="geomm batch") as work:
        rasters = [n for n in MOSAIC_RASTERS if (blocks[0][1] / n).exists()]
        for n in rasters:
            mosaic_cog([(r, d / n) for r, d in blocks if r is not None], job.mosaic, work / n)
        write_sidecars(work, table, scene_id=root.name, bundle=bundle_obj,
                       counts=counts, probabilities="probabilities.tif" in rasters,
                       acquired=acquisition(list(job.blocks[0].modalities)),
                       vector=map_name if vector else None)
        if vector:
            from geomm.vector.vectorize import vectorize

            vectorize(work / "classes.tif", work / map_name)
        outputs = {n: (sha256_file(work / n), (work / n).stat().st_size) for n in names
                   if (work / n).exists()}
    manifest.doc["final"] = {"key": key, "outputs": outputs, "written": time.time()}
    manifest.save()
    return list(outputs)
