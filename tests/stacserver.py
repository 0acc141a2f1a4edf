"""A real STAC API for the tests: Debian's PostgreSQL + PostGIS with the pgstac schema
(``pypgstac migrate``), served by ``stac-fastapi-pgstac`` under uvicorn on 127.0.0.1.

The cluster is made by ``initdb`` in a fresh temporary folder (its unix socket there too),
listens on a free 127.0.0.1 port with ``trust`` authentication and no fsync, and runs as the
``postgres`` system user (``nobody`` if there is none) when we are root, since PostgreSQL
refuses to run as root. ``StacApi.stop()`` stops both servers and removes that folder.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import quote

__all__ = ["Cluster", "StacApi", "find_postgres", "missing_stac_tools", "start_cluster",
           "start_stac_api"]

C = TypeVar("C", bound="Cluster")

PG_VERSIONS = ("15", "16", "17", "14", "13")
"""Debian's PostgreSQL major versions to look for, the one .ci/run installs first."""


def find_postgres() -> Path | None:
    """Debian's PostgreSQL bin folder (``/usr/lib/postgresql/N/bin``, with ``initdb`` and
    ``postgres``), or None."""
    for ver in PG_VERSIONS:
        bindir = Path("/usr/lib/postgresql") / ver / "bin"
        if all(os.access(bindir / p, os.X_OK) for p in ("initdb", "postgres")):
            return bindir
    return None


def missing_postgres_postgis(why: str) -> str | None:
    """None when Debian's PostgreSQL and its PostGIS are installed, else a one-line reason
    ending in ``why``."""
    bindir = find_postgres()
    if bindir is None:
        return f"PostgreSQL is not installed (apt-get install postgresql-15) - {why}"
    ver = bindir.parent.name
    if not Path(f"/usr/share/postgresql/{ver}/extension/postgis.control").exists():
        return (f"PostGIS is not installed for PostgreSQL {ver} (apt-get install "
                f"postgresql-{ver}-postgis-3) - {why}")
    return None


def missing_stac_tools() -> str | None:
    """None when everything the STAC API needs is installed, else a one-line reason."""
    reason = missing_postgres_postgis("the STAC tests run a real pgstac database")
    if reason:
        return reason
    missing = []
    for module, dist in (("psycopg", "pypgstac[psycopg]"), ("pypgstac.load", "pypgstac[psycopg]"),
                         ("stac_fastapi.pgstac", "stac-fastapi-pgstac"),
                         ("uvicorn", "uvicorn"), ("pystac_client", "pystac-client")):
        try:
            found = importlib.util.find_spec(module) is not None
            if found and module in ("psycopg", "pypgstac.load"):
                importlib.import_module(module)  # psycopg needs a libpq: really load it
        except ImportError:
            found = False
        if not found and dist not in missing:
            missing.append(dist)
    if missing:
        return (f"Python packages missing: {' '.join(missing)} (pip install -e '.[dev]') - "
                "the STAC tests run a real STAC API")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 6) -> str:
    """The last lines of a log, joined into one line."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text[-lines:] if line.strip()) or "(empty log)"


def _die_with_parent(sig: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` if pytest dies without stopping it."""
    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG; after Popen's user switch, so it sticks
    return preexec


