"""The one tiled-inference loop: windows read ahead, tiles batched through an engine, blended,
handed to a sink by a writer thread. Sources: co-registered rasters or a tile store."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from geomm.predict.blend import Blender, TilePlan, Window
from geomm.predict.engine import Engine

__all__ = ["ArraySink", "StackSource", "StoreSource", "read_window", "stream"]

Request = tuple[str, int, int, int, int]
"""Layer key and its pixel rows a0:a1, cols b0:b1 (clipped to the layer)."""


class Source(Protocol):
    """Raw layer windows: values (C, h, w) and valid mask (h, w)."""

    def shape(self, key: str) -> tuple[int, int]: ...

    def read(self, requests: Sequence[Request]) -> list[tuple[np.ndarray, np.ndarray]]: ...


class StackSource:
    """Windows of a :class:`~geomm.stack.coregister.CoregisteredStack` (computed with dask)."""

    def __init__(self, st: Any, *, threaded: bool = False) -> None:
        self.st = st
        # on CPU the model has the cores and the reader runs on one thread beside it; when
        # the model runs on a GPU the reader may use them all
        self.threaded = threaded

    def shape(self, key: str) -> tuple[int, int]:
        h, w = self.st.layers[key].valid.shape
        return int(h), int(w)

    def read(self, requests: Sequence[Request]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each layer's window read straight from its files (exactly the pixels asked for)."""
        def one(req: Request) -> tuple[np.ndarray, np.ndarray]:
            key, a0, a1, b0, b1 = req
            got = self.st.layers[key].reader.read(a0, a1, b0, b1)
            return got[:-1], got[-1].astype(bool)

        if self.threaded:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(len(requests)) as pool:
                return list(pool.map(one, requests))
        return [one(r) for r in requests]


