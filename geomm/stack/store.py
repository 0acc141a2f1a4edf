"""The tile store: co-registered layers, masks and labels persisted as chunked Zarr.

Layout of a store folder (``tiles/<name>/``, one per scene)::

    store.zarr/<modality>/<res><unit>  data (band, y, x) and valid (y, x), one chunk per tile
    store.zarr/base                    valid (y, x): every layer valid; labels (y, x), uint8
    index.parquet                      GeoParquet tile index: id, bounds, valid and label fractions
    geomm-store.json                   manifest: inputs fingerprint, grid, layers, classes, counts

The store is written into a temporary sibling folder and renamed into place when complete,
so a failed run leaves nothing behind and a reader never sees half a store. The manifest is
written last; its fingerprint makes a re-run with unchanged inputs a no-op.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geomm._files import follow_umask
from geomm._lock import output_lock
from geomm.errors import StaleStoreError, StoreError
from geomm.stack.grid import GridSpec
from geomm.stack.windows import TileWindow

__all__ = ["TileStore", "open_store", "staged_store", "tidy_store"]

MANIFEST = "geomm-store.json"
FORMAT_VERSION = 1


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of the store at ``path``, or None when there is no complete store."""
    try:
        doc = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def check_target(out: Path, fingerprint: str, *, overwrite: bool) -> bool:
    """Decide what to do with ``out``: True when an identical store is already there.

    Raises:
        StoreError: ``out`` holds a store made from other inputs (and not ``overwrite``),
            or holds something that is not a geomm store (never replaced).
    """
    if not out.exists():
        return False
    manifest = read_manifest(out)
    if manifest is None:
        if out.is_dir() and not any(out.iterdir()):
            return False
        raise StoreError(f"{out} exists and is not a geomm tile store; geomm will not replace "
                         "it: move it away or choose another --out")
    if manifest.get("fingerprint") == fingerprint:
        return True
    if not overwrite:
        raise StaleStoreError(f"{out} holds a tile store made from other inputs (recipe or "
                              "files changed); rerun with --overwrite to replace it, or choose "
                              "another --out", out)
    return False


