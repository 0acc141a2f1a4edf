"""The command line's error boundary: any failure becomes one line that says what failed, on
which file or address, and what to do.

geomm's own errors (:class:`~geomm.errors.GeommError`) already read that way. Failures from
the layers below — the OS, GDAL/rasterio, pyogrio, zarr, dask.distributed — are translated
here: the exception chain is searched for the message that names a file (GDAL's read errors
name it in the *cause* of rasterio's "Read failed. See previous exception"), and the kind of
failure picks the advice. Anything not recognised still becomes one line, naming its type and
pointing at ``--debug`` for the traceback.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

from geomm.errors import GeommError

__all__ = ["explain"]

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_ADDRESS = re.compile(r"\b(?:tcp|tls|inproc|ucx|ws|wss)://[^\s'\"]+")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes/contexts, outermost first (no cycles)."""
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not s for s in seen):
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _message(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _os_line(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else None
    what = exc.strerror or _message(exc)
    name = f" {str(where)!r}" if where is not None else ""
    if exc.errno == errno.EROFS or (isinstance(exc, PermissionError) and where is not None
                                    and Path(str(where)).name.startswith(".")):
        # the first write of a command is often a hidden lock or temporary file: name the
        # folder the user chose, not that file
        folder = repr(str(Path(str(where)).parent)) if where is not None else "the output folder"
        return f"cannot write to {folder}: {what}; write the output to a folder you can write to"
    if exc.errno in _NO_SPACE:
        return (f"no space left on the device while writing{name or ' the output'}; free some "
                "space or write the output elsewhere (nothing partial was kept)")
    if isinstance(exc, NotADirectoryError):
        return (f"{what}:{name}; a part of this path is a file, not a folder: choose an output "
                "path under a folder")
    if isinstance(exc, IsADirectoryError):
        return f"{what}:{name}; this path is a folder, give a file path"
    if isinstance(exc, FileExistsError | NotADirectoryError) and where is not None and \
            Path(str(where)).is_file():
        return (f"{str(where)!r} is a file, not a folder: choose an output path under a "
                "folder")
    if isinstance(exc, FileExistsError):
        return f"{what}:{name}; remove it, choose another output, or pass --overwrite"
    if isinstance(exc, PermissionError):
        return f"{what}:{name}; check its permissions or choose another path"
    if isinstance(exc, FileNotFoundError):
        return f"{what}:{name}; check the path"
    return f"{what}:{name}" if name else what


def _gdal_line(chain: list[BaseException]) -> str | None:
    """A GDAL/rasterio/pyogrio failure: the most specific message of the chain (one naming a
    file, else the innermost), with advice."""
    mods = ("rasterio", "pyogrio", "fiona", "osgeo")
    if not any(type(e).__module__.split(".")[0] in mods for e in chain):
        return None
    texts = [_message(e) for e in chain if type(e).__module__.split(".")[0] in mods]
    named = [t for t in texts if re.search(r"[\w.-]+\.(tif{1,2}|jp2|vrt|img|nc|gpkg|shp|"
                                           r"parquet|fgb|geojson|json)\b", t, re.I)]
    text = (named or texts)[-1] if texts else _message(chain[0])
    text = text.replace("See previous exception", "").strip(" .;")
    if re.search(r"read-only file system|attempt to create", text, re.I):
        return f"writing failed: {text}; write the output to a folder you can write to"
    if re.search(r"permission denied", text, re.I):
        return f"{text}; check the permissions of that file or folder"
    if re.search(r"read|decode|stream too short|TIFFRead|IReadBlock|truncat|corrupt",
                 text, re.I):
        return (f"reading a raster failed: {text}; the file is probably truncated or corrupt: "
                "download or write it again")
    if re.search(r"not recognized|not a supported|no such file|does not exist", text, re.I):
        return f"{text}; check the path and that it is a raster or vector file GDAL can open"
    if re.search(r"write|no space|disk|full|sqlite|insert into|database", text, re.I):
        return (f"writing failed: {text}; check the free disk space and the permissions of "
                "the output folder")
    return f"GDAL: {text}"


def _distributed_line(chain: list[BaseException]) -> str | None:
    for e in chain:
        text = _message(e)
        addr = _ADDRESS.search(text)
        if addr and re.search(r"connect|timed out|refused|unreachable|closed", text, re.I):
            return (f"cannot reach the Dask scheduler at {addr.group(0)} ({text}); check the "
                    "address and that the scheduler runs, or leave --scheduler out to use a "
                    "local cluster")
    return None


def explain(exc: BaseException) -> str:
    """One line (no newline) for a failure, without the ``geomm: error:`` prefix."""
    if isinstance(exc, GeommError):
        return " ".join(str(exc).split())
    chain = _chain(exc)
    for finder in (_distributed_line, _gdal_line):
        line = finder(chain)
        if line:
            return line
    for e in chain:
        if isinstance(e, OSError) and (e.errno is not None or e.filename is not None):
            return _os_line(e)
    for e in chain:
        if isinstance(e, GeommError):
            return " ".join(str(e).split())
    if isinstance(exc, MemoryError):
        return ("out of memory; use smaller tiles or windows (--tile-size, --window), fewer "
                "workers, or a machine with more memory")
    return (f"unexpected {type(exc).__name__}: {_message(exc)} (run again with --debug for the "
            "traceback, and please report it)")
