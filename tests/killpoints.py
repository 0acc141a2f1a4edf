"""Kill a geomm command just before its N-th rename: ``tests/killshim.c``, an LD_PRELOAD
wrapper of libc's rename/renameat/renameat2 (built with gcc on first use), counts the
process's renames from every caller (Python, GDAL, Rust, ctypes; any thread) and SIGKILLs it
at the chosen one. strace's fault injection does the same through ptrace stops at every
syscall, which made each run 3-4x slower here."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.conftest import need_program

SOURCE = Path(__file__).with_name("killshim.c")


def shim() -> Path:
    """The built wrapper (cached in the temp folder by its source's hash)."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    lib = Path(tempfile.gettempdir()) / f"geomm-killshim-{digest}.so"
    if not lib.exists():
        gcc = need_program("gcc", why="the kill tests build an LD_PRELOAD rename wrapper")
        tmp = lib.with_name(f"{lib.name}.{os.getpid()}.tmp")
        subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-o", str(tmp), str(SOURCE), "-ldl"],
                       check=True, capture_output=True, text=True)
        os.replace(tmp, lib)
    return lib


def run(args: list[str], cwd: Path, *, kill_at: int | None = None, log: Path | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m geomm.cli ARGS`` under the wrapper; killed at rename ``kill_at`` (1-based)."""
    env = {**os.environ, "LD_PRELOAD": str(shim()),
           "GEOMM_KILL_AT_RENAME": str(kill_at or 0), "GEOMM_RENAME_LOG": str(log or "")}
    return subprocess.run([sys.executable, "-m", "geomm.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def renames(args: list[str], cwd: Path, log: Path) -> list[tuple[int, str, str]]:
    """The command's renames in order, as (N, source, target); it must succeed."""
    log.unlink(missing_ok=True)
    proc = run(args, cwd, log=log)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []
    log.unlink(missing_ok=True)
    return [(int(n), src, dst) for n, src, dst in rows]


def sampled(rows: list[tuple[int, str, str]],
            alike: Callable[[str, str], str | None]) -> list[int]:
    """Kill points among a run's renames: every rename for which ``alike(src, dst)`` is None,
    and the first and the last of each group of renames it names (renames of one group do the
    same thing to different files, so the ones between leave the output in a state the first
    and the last already cover)."""
    groups: dict[str, list[int]] = {}
    keep = set()
    for n, src, dst in rows:
        group = alike(src, dst)
        if group is None:
            keep.add(n)
        else:
            groups.setdefault(group, []).append(n)
    keep |= {n for ns in groups.values() for n in (ns[0], ns[-1])}
    return sorted(keep)


def staged_commit(src: str, dst: str) -> str | None:
    """``sampled``'s groups for geomm._outputs' staged commit: the files finished inside the
    private work folder, and the moves of the finished files into the output (the commit
    journal's own rename, and anything else, is a kill point of its own)."""
    if "/.geomm-work-" in dst:
        return "finished in the work folder"
    if "/.geomm-work-" in src and not dst.endswith("/.geomm-commit"):
        return "moved into the output"
    return None


def commit_points(rows: list[tuple[int, str, str]]) -> list[int]:
    """``sampled`` kill points of a command that writes through geomm._outputs' staged commit;
    checks that they hold the journal's rename and the first and the last move into the
    output, and leave some alike renames out."""
    points = sampled(rows, staged_commit)
    moved = [n for n, src, dst in rows if staged_commit(src, dst) == "moved into the output"]
    journal = [n for n, src, dst in rows if staged_commit(src, dst) is None
               and dst.endswith("/.geomm-commit")]
    assert moved and journal and {journal[0], moved[0], moved[-1]} <= set(points), rows
    assert len(points) < len(rows), rows
    return points
