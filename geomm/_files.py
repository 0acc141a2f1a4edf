"""File identities: content digests and (path, size, mtime) stamps."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_stamp", "sha256_file"]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_stamp(path: Path) -> tuple[str, int | None, int | None]:
    """``(absolute path, size, mtime_ns)``; size and mtime None for a missing file."""
    try:
        st = path.stat()
    except OSError:
        return str(path), None, None
    return str(path.resolve()), st.st_size, st.st_mtime_ns