@contextmanager
def staged_store(out: Path, *, command: str = "geomm stack") -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it replaces ``out`` atomically.

    One run at a time writes ``out`` (an OS lock, :func:`geomm._lock.output_lock`), and first
    tidies what a killed run left beside it (work folders are removed; an old ``out`` set
    aside just before the swap is put back or emptied into the new one). Files in an old
    ``out`` that the new run did not write (a user's notes, say) are moved into the new one:
    replacing a store or a bundle never deletes what geomm did not write.
    """
    with output_lock(out, command):
        out.parent.mkdir(parents=True, exist_ok=True)
        tidy_store(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        follow_umask(tmp)  # mkdtemp makes it private; a store is as readable as any
        try:
            yield tmp
        except BaseException:  # an error or Ctrl-C: writers may still be at work in tmp
            try:
                _settle_writers()
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        if out.exists() and _exchange(tmp, out):
            _carry(tmp, out)  # tmp now holds the old one: keep the user's files
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            _carry(old, out)
            shutil.rmtree(old, ignore_errors=True)


def _settle_writers(timeout: float = 60.0) -> None:
    """Wait for the writes still under way after an error or Ctrl-C stopped the caller: dask's
    threaded scheduler stops waiting, not its threads (their running tasks end, queued ones are
    cancelled; the next compute makes new threads), and Zarr's event loop finishes the writes
    it was given. Then a work folder removed stays removed, and no write is cut off at exit
    (each would print "Task was destroyed but it is pending!")."""
    threaded: Any = sys.modules.get("dask.threaded")  # only when dask is in use
    if all(hasattr(threaded, a) for a in ("pools_lock", "pools", "default_pool", "main_thread")):
        me = threading.current_thread()
        with threaded.pools_lock:
            pools = list(threaded.pools.pop(me, {}).values())
            if me is threaded.main_thread and threaded.default_pool is not None:
                pools.append(threaded.default_pool)
                threaded.default_pool = None
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
    zsync = sys.modules.get("zarr.core.sync")
    loop = getattr(zsync, "loop", [None])[0]
    if isinstance(loop, asyncio.AbstractEventLoop) and loop.is_running():
        try:
            asyncio.run_coroutine_threadsafe(_pending(timeout), loop).result(timeout + 1)
        except Exception:  # noqa: BLE001 - a write that fails or hangs is not ours to report
            pass


async def _pending(timeout: float) -> None:
    """Wait for the event loop's other tasks."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=timeout)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``): a reader sees the
    old folder or the new one, never none. False where the OS or filesystem cannot."""
    import ctypes

    if not sys.platform.startswith("linux"):
        return False
    try:  # the process's global symbols (libc's, or an LD_PRELOAD wrapper's first)
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    ok = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    return bool(ok)


def _carry(old: Path, new: Path) -> None:
    """Move the entries of ``old`` that ``new`` lacks into ``new`` (the user's files)."""
    if old.is_dir():
        for entry in old.iterdir():
            if not (new / entry.name).exists() and not entry.name.startswith(".geomm"):
                os.replace(entry, new / entry.name)


def tidy_store(out: Path) -> None:
    """Undo what a killed :func:`staged_store` left beside ``out`` (the caller holds the
    lock, so no live run owns these): a run that finds the store up to date calls it too, so
    a user's file a killed run had not yet carried back is in the store again."""
    for stale in out.parent.glob(f".{out.name}.old-*"):
        if not out.exists():
            stale.rename(out)  # killed between the two renames: the old complete set is back
        else:
            _carry(stale, out)
            shutil.rmtree(stale, ignore_errors=True)
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        if out.exists():  # killed after an exchange: the old one, with the user's files
            _carry(stale, out)
        shutil.rmtree(stale, ignore_errors=True)


def write_manifest(folder: Path, doc: dict[str, Any]) -> None:
    """Write the manifest (last step of a store: its presence means 'complete')."""
    doc = {"format": FORMAT_VERSION, **doc}
    (folder / MANIFEST).write_text(json.dumps(doc, indent=2, default=_jsonable))


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON-able: {type(v).__name__}")


@dataclass
class TileStore:
    """A tile store opened for reading: lazy layers, masks, labels and the tile index."""

    path: Path
    """Store folder."""
    manifest: dict[str, Any]
    """Its manifest."""
    _open: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _labels: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def grid(self) -> GridSpec:
        """The base grid."""
        return GridSpec.from_dict(self.manifest["grid"])

    @property
    def layer_keys(self) -> list[str]:
        """Layer names, e.g. ``["visible/10m", "infrared/20m"]``."""
        return [lyr["key"] for lyr in self.manifest["layers"]]

    @property
    def tile_size(self) -> int:
        """Tile side in base pixels."""
        return int(self.manifest["tiling"]["size"])

    def layer(self, key: str) -> Any:
        """The stored layer ``key`` as a lazy xarray Dataset (``data``, ``valid``)."""
        import xarray as xr

        if key not in self.layer_keys and key != "base":
            raise KeyError(f"{self.path}: no layer {key!r}; layers are {self.layer_keys}")
        if key not in self._open:  # opened once: tile reads then only fetch chunks
            self._open[key] = xr.open_zarr(self.path / "store.zarr", group=key,
                                           consolidated=False, mask_and_scale=False)
        return self._open[key]

    def base(self) -> Any:
        """Base-resolution ``valid`` (and ``labels`` when the store has raster labels)."""
        return self.layer("base")

    def labels(self) -> np.ndarray:
        """The whole base-grid label raster, uint8, read once and kept (read-only): splits,
        label budgets and scores all look at it.

        Raises:
            KeyError: the store has no pixel labels.
        """
        if self._labels is None:
            base = self.base()
            if "labels" not in base:
                raise KeyError(f"{self.path}: the store has no pixel labels")
            arr = np.asarray(base["labels"].values)
            arr.flags.writeable = False
            self._labels = arr
        return self._labels

    @property
    def ignore_value(self) -> int:
        """Label value of unlabelled pixels."""
        return int((self.manifest.get("classes") or {}).get("ignore_value", 255))

    def index(self) -> Any:
        """The tile index as a GeoDataFrame."""
        import geopandas as gpd

        return gpd.read_parquet(self.path / "index.parquet")

    def factor(self, key: str) -> int:
        """Resolution factor of layer ``key``."""
        return int(next(lyr["factor"] for lyr in self.manifest["layers"] if lyr["key"] == key))

    def read_tile(self, tile: TileWindow, *, halo: int | None = None) -> dict[str, np.ndarray]:
        """Read one tile with a halo from every layer, padded beyond the scene edge.

        Returns ``{layer_key: (bands, h, w) array, layer_key + ":valid": mask,
        "valid": base mask, "labels": base labels}``; padding is invalid (and labels are the
        ignore value there).
        """
        h = self.manifest["tiling"]["halo"] if halo is None else halo
        tile = TileWindow(tile.row, tile.col, tile.row0, tile.row1, tile.col0, tile.col1, h)
        out: dict[str, np.ndarray] = {}
        for key in self.layer_keys:
            ds = self.layer(key)
            win = tile.at(self.factor(key))
            out[key] = _padded(ds["data"], win, ds["data"].attrs.get("nodata") or 0)
            out[f"{key}:valid"] = _padded(ds["valid"], win, False)
        base = self.base()
        out["valid"] = _padded(base["valid"], tile, False)
        if "labels" in base:
            out["labels"] = _padded(base["labels"], tile, self.manifest["classes"]["ignore_value"])
        return out


def _padded(arr: Any, win: TileWindow, fill: Any) -> np.ndarray:
    rs, cs = win.read_slices
    ny, nx = arr.shape[-2:]
    r0, r1, c0, c1 = max(rs.start, 0), min(rs.stop, ny), max(cs.start, 0), min(cs.stop, nx)
    shape = (*arr.shape[:-2], rs.stop - rs.start, cs.stop - cs.start)
    out = np.full(shape, fill, dtype=arr.dtype)
    if r1 > r0 and c1 > c0:
        out[..., r0 - rs.start:r1 - rs.start, c0 - cs.start:c1 - cs.start] = \
            arr[..., r0:r1, c0:c1].values
    return out


def open_store(path: str | Path, *, check: Callable[[dict[str, Any]], None] | None = None
               ) -> TileStore:
    """Open a complete tile store for reading.

    Raises:
        StoreError: ``path`` holds no complete geomm tile store.
    """
    p = Path(path)
    manifest = read_manifest(p)
    if manifest is None:
        raise StoreError(f"{p}: not a complete geomm tile store (no {MANIFEST}); build it "
                         "with `geomm stack RECIPE --out DIR`")
    if check is not None:
        check(manifest)
    return TileStore(p, manifest)