def _stop(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Cluster:
    """A running PostgreSQL cluster in a temporary folder."""

    host: str
    port: int
    workdir: Path
    """Logs: ``initdb.log``, ``postgres.log``."""
    pgroot: Path
    """The temporary cluster folder (data and unix socket), removed by ``stop()``."""
    proc: subprocess.Popen[bytes] | None = None
    _logs: list[IO[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        """Stop PostgreSQL (fast shutdown) and remove the cluster folder."""
        _stop(self.proc, signal.SIGINT)
        for f in self._logs:
            f.close()
        self._logs.clear()
        shutil.rmtree(self.pgroot, ignore_errors=True)


@dataclass
class StacApi:
    """A running STAC API and its pgstac database."""

    url: str
    """``http://127.0.0.1:PORT``, the STAC API's landing page."""
    db: Cluster
    """The PostgreSQL cluster holding pgstac (trust authentication)."""
    uvicorn: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def dsn(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/postgres``: the pgstac database."""
        return f"postgresql://postgres@{self.db.host}:{self.db.port}/postgres"

    def load(self, collections: list[dict[str, Any]], items: list[dict[str, Any]]) -> None:
        """Upsert STAC Collection and Item dicts into pgstac (collections first)."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        with PgstacDB(dsn=self.dsn) as db:
            loader = Loader(db=db)
            if collections:
                loader.load_collections(iter(collections), Methods.upsert)
            if items:
                loader.load_items(iter(items), Methods.upsert)

    def stop(self) -> None:
        """Stop uvicorn, then PostgreSQL (fast shutdown); remove the cluster folder."""
        _stop(self.uvicorn, signal.SIGTERM)
        if self._log is not None:
            self._log.close()
        self.db.stop()


def _wait(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path,
          timeout: float) -> str | None:
    """Poll ``ready()`` until it holds (None); else a one-line reason with the log's tail."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            how = f"exited {proc.returncode}" if proc.poll() is not None else f"{timeout:.0f} s"
            return f"{what} did not start ({how}): {_tail(log)} [log: {log}]"
        time.sleep(0.05)
    return None


def _pg_ready(dsn: str) -> Callable[[], bool]:
    def ready() -> bool:
        import psycopg

        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False
    return ready


def _http_ready(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return True
        except OSError:  # refused, or an HTTP error while the DB pool opens
            return False
    return ready


def start_cluster(workdir: Path, timeout: float = 60, *, password: str | None = None,
                  cls: type[C] = Cluster) -> C:  # type: ignore[assignment]
    """``initdb`` a fresh cluster and start ``postgres`` on a free 127.0.0.1 port; logs in
    ``workdir``. Without ``password`` every login is trusted; with it, TCP logins need it
    (SCRAM). Raises RuntimeError with a one-line reason (and the log's tail)."""
    bindir = find_postgres()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql-15)")
    workdir.mkdir(parents=True, exist_ok=True)
    # pytest's tmp folders are private to root: the cluster gets its own folder, owned by the
    # user postgres runs as, in the system temp folder (also short enough for the socket path)
    pgroot = Path(tempfile.mkdtemp(prefix="geomm-pg-"))
    owner: dict[str, Any] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pw = pwd.getpwnam("nobody")
        os.chown(pgroot, pw.pw_uid, pw.pw_gid)
        owner = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    cluster = cls("127.0.0.1", 0, workdir, pgroot)
    auth = ["--auth=trust"]
    if password is not None:
        pwfile = pgroot / "pw"
        pwfile.write_text(password + "\n")
        if owner:
            os.chown(pwfile, owner["user"], owner["group"])
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
    initdb_log = workdir / "initdb.log"
    with initdb_log.open("wb") as log:
        try:
            rc = str(subprocess.run(
                [str(bindir / "initdb"), "-D", str(pgroot / "data"), "-U", "postgres", *auth,
                 "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                cwd=pgroot, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                **owner).returncode)
        except subprocess.TimeoutExpired:
            rc = f"timed out after {timeout:.0f} s"
    (pgroot / "pw").unlink(missing_ok=True)
    if rc != "0":
        cluster.stop()
        raise RuntimeError(f"initdb failed ({rc}): {_tail(initdb_log)} [log: {initdb_log}]")
    pg_log = workdir / "postgres.log"
    secret = "" if password is None else ":" + quote(password, safe="")
    for attempt in range(3):  # another program may take the free port before postgres binds it
        cluster.port = _free_port()
        cluster._logs.append(pg_log.open("wb"))
        cluster.proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(pgroot / "data"), "-k", str(pgroot),
             "-h", cluster.host, "-p", str(cluster.port), "-c", "fsync=off",
             "-c", "full_page_writes=off", "-c", "synchronous_commit=off"],
            cwd=pgroot, stdin=subprocess.DEVNULL, stdout=cluster._logs[-1],
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent(signal.SIGINT), **owner)
        dsn = f"postgresql://postgres{secret}@{cluster.host}:{cluster.port}/postgres"
        err = _wait("PostgreSQL", _pg_ready(dsn), cluster.proc, pg_log, timeout)
        if err is None:
            return cluster
        _stop(cluster.proc, signal.SIGINT)
        if "already in use" not in err or attempt == 2:
            break
    cluster.stop()
    raise RuntimeError(err)


def start_stac_api(workdir: Path, timeout: float = 60) -> StacApi:
    """Start PostgreSQL + pgstac and the STAC API; logs in ``workdir``. Raises RuntimeError
    with a one-line reason (and the log's tail) when something does not start."""
    reason = missing_stac_tools()
    if reason:
        raise RuntimeError(reason)
    api = StacApi("", start_cluster(workdir, timeout))
    pg_log = workdir / "postgres.log"
    try:
        from pypgstac.db import PgstacDB
        from pypgstac.migrate import Migrate

        with PgstacDB(dsn=api.dsn) as db:
            Migrate(db).run_migration()
    except Exception as e:
        api.stop()
        msg = " ".join(str(e).split())[:300]
        raise RuntimeError(f"pypgstac migrate failed: {type(e).__name__}: {msg} "
                           f"| postgres log: {_tail(pg_log, 3)}") from e

    env = {**os.environ, "PGUSER": "postgres", "PGPASSWORD": "unused-trust-auth",
           "PGHOST": api.db.host, "PGPORT": str(api.db.port), "PGDATABASE": "postgres",
           "DB_MIN_CONN_SIZE": "1", "DB_MAX_CONN_SIZE": "4"}
    api_port = _free_port()
    api.url = f"http://127.0.0.1:{api_port}"
    api_log = workdir / "uvicorn.log"
    api._log = api_log.open("wb")
    api.uvicorn = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(api_port), "--log-level", "warning"],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=api._log,
        stderr=subprocess.STDOUT, preexec_fn=_die_with_parent(signal.SIGTERM))
    err = _wait("stac-fastapi-pgstac (uvicorn)", _http_ready(api.url + "/_mgmt/ping"),
                api.uvicorn, api_log, timeout)
    if err is not None:
        api.stop()
        raise RuntimeError(err)
    return api
