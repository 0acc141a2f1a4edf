"""A real PostGIS database for the tests: Debian's PostgreSQL in a fresh temporary cluster.

``start_postgis(workdir)`` starts a cluster with :func:`tests.stacserver.start_cluster` (free
127.0.0.1 port, the ``postgres`` system user when we are root, the server dies with the test
process), but with password (SCRAM) authentication over TCP, so
that the tests send real passwords; then it creates the database ``geomm`` with
``CREATE EXTENSION postgis``. ``PgServer.stop()`` stops the server and removes the cluster.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.stacserver import Cluster, _tail, missing_postgres_postgis, start_cluster

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
class PgServer(Cluster):
    """A running PostgreSQL cluster with the PostGIS database ``geomm``."""

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


def start_postgis(workdir: Path, timeout: float = 60) -> PgServer:
    """Start a cluster and create the PostGIS database ``geomm``; logs in ``workdir``. Raises
    RuntimeError with a one-line reason (and the log's tail) when something does not start."""
    reason = missing_postgis()
    if reason:
        raise RuntimeError(reason)
    server = start_cluster(workdir, timeout, password=PASSWORD, cls=PgServer)
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
                           f"| postgres log: {_tail(workdir / 'postgres.log', 3)}") from e
    return server
