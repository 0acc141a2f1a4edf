"""One block of a batch job, run on a worker: predict into a private folder, describe the
result in ``block.json``, then rename the folder into place (a block folder under its final
name is always complete)."""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from geomm._files import sha256_file
from geomm.batch.jobs import Block
from geomm.errors import GeommError

__all__ = ["BLOCK_RECORD", "PARTIAL", "block_dir", "failure_text", "quiet_task_failures",
           "read_record", "run_block"]

BLOCK_RECORD = "block.json"
PARTIAL = ".partial"
"""Folder of the job's blocks in progress (a killed task leaves its files only here)."""


def block_dir(out: Path, block: Block, mosaic: bool) -> Path:
    """Where a block's outputs live: ``OUT/blocks/<id>`` (grid jobs) or ``OUT/<id>``."""
    return out / "blocks" / block.id if mosaic else out / block.id


def read_record(folder: Path) -> dict[str, Any] | None:
    """The block's ``block.json`` if the folder holds a complete block (files as recorded)."""
    try:
        rec = json.loads((folder / BLOCK_RECORD).read_text())
        if all((folder / n).stat().st_size == size for n, (_, size) in rec["outputs"].items()):
            return dict(rec)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _threads(options: Any) -> Any:
    """Torch threads for this task: the cores over the tasks a worker runs at once."""
    if options.threads:
        return options
    from geomm.predict.engine import default_threads

    try:
        from distributed import get_worker

        per_worker = max(1, get_worker().state.nthreads)
    except (ImportError, ValueError):
        per_worker = 1
    return replace(options, threads=max(1, default_threads() // per_worker))


def run_block(block: Block, *, bundle: str, grid: Any, options: Any, out: str, block_key: str,
              mosaic: bool, vector: bool, run: int = 1, map_name: str = "map.gpkg",
              vector_to: Any = None) -> dict[str, Any]:
    """Predict ``block`` (and, for a scene, vectorise its map into ``map_name``, and copy its
    polygons into the PostGIS table ``vector_to`` as rows of this block, replacing any earlier
    ones, before the block counts as done); returns its record (``run``: the job's run
    number, kept in the record)."""
    from geomm.predict.scene import modalities_from_files, predict_scene

    t0 = time.perf_counter()
    root = Path(out)
    final = block_dir(root, block, mosaic)
    done = read_record(final)
    if done is not None and done.get("key") == block_key:  # another attempt finished it
        return done
    partial = root / PARTIAL
    partial.mkdir(parents=True, exist_ok=True)
    work = partial / f"{block.id}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        mods = (modalities_from_files(bundle, block.files, what=f"scene {block.id}: modality")
                if block.files else list(block.modalities))
        summary = predict_scene(bundle, mods, work, grid=grid, options=_threads(options),
                                scene_id=block.id, region=block.region,
                                sidecars=not mosaic, empty_ok=mosaic)
        if vector:
            from geomm.vector.vectorize import vectorize

            vectorize(work / "classes.tif", work / map_name)
            if not mosaic:  # the scene's STAC Item lists its vector map
                from geomm.predict._stacitem import add_vector_asset

                add_vector_asset(work, map_name)
            if vector_to is not None:
                from geomm.vector.pgload import load_file

                load_file(vector_to, work / map_name, block.id)
        outputs = {p.name: (sha256_file(p), p.stat().st_size) for p in sorted(work.iterdir())
                   if p.is_file()}
        record = {"id": block.id, "key": block_key, "outputs": outputs,
                  "class_pixels": summary.class_pixels, "shape": list(summary.shape),
                  "region": None if block.region is None else list(block.region.window()),
                  "seconds": time.perf_counter() - t0, "model_seconds": summary.model_seconds,
                  "tiles": summary.tiles_run, "run": run,
                  "worker": f"{socket.gethostname()}:{os.getpid()}"}
        (work / BLOCK_RECORD).write_text(json.dumps(record, indent=1))
        done = read_record(final)
        if done is not None and done.get("key") == block_key:
            # a rerun of this block elsewhere (its host was thought lost) finished first: its
            # files are the same; never move a complete block aside while a reader may look
            return done
        _swap_in(work, final)
        return record
    except GeommError as exc:  # its message says it all; its chain may not pickle (Dask
        exc.__context__ = None  # would then send the client only its repr): the same error,
        raise exc from None  # its attributes kept, without the chain
    finally:
        shutil.rmtree(work, ignore_errors=True)


def failure_text(error: BaseException | None) -> str:
    """One line for a failed block, ``Name: message``; an exception Dask could only send as
    its repr (``Exception("RasterReadError('...')")``) is unwrapped."""
    if error is None:
        return "failed without an error"
    text = str(error)
    m = re.fullmatch(r"([A-Za-z_]\w*)\((.*)\)", text, re.S)
    if type(error) is Exception and m:
        try:
            inner = ast.literal_eval(m.group(2))
        except (ValueError, SyntaxError):
            inner = None
        if isinstance(inner, str):
            return f"{m.group(1)}: {inner}".splitlines()[0]
    return f"{type(error).__name__}: {text}".splitlines()[0]


class _NoComputeFailed(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Compute Failed")


def quiet_task_failures() -> None:
    """Run on a local worker: geomm names each failed block itself, in one line, so the
    worker's "Compute Failed" log (a traceback per block, on the user's terminal) is left
    out."""
    logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _NoComputeFailed) for f in logger.filters):
        logger.addFilter(_NoComputeFailed())


def _swap_in(work: Path, final: Path) -> None:
    """Rename ``work`` to ``final``; an older block there is moved aside first, then removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists():
        old = work.parent / f"{work.name}.old"
        os.replace(final, old)
    try:
        os.replace(work, final)
    except OSError:
        # another attempt of this block won the race: its folder is just as complete
        if read_record(final) is None:
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
