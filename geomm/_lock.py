"""One writer per output: an OS file lock beside the output, held for the whole run.

The lock is ``.<name>.geomm-lock`` next to the output (a folder or a file), locked with
``flock``; the kernel releases it when its holder exits, however it dies (kill -9 included),
so a lock is never stale. A second run into the same output fails at once, naming the run
that holds it. The lock file is removed when released (a run that finds the file it locked
unlinked by a releasing holder locks the new one instead).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from geomm.errors import GeommError

__all__ = ["OutputBusyError", "lock_path", "missing_folders", "output_lock", "output_locks",
           "pid_alive", "remove_empty"]


class OutputBusyError(GeommError, BlockingIOError):
    """Another geomm run is writing the same output."""


_HELD: set[Path] = set()
"""Locks this process holds (re-entering one is a no-op; flock would refuse it)."""


def lock_path(out: Path) -> Path:
    """Where the lock of output ``out`` lives."""
    out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.geomm-lock"


def _holder(fd: int) -> str:
    try:
        doc = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return (f"pid {doc['pid']} on {doc['host']}, {doc['command']}, started "
                f"{doc['started']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a run that has not said who it is yet"


@contextmanager
def output_lock(out: Path, command: str) -> Iterator[None]:
    """Hold the lock of output ``out`` while the block runs.

    Raises:
        OutputBusyError: another process holds it (the message names that run).
    """
    path = lock_path(out)
    if path in _HELD:  # this process holds it already (a stage inside a command)
        yield
        return
    made = missing_folders(path.parent)
    if made:  # nothing can be writing there yet; the run makes it
        path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(fd)
            os.close(fd)
            raise OutputBusyError(f"{out}: another geomm run is writing this output ({who}); "
                                  "wait for it to finish or choose another output") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder released and removed it meanwhile: lock the new file
    try:
        doc = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
               "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(doc).encode(), 0)
        _HELD.add(path)
        yield
    finally:
        _HELD.discard(path)
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)
        remove_empty(made)  # a failed run leaves no empty folders of its making


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover  (someone else's live process)
        return True
    return True


def missing_folders(folder: str | os.PathLike[str]) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    folder, out = Path(os.path.abspath(folder)), []
    while not folder.exists() and folder != folder.parent:
        out.append(folder)
        folder = folder.parent
    return out


def remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is empty."""
    for f in folders:
        try:
            f.rmdir()
        except OSError:  # not empty (the run's output is there), or gone
            break


@contextmanager
def output_locks(outs: list[Path], command: str) -> Iterator[None]:
    """Hold the locks of several outputs (in sorted order, so two runs cannot deadlock)."""
    with ExitStack() as stack:
        for out in sorted({Path(os.path.abspath(o)) for o in outs}):
            stack.enter_context(output_lock(out, command))
        yield
