"""File identities: content digests and (path, size, mtime) stamps."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["file_stamp", "follow_umask", "sha256_file", "umask"]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_stamp(path: Path | str) -> tuple[str, int | None, int | None]:
    """``(absolute path, size, mtime_ns)``; size and mtime None for a missing file. A remote
    file (:mod:`geomm._remote`) is stamped with its URL, HTTP size and ``Last-Modified``."""
    from geomm._remote import is_remote, remote_stamp

    if is_remote(path):
        return remote_stamp(str(path))
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return str(path), None, None
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``; else set and restored)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: Path) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would have (temporary files and
    folders are made private; what geomm hands over is as readable as the user's umask says)."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask())
