"""Run the ``geomm`` command line as a subprocess for a Processing algorithm.

The standard library only (no qgis): ``feedback`` is anything with QgsProcessingFeedback's
``isCanceled``, ``setProgress``, ``pushInfo``, ``pushWarning``, ``reportError`` and
``pushCommandInfo``. Its output is read line by line (carriage-return bar updates included):
progress bars become ``setProgress``, other lines ``pushInfo`` (``geomm: warning:`` lines
``pushWarning``). While it runs, a cancelled feedback stops it: SIGINT to its whole process
group (geomm's Ctrl-C: it removes its work files and exits 130), then SIGTERM, then SIGKILL
for anything left; what the killed run left beside its outputs is then removed. A cancel
that comes after geomm has finished (its output not read yet) or while it exits 0 stops
nothing: the run succeeded and its outputs are complete (``finished_first``).
"""

from __future__ import annotations

import codecs
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GeommNotFound", "RunResult", "find_geomm", "installed_settings", "run_geomm"]

ENV_VAR = "GEOMM_EXECUTABLE"
SETTINGS_FILE = Path(__file__).with_name("geomm.json")
GRACE_INT, GRACE_TERM = 5.0, 2.0
"""Seconds a cancelled run gets after SIGINT, then after SIGTERM, before SIGKILL."""

_DROPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "GDAL_DATA", "GDAL_DRIVER_PATH",
                "PROJ_LIB", "PROJ_DATA", "QGIS_PREFIX_PATH")
