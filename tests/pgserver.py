"""A real PostGIS database for the tests: Debian's PostgreSQL in a fresh temporary cluster.

``start_postgis(workdir)`` runs ``initdb`` and ``postgres`` with the helpers of
:mod:`tests.stacserver` (free 127.0.0.1 port, the ``postgres`` system user when we are root,
the server dies with the test process), but with password (SCRAM) authentication over TCP, so
that the tests send real passwords; then it creates the database ``geomm`` with
``CREATE EXTENSION postgis``. ``PgServer.stop()`` stops the server and removes the cluster.
"""

from __future__ import annotations

import importlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.stacserver import (
    _die_with_parent,
    _free_port,
    _pg_ready,
    _stop,
    _tail,
    _wait,
    find_postgres,
    missing_postgres_postgis,
)

__all__ = ["PASSWORD", "PgServer", "missing_postgis", "start_postgis"]

PASSWORD = "s3cr%t pw@Zq9"
"""The superuser's password: a space, '%' and '@' test the quoting of connection strings."""


def missing_postgis() -> str | None:
    """None when PostgreSQL, PostGIS and psycopg are installed, else a one-line reason."""
    reason = missing_postgres_postgis("the PostGIS output tests run a real database")
    if reason:
        return reason
    try:
        importlib.import_module("psycopg")  # needs a libpq: really load it
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev,postgis]') - the PostGIS tests"
    return None


@dataclass
class PgServer:
    """A running PostgreSQL cluster with the PostGIS database ``geomm``."""

    host: str
    port: int
    workdir: Path
    pgroot: Path
    proc: subprocess.Popen[bytes] | None = None
    _logs: list[IO[bytes]] = field(default_factory=list)

    def dsn(self, user: str = "postgres", password: str | None = PASSWORD,
            dbname: str = "geomm") -> str:
        """A ``postgresql://`` URL (password percent-quoted) for ``user``."""
        from urllib.parse import quote

        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"

    def keywords(self, user: str = "postgres", password: str = PASSWORD) -> str:
        """The same as a libpq key=value string (GDAL's ``PG:`` form without the prefix)."""
        pw = password.replace("\\", "\\\\").replace("'", "\\'")
        return f"host={self.host} port={self.port} dbname=geomm user={user} password='{pw}'"

    def connect(self, **kw: Any) -> Any:
        import psycopg

        return psycopg.connect(self.dsn(), **kw)

    def stop(self) -> None:
        """Stop PostgreSQL (fast shutdown) and remove the cluster folder."""
        _stop(self.proc, signal.SIGINT)
        for f in self._logs:
            f.close()
        self._logs.clear()
        shutil.rmtree(self.pgroot, ignore_errors=True)


def start_postgis(workdir: Path, timeout: float = 60) -> PgServer:
    """Start a cluster and create the PostGIS database ``geomm``; logs in ``workdir``. Raises
    RuntimeError with a one-line reason (and the log's tail) when something does not start."""
    reason = missing_postgis()
    if reason:
        raise RuntimeError(reason)
    bindir = find_postgres()
    assert bindir is not None
    workdir.mkdir(parents=True, exist_ok=True)
    pgroot = Path(tempfile.mkdtemp(prefix="geomm-pg-"))
    owner: dict[str, Any] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pw = pwd.getpwnam("nobody")
        os.chown(pgroot, pw.pw_uid, pw.pw_gid)
        owner = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    server = PgServer("127.0.0.1", 0, workdir, pgroot)
    pwfile = pgroot / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if owner:
        os.chown(pwfile, owner["user"], owner["group"])
    log_path = workdir / "initdb.log"
    with log_path.open("wb") as log:
        try:
            rc = str(subprocess.run(
                [str(bindir / "initdb"), "-D", str(pgroot / "data"), "-U", "postgres",
                 "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                 "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                cwd=pgroot, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                **owner).returncode)
        except subprocess.TimeoutExpired:
            rc = f"timed out after {timeout:.0f} s"
    pwfile.unlink()
    if rc != "0":
        server.stop()
        raise RuntimeError(f"initdb failed ({rc}): {_tail(log_path)} [log: {log_path}]")
    pg_log = workdir / "postgres.log"
    for attempt in range(3):  # another program may take the free port before postgres binds it
        server.port = _free_port()
        server._logs.append(pg_log.open("wb"))
        server.proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(pgroot / "data"), "-k", str(pgroot),
             "-h", server.host, "-p", str(server.port), "-c", "fsync=off",
             "-c", "full_page_writes=off", "-c", "synchronous_commit=off"],
            cwd=pgroot, stdin=subprocess.DEVNULL, stdout=server._logs[-1],
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent(signal.SIGINT), **owner)
        err = _wait("PostgreSQL", _pg_ready(server.dsn(dbname="postgres")), server.proc, pg_log,
                    timeout)
        if err is None:
            break
        _stop(server.proc, signal.SIGINT)
        if "already in use" not in err or attempt == 2:
            server.stop()
            raise RuntimeError(err)
    try:
        import psycopg

        with psycopg.connect(server.dsn(dbname="postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE geomm")
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")
    except Exception as e:
        server.stop()
        msg = " ".join(str(e).split())[:300]
        raise RuntimeError(f"creating the PostGIS database failed: {type(e).__name__}: {msg} "
                           f"| postgres log: {_tail(pg_log, 3)}") from e
    return server
