"""Where geomm keeps downloaded and derived files that can be rebuilt at any time."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Return the cache root: ``$GEOMM_CACHE`` if set, else the platform's user cache dir."""
    env = os.environ.get("GEOMM_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("geomm", appauthor=False))