"""QGIS's own interpreter and libraries: wrong for geomm's environment, which finds its own."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PERCENT = re.compile(r"(\d{1,3})%\|")
_COUNT = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")
_BAR = re.compile(r"\d%\||\|\s*\d+/(?:\d+|\?)\s*\[")
_EPOCH = re.compile(r"^Epoch (\d+)\b")
_PLAN = re.compile(r"^training (\d+) networks? of width \d+: at most (\d+) epochs?\b")
_NETWORK = re.compile(r"^\s*network (\d+) of \d+\b")
_STEP = re.compile(r"^\[(\d+)/(\d+)\]")


class GeommNotFound(Exception):
    """No usable geomm executable: the message says where it looked and what to do."""


@dataclass
class RunResult:
    """How a geomm run ended."""

    returncode: int | None
    cancelled: bool = False
    errors: list[str] = field(default_factory=list)
    """``geomm: error:`` lines (and, after a failure, the last lines of stderr)."""
    removed: list[Path] = field(default_factory=list)
    """What a cancelled run had left and was removed."""
    finished_first: bool = False
    """A cancel came, but geomm had already ended (or ended with success as it was being
    stopped): the run is not ``cancelled``, and a 0 ``returncode`` means complete outputs."""


def _usable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def installed_settings() -> dict[str, Any]:
    """What ``geomm qgis install`` recorded in the plugin folder (``geomm.json``): the
    executable, geomm's version, the names of its bundled recipes; {} if none."""
    try:
        doc = json.loads(SETTINGS_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def find_geomm() -> str:
    """The geomm executable: ``$GEOMM_EXECUTABLE``, else the one ``geomm qgis install``
    recorded in the plugin folder, else ``geomm`` on PATH.

    Raises:
        GeommNotFound: none of them is an executable file.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        if _usable(env):
            return env
        raise GeommNotFound(f"{ENV_VAR}={env} is not an executable file; point it at the "
                            "geomm command of the environment where geomm is installed")
    recorded = installed_settings().get("executable")
    recorded = str(recorded) if recorded else None
    if recorded and _usable(recorded):
        return recorded
    on_path = shutil.which("geomm")
    if on_path:
        return on_path
    where = (f"{recorded}, recorded by `geomm qgis install`, is not an executable file (was "
             "that environment moved or deleted?)" if recorded else
             f"{SETTINGS_FILE} names no geomm executable")
    raise GeommNotFound(f"geomm executable not found: {where}, and there is no geomm on PATH. "
                        f"Run `geomm qgis install` from the environment where geomm is "
                        f"installed, or set {ENV_VAR} to its geomm command")


def child_env() -> dict[str, str]:
    """The environment of the geomm subprocess: QGIS's, less what points at QGIS's own Python
    and GDAL/PROJ data; unbuffered UTF-8 output."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    return env


class _Progress:
    """Turns geomm's output into a 0-100 progress: its tqdm bars (tiles, epochs) and
    ``[k/n]`` step lines."""

    def __init__(self, epochs: int | None, span: tuple[float, float]) -> None:
        self.epochs = epochs
        self.epoch = 0
        self.networks, self.network = 1, 0
        self.lo, self.hi = span

    def parse(self, line: str) -> float | None:
        m = _STEP.match(line)
        if m and int(m[2]):
            return self.lo + (self.hi - self.lo) * (int(m[1]) - 1) / int(m[2])
        plan = _PLAN.match(line)  # geomm's own count: the epochs sized to the labels
        if plan:
            self.networks, self.epochs, self.network = int(plan[1]), int(plan[2]), 0
        net = _NETWORK.match(line)
        if net:
            self.network = int(net[1]) - 1
        e = _EPOCH.match(line)
        if e:
            self.epoch = int(e[1])
        pct = _PERCENT.search(line)
        count = _COUNT.search(line)
        if (pct is None and count is None) or (self.epochs and not e):
            return None  # no bar; or, in training, a validation bar (not the epoch's)
        frac = (int(count[1]) / int(count[2]) if count and int(count[2])
                else int(pct[1]) / 100 if pct else 0.0)
        if e and self.epochs:
            frac = (self.network * self.epochs + self.epoch + frac) / (self.networks
                                                                       * self.epochs)
        return self.lo + (self.hi - self.lo) * max(0.0, min(1.0, frac))


def _is_bar(text: str) -> bool:
    return bool(_BAR.search(text))


def _reader(stream: Any, name: str, out: queue.Queue[tuple[str, str, bool]]) -> None:
    """Queue (stream, text, is_bar) for each line, terminal escapes removed; a segment ended
    by a lone CR, a line that looks like a bar, or a bar not ended yet (tqdm ends a redraw
    only with the CR before the next) is a bar: progress, not a message."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    buf = ""
    while True:
        chunk = os.read(stream.fileno(), 65536)
        buf += decoder.decode(chunk, final=not chunk)
        while True:
            m = re.search(r"\r\n|\r|\n", buf)
            if not m:
                break
            text, buf = _ANSI.sub("", buf[:m.start()]), buf[m.end():]
            if text.strip():
                out.put((name, text.rstrip(), m.group() == "\r" or _is_bar(text)))
        if _is_bar(buf):  # a bar, redrawn after the next CR
            out.put((name, _ANSI.sub("", buf).rstrip(), True))
            buf = ""
        if not chunk:
            buf = _ANSI.sub("", buf)
            if buf.strip():
                out.put((name, buf.rstrip(), False))
            out.put((name, "", False))  # end of stream
            return


def _push(feedback: Any, method: str, text: str) -> None:
    fn = getattr(feedback, method, None) or feedback.pushInfo
    fn(text)


def run_geomm(args: Sequence[str], feedback: Any, *, outputs: Sequence[Path] = (),
              epochs: int | None = None, span: tuple[float, float] = (0.0, 100.0),
              executable: str | None = None, poll: float = 0.1) -> RunResult:
    """Run ``geomm ARGS``, streaming its output into ``feedback`` until it ends or is cancelled.

    Args:
        args: the command and its arguments (``["predict", BUNDLE, ...]``).
        feedback: a QgsProcessingFeedback (or anything with its methods).
        outputs: the files or folders the run writes: a cancelled run's leftovers around them
            are removed, and a folder it created is removed again if empty.
        epochs: training epochs, to read Lightning's per-epoch bars as one progress (until
            geomm's own "training N networks ...: at most E epochs" line says otherwise).
        span: the part of 0-100 % that geomm's bars cover (the rest: work before and after).
        executable: the geomm command (default :func:`find_geomm`).

    Raises:
        GeommNotFound: see :func:`find_geomm`.
    """
    exe = executable or find_geomm()
    cmd = [exe, *map(str, args)]
    _push(feedback, "pushCommandInfo", " ".join(_quote(c) for c in cmd))
    before = {Path(p): _snapshot(Path(p)) for p in outputs}
    group: dict[str, Any] = (  # its own process group, to stop it with all it starts
        {"start_new_session": True} if os.name == "posix"
        else {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)})
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=child_env(), **group)
    lines: queue.Queue[tuple[str, str, bool]] = queue.Queue()
    readers = [threading.Thread(target=_reader, args=(s, n, lines), daemon=True)
               for s, n in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))]
    for t in readers:
        t.start()
    result = RunResult(None)
    progress, open_streams, read_all, idle = _Progress(epochs, span), 2, False, 0.0
    tail: list[str] = []
    try:
        while open_streams:
            if not result.finished_first and feedback.isCanceled():
                if _exited(proc, 0):  # too late: it ended; read what it said, as for any run
                    result.finished_first = True
                else:
                    result.cancelled = True
                    _stop(proc)
                    break
            try:
                name, text, bar = lines.get(timeout=poll)
            except queue.Empty:  # geomm has exited, but something it started holds a pipe
                idle = idle + poll if proc.poll() is not None else 0.0
                if idle > 2:
                    break
                continue
            idle = 0.0
            if not text:
                open_streams -= 1
                continue
            pct = progress.parse(text)
            if pct is not None:
                feedback.setProgress(pct)
            if bar:
                continue
            if text.startswith("geomm: error:"):
                result.errors.append(text[len("geomm: error:"):].strip())
                _push(feedback, "reportError", text)
            elif text.startswith("geomm: warning:"):
                _push(feedback, "pushWarning", text)
            else:
                feedback.pushInfo(text)
            if name == "stderr":
                tail = (tail + [text])[-5:]
        read_all = not result.cancelled
    finally:
        if not read_all and not result.cancelled:  # an exception from a feedback call
            result.cancelled = True
            _stop(proc)
        result.returncode = proc.wait()
        for t in readers:
            t.join(timeout=2)
        if result.cancelled:  # what it said while stopping ("geomm: interrupted ...")
            while not lines.empty():
                _, text, bar = lines.get_nowait()
                if text and not bar:
                    feedback.pushInfo(text)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    if result.cancelled and result.returncode == 0:  # it finished as the signal came
        result.cancelled, result.finished_first = False, True
    if result.cancelled:
        for path, snap in before.items():
            result.removed += _clear_leftovers(path, snap)
    elif result.returncode and not result.errors:
        result.errors = tail or [f"geomm exited with status {result.returncode}"]
    return result


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def _exited(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether the child has exited within ``timeout`` s, without reaping it (its process group
    id stays reserved until :meth:`Popen.wait`)."""
    end = time.monotonic() + timeout
    while True:
        if hasattr(os, "waitid"):
            try:
                if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                    return True
            except ChildProcessError:
                return True
        elif proc.poll() is not None:  # Windows; macOS before Python 3.13
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the run and everything it started (its process group)."""
    if os.name != "posix":  # Windows: Ctrl-Break to the group, then kill
        proc.send_signal(getattr(signal, "CTRL_BREAK_EVENT", signal.SIGTERM))
        if not _exited(proc, GRACE_INT):
            proc.kill()
        return
    for sig, grace in ((signal.SIGINT, GRACE_INT), (signal.SIGTERM, GRACE_TERM)):
        _killpg(proc.pid, sig)
        if _exited(proc, grace):
            break
    _killpg(proc.pid, signal.SIGKILL)  # the leader is gone or stuck; children it left too


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass(frozen=True)
class _Snap:
    existed: bool
    inside: frozenset[str]
    beside: frozenset[str]


def _snapshot(path: Path) -> _Snap:
    inside = frozenset(os.listdir(path)) if path.is_dir() else frozenset()
    parent = path.parent
    beside = frozenset(n for n in os.listdir(parent) if n.startswith(f".{path.name}")) \
        if parent.is_dir() else frozenset()
    return _Snap(path.exists(), inside, beside)


def _clear_leftovers(path: Path, snap: _Snap) -> list[Path]:
    """Remove the hidden files a killed geomm run left in and beside ``path`` (work folders,
    partial files, its lock) that were not there before, and ``path`` itself if the run
    created it as a folder that is now empty. A run killed while committing its outputs
    (geomm's ``.geomm-commit`` journal is there) is left for geomm to finish."""
    removed: list[Path] = []
    if path.is_dir() and (path / ".geomm-commit").exists():
        return removed
    found = [path / n for n in (os.listdir(path) if path.is_dir() else ())
             if n.startswith(".") and n not in snap.inside]
    if path.parent.is_dir():
        found += [path.parent / n for n in os.listdir(path.parent)
                  if n.startswith(f".{path.name}") and n not in snap.beside]
    for p in found:
        if _remove(p):
            removed.append(p)
    if not snap.existed and path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        removed.append(path)
    return removed


def _remove(p: Path) -> bool:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
        return not p.exists()
    if p.name.endswith(".geomm-lock") and sys.platform != "win32":
        import fcntl

        try:
            fd = os.open(p, os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it: unlink it
        except OSError:
            os.close(fd)
            return False
        try:
            p.unlink(missing_ok=True)
        finally:
            os.close(fd)
        return True
    p.unlink(missing_ok=True)
    return True