class StoreSource:
    """Windows of a :class:`~geomm.stack.store.TileStore`'s layers."""

    def __init__(self, store: Any) -> None:
        from geomm.stack._tiles import _TileReader

        self.store, self.reader = store, _TileReader(store.path)

    def shape(self, key: str) -> tuple[int, int]:
        f = self.store.factor(key)
        h, w = self.store.grid.shape
        return -(-h // f), -(-w // f)

    def read(self, requests: Sequence[Request]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(self.reader.read(f"{k}/data", a0, a1, b0, b1),
                 self.reader.read(f"{k}/valid", a0, a1, b0, b1)) for k, a0, a1, b0, b1 in requests]


def read_window(source: Source, engine: Engine, win: Window
                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Prepared layer arrays over the window's read region (zero past the edges and where
    invalid), and the base-grid valid mask: every layer valid, or, for an engine that maps
    from the modalities present (``partial``), some modality valid, with each modality's
    base-grid mask in ``arrays["valid:<modality>"]``."""
    r0, r1, c0, c1 = win.read
    requests, sizes = [], []
    for la in engine.layers:
        f = la.factor
        h, w = source.shape(la.key)
        a0, a1, b0, b1 = r0 // f, r1 // f, c0 // f, c1 // f
        requests.append((la.key, a0, min(a1, h), b0, min(b1, w)))
        sizes.append((a1 - a0, b1 - b0))
    arrays: dict[str, np.ndarray] = {}
    valid = np.ones((r1 - r0, c1 - c0), dtype=bool)
    per_mod: dict[str, np.ndarray] = {}
    for la, (raw, ok), (hh, ww) in zip(engine.layers, source.read(requests), sizes, strict=True):
        ok = ok.astype(bool)
        if raw.dtype.kind == "f":
            ok &= np.isfinite(raw).all(axis=0)
        gh, gw = ok.shape
        x = np.zeros((raw.shape[0], hh, ww), dtype=np.float32)
        x[:, :gh, :gw] = la.prepare(raw)
        full = np.zeros((hh, ww), dtype=bool)
        full[:gh, :gw] = ok
        x[:, ~full] = 0.0
        arrays[la.key] = x
        f = la.factor
        up = np.repeat(np.repeat(full, f, axis=0), f, axis=1) if f > 1 else full
        valid &= up
        per_mod[la.modality] = per_mod[la.modality] & up if la.modality in per_mod else up
    if getattr(engine, "partial", False):
        valid = np.logical_or.reduce(list(per_mod.values()))
        for m, ok in per_mod.items():
            arrays[f"valid:{m}"] = ok[None].astype(np.float32)
    return arrays, valid


class ArraySink:
    """Collects the blended probabilities of every window into scene-sized arrays (small
    scenes: cross-validation); ``classes`` holds ``nodata`` where the inputs were invalid."""

    def __init__(self, height: int, width: int, n_classes: int, nodata: int) -> None:
        self.probs = np.zeros((n_classes, height, width), dtype=np.float32)
        self.classes = np.full((height, width), nodata, dtype=np.uint8)
        self.valid_px = 0

    def write(self, win: Window, probs: np.ndarray, valid: np.ndarray, *,
              last_in_row: bool) -> None:
        r0, r1, c0, c1 = win.out
        self.probs[:, r0:r1, c0:c1] = probs
        self.classes[r0:r1, c0:c1][valid] = probs.argmax(axis=0)[valid]
        self.valid_px += int(valid.sum())

    def totals(self) -> dict[str, Any]:
        return {"valid_px": self.valid_px}


class _Worker(threading.Thread):
    """A daemon thread that keeps its exception for the main thread to raise."""

    def __init__(self, target: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self._fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            _lower_priority()
            self._fn()
        except BaseException as exc:  # noqa: BLE001  (re-raised by the main thread)
            self.error = exc


_DONE = object()


def _lower_priority() -> None:
    """Let the model's threads preempt this one (Linux: a thread has its own nice value):
    reading and writing fill the gaps instead of slowing every forward pass."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # pragma: no cover  (not Linux, or not allowed)
        pass


def stream(engine: Engine, plan: TilePlan, source: Source, sink: Any, batch: int, *,
           progress: bool = False) -> dict[str, Any]:
    """Run every tile with a valid pixel through ``engine``; hand finished windows to ``sink``.

    A reader thread prepares the next window while the engine runs (prefetch of one window);
    a writer thread turns finished windows into output blocks; memory holds about three
    windows. Returns the sink's totals plus ``model_seconds`` and ``tiles_run``.
    """
    windows = list(plan.windows())
    read_q: queue.Queue[Any] = queue.Queue(maxsize=1)
    write_q: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(q: queue.Queue[Any], item: Any) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def read_all() -> None:
        for win in windows:
            if stop.is_set():
                return
            put(read_q, (win, *read_window(source, engine, win)))
        put(read_q, _DONE)

    def write_all() -> None:
        last_col = plan.windows_shape[1] - 1
        while not stop.is_set():
            try:
                item = write_q.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            sink.write(*item, last_in_row=item[0].col == last_col)

    reader, writer = _Worker(read_all), _Worker(write_all)
    reader.start()
    writer.start()
    blender = Blender(plan, engine.num_classes)
    ty, tx = plan.tile
    model_s, tiles_run, first, last = 0.0, 0, 0.0, 0.0
    bar = _progress(plan.n_tiles, progress)
    try:
        while (item := _get(read_q, reader, writer)) is not _DONE:
            win, arrays, valid = item
            blender.start(win)
            r0, c0 = win.read[0], win.read[2]
            todo = [o for o in win.tiles
                    if valid[o[0] - r0:o[0] - r0 + ty, o[1] - c0:o[1] - c0 + tx].any()]
            for s in range(0, len(todo), batch):
                chunk = todo[s:s + batch]
                inputs = {la.key: np.stack([
                    arrays[la.key][:, (o[0] - r0) // la.factor:(o[0] - r0 + ty) // la.factor,
                                   (o[1] - c0) // la.factor:(o[1] - c0 + tx) // la.factor]
                    for o in chunk]) for la in engine.layers}
                for key in getattr(engine, "extra_inputs", ()):  # factor-1 side inputs
                    inputs[key] = np.stack([arrays[key][:, o[0] - r0:o[0] - r0 + ty,
                                                        o[1] - c0:o[1] - c0 + tx]
                                            for o in chunk])
                t1 = time.perf_counter()
                probs = engine(inputs)
                t2 = time.perf_counter()
                model_s += t2 - t1
                first, last = first or t1, t2
                for o, p in zip(chunk, probs, strict=True):
                    blender.add(o, p)
            tiles_run += len(todo)
            bar.update(len(win.tiles))
            o0, o1, p0, p1 = win.out
            put(write_q, (win, blender.finish(), valid[o0 - r0:o1 - r0, p0 - c0:p1 - c0]))
            if writer.error is not None:
                raise writer.error
        put(write_q, _DONE)
        writer.join()
        if writer.error is not None:
            raise writer.error
    finally:
        stop.set()
        for w in (reader, writer):
            w.join()
        bar.close()
    return {"model_seconds": model_s, "tiles_run": tiles_run, "first_model_call": first,
            "last_model_call": last, **sink.totals()}


def _get(q: queue.Queue[Any], *workers: _Worker) -> Any:
    while True:
        for w in workers:
            if w.error is not None:
                raise w.error
        try:
            return q.get(timeout=0.2)
        except queue.Empty:
            continue


def _progress(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="tile", disable=not enabled, leave=False)
