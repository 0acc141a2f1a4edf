"""The vector tests' fixtures: a real PostGIS database for the session (tests/pgserver.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import require_or_skip
from tests.pgserver import PgServer, missing_postgis, start_postgis


@pytest.fixture(scope="session")
def postgis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """PostgreSQL + PostGIS on 127.0.0.1 with password authentication, database ``geomm``;
    skipped when they are not installed (a failure under GEOMM_REQUIRE_TOOLS=1)."""
    reason = missing_postgis()
    if reason:
        require_or_skip(reason)
    server = start_postgis(tmp_path_factory.mktemp("postgis"))
    try:
        yield server
    finally:
        server.stop()
