"""The sample cache on disk: whether a sample folder is whole, which files in it are not the
sample's, and what killed fetches left beside it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from geomm._lock import pid_alive

__all__ = ["MARKER", "clear_dead_staging", "is_complete", "not_the_samples"]

MARKER = ".geomm-sample.json"
"""In a sample folder: the archive's sha256 and every extracted file with its size."""


def clear_dead_staging(base: Path, name: str) -> None:
    """Remove the staging folders (``.<name>-<pid>-*``) of fetches killed before they could
    clean up (a live process's own are left alone)."""
    for p in base.glob(f".{name}-*-*"):
        pid = p.name[len(name) + 2:].split("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):  # else not one of ours, or alive
            shutil.rmtree(p, ignore_errors=True)


def is_complete(root: Path, sha256: str) -> bool:
    """True when ``root`` holds this sample's extraction, every file still in place at the
    size it was extracted with (a truncated or emptied file is fetched again)."""
    try:
        doc = json.loads((root / MARKER).read_text())
        sizes = {str(k): int(v) for k, v in dict(doc["sizes"]).items()}
    except (OSError, ValueError, KeyError, TypeError):
        return False  # no marker, or one of a geomm that did not record sizes
    return (doc.get("sha256") == sha256 and bool(sizes)
            and all(_size(root / f) == n for f, n in sizes.items()))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else -1
    except OSError:
        return -1


def not_the_samples(root: Path) -> list[str]:
    """Files under ``root`` (a sample folder of geomm's) that its marker does not list."""
    try:
        doc = json.loads((root / MARKER).read_text())
        ours = {str(f) for f in doc.get("files") or []} | {MARKER}
    except (OSError, ValueError, TypeError, AttributeError):
        return []  # no readable marker (checked before): nothing to tell apart
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and str(p.relative_to(root)) not in ours)
