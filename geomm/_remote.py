"""Remote inputs: URLs and GDAL virtual-file paths, read with range requests.

Anywhere a recipe or a command takes a file, it may also take ``http(s)://``, ``s3://``,
``gs://``, ``az://`` or a GDAL ``/vsi…/`` path. :func:`as_path` keeps such a path as a
:class:`RemotePath` (a ``pathlib.Path`` would fold ``//`` and ask the local disk); GDAL reads
it through its virtual file systems (``/vsicurl/``, ``/vsis3/``, ...), fetching only the byte
ranges a window needs. :func:`configure_gdal` and :func:`remote_env` set sensible defaults for
that, each only where the user's environment does not set it already. A remote file that
cannot be read is named in a one-line error with the HTTP status (:func:`why_unreadable`).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Union

__all__ = ["GDAL_DEFAULTS", "NO_LISTING", "AnyPath", "RemotePath", "as_path", "configure_gdal",
           "gdal_path", "is_remote", "remote_env", "remote_stamp", "remote_vector_env",
           "why_unreadable"]

_SCHEMES = {"http://": "/vsicurl/", "https://": "/vsicurl/", "s3://": "/vsis3/",
            "gs://": "/vsigs/", "az://": "/vsiaz/"}

GDAL_DEFAULTS = {
    "GDAL_HTTP_MAX_RETRY": "5",                   # 429 and 5xx answers are retried ...
    "GDAL_HTTP_RETRY_DELAY": "0.5",               # ... the first time after 0.5 s
    "GDAL_HTTP_CONNECTTIMEOUT": "15",
    "GDAL_HTTP_TIMEOUT": "120",
    "GDAL_HTTP_MULTIRANGE": "YES",                # several ranges in one request
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "CPL_VSIL_CURL_CACHE_SIZE": str(64 << 20),    # the block cache of remote files
}
"""GDAL settings for remote reads, put in the process environment (GDAL reads them there in
every thread, and in both GDALs: rasterio's and pyogrio's) where the user set nothing. Each
affects HTTP and cloud reads only."""

NO_LISTING = "GDAL_DISABLE_READDIR_ON_OPEN"
"""Set to ``EMPTY_DIR`` only while a remote file is opened (:func:`remote_env`): no
directory listing per remote file. Set process-wide it would also hide a local file's
sidecars (``.ovr`` overviews, a ``.prj`` with the CRS)."""


class RemotePath(str):
    """A URL or GDAL virtual-file path, with the few ``Path`` members geomm uses on inputs."""

    @property
    def _pure(self) -> PurePosixPath:
        return PurePosixPath(self.split("?", 1)[0])

    @property
    def name(self) -> str:
        """The last part of the path (the query string left out)."""
        return self._pure.name

    @property
    def stem(self) -> str:
        """:attr:`name` without its suffix."""
        return self._pure.stem

    @property
    def suffix(self) -> str:
        """The file extension of :attr:`name`."""
        return self._pure.suffix

    @property
    def parent(self) -> RemotePath:
        """The folder URL."""
        return RemotePath(self.split("?", 1)[0].rsplit("/", 1)[0])

    def __truediv__(self, other: str | os.PathLike[str]) -> RemotePath:
        return RemotePath(self.rstrip("/") + "/" + str(other).lstrip("/"))

    def exists(self) -> bool:
        """True: whether a remote file is there is found out when it is opened."""
        return True

    def is_file(self) -> bool:
        """True (see :meth:`exists`)."""
        return True

    def is_absolute(self) -> bool:
        """A URL is absolute."""
        return True

    def expanduser(self) -> RemotePath:
        """Itself."""
        return self

    def resolve(self) -> RemotePath:
        """Itself."""
        return self

    @property
    def gdal(self) -> str:
        """The path GDAL opens: ``/vsicurl/https://…``, ``/vsis3/bucket/key``, or as given."""
        return gdal_path(self)


AnyPath = Union[Path, RemotePath]  # noqa: UP007  (a runtime alias, not only an annotation)
"""A local file or a remote one."""


def is_remote(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a URL of a scheme GDAL reads or a GDAL ``/vsi…/`` path."""
    text = str(path) if not isinstance(path, str) else path
    return text.startswith("/vsi") or any(text.startswith(s) for s in _SCHEMES)


def as_path(path: str | os.PathLike[str]) -> AnyPath:
    """``path`` as a :class:`RemotePath` when it is remote, else as a ``Path``."""
    if isinstance(path, RemotePath | Path):
        return path
    text = str(path)
    return RemotePath(text) if is_remote(text) else Path(text)


def gdal_path(path: str | os.PathLike[str]) -> str:
    """The name GDAL (rasterio, pyogrio) opens for ``path``: URLs become ``/vsi…/`` paths."""
    text = str(path)
    for scheme, vsi in _SCHEMES.items():
        if text.startswith(scheme):
            return vsi + (text if vsi == "/vsicurl/" else text[len(scheme):])
    return text


def configure_gdal() -> None:
    """Put :data:`GDAL_DEFAULTS` into the process environment where the user set nothing."""
    for key, value in GDAL_DEFAULTS.items():
        os.environ.setdefault(key, value)


def _listing_off(path: str | os.PathLike[str]) -> bool:
    """Whether to open ``path`` without directory listing: it is remote and the user's
    environment does not say otherwise (geomm's HTTP defaults are set on the way)."""
    if not is_remote(path):
        return False
    configure_gdal()
    return NO_LISTING not in os.environ


@contextmanager
def remote_env(path: str | os.PathLike[str]) -> Iterator[None]:
    """While a remote ``path`` is opened or read with rasterio: no directory listing
    (:data:`NO_LISTING`), unless the user's environment says otherwise. In a worker thread
    the setting is the thread's own; a local ``path`` changes nothing."""
    if not _listing_off(path):
        yield
        return
    import rasterio

    with rasterio.Env(**{NO_LISTING: "EMPTY_DIR"}):
        yield


@contextmanager
def remote_vector_env(path: str | os.PathLike[str]) -> Iterator[None]:
    """:func:`remote_env` for pyogrio (its own GDAL, set for the process while the block
    runs: call it from one thread)."""
    if not _listing_off(path):
        yield
        return
    import pyogrio

    pyogrio.set_gdal_config_options({NO_LISTING: "EMPTY_DIR"})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({NO_LISTING: None})


def _http_url(path: str) -> str | None:
    text = path.removeprefix("/vsicurl/")
    return text if text.startswith(("http://", "https://")) else None


def _request(url: str, method: str) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, method=method, headers={"Range": "bytes=0-0"}
                                 if method == "GET" else {})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310 (http(s) only)
            return int(resp.status), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as e:
        return int(e.code), {k.lower(): v for k, v in (e.headers or {}).items()}


def why_unreadable(path: str) -> str:
    """Why a remote file could not be read, in a few words: ``HTTP 404 Not Found``,
    ``cannot connect (Connection refused)``; for other schemes, what GDAL said is all there
    is (``""``)."""
    url = _http_url(path)
    if url is None:
        return ""
    try:
        status, _ = _request(url, "GET")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return f"cannot connect ({reason})"
    from http import HTTPStatus

    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP {status} {phrase}".rstrip()


def not_a_raster(path: object, exc: BaseException, what: str) -> str:
    """The message for a file GDAL could not open as a raster: the HTTP status or connection
    failure of a URL, with the advice that fits it (a server that sends the file, 2xx, has
    sent something that is not a raster; range requests matter only otherwise)."""
    gdal = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not isinstance(path, RemotePath):
        return f"{path}: cannot read it as a raster ({gdal}; {what}); check that it is one"
    why = why_unreadable(path) or gdal
    if why.startswith("HTTP 2"):
        return (f"{path}: the server sends it ({why}) but it is not a raster GDAL reads "
                f"({gdal}; {what}); check that the URL points at the raster file")
    return (f"{path}: cannot read it as a raster ({why}; {what}); check the URL and that "
            "its server answers range requests")


def remote_stamp(path: str) -> tuple[str, int | None, int | None]:
    """``(url, size, mtime_ns)`` of a remote file from an HTTP ``HEAD`` (``Content-Length``,
    ``Last-Modified``); size and mtime None where the server does not say or the scheme is
    not HTTP (the store is then rebuilt only with ``--overwrite``)."""
    url = _http_url(path)
    if url is None:
        return str(path), None, None
    try:
        status, headers = _request(url, "HEAD")
    except (urllib.error.URLError, OSError):
        return str(path), None, None
    if status >= 400:
        return str(path), None, None
    size = headers.get("content-length")
    modified = headers.get("last-modified")
    mtime = None
    if modified:
        try:
            mtime = int(parsedate_to_datetime(modified).timestamp() * 1e9)
        except (TypeError, ValueError):
            mtime = None
    return str(path), int(size) if size and size.isdigit() else None, mtime
