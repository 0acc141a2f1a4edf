"""The ``geomm`` command line: a thin skin over the Python API.

Each command parses its options and calls one API function. Heavy libraries (torch, torchgeo,
dask) are imported inside the commands that need them, so ``geomm --help``, ``geomm info`` and
``geomm sample`` stay fast. The command modules register themselves on :data:`main`
(:mod:`geomm.cli.group`) when imported here.
"""

from __future__ import annotations

from geomm.cli import (
    batch_cmds,  # noqa: F401  (each module registers its commands on `main`)
    commands,  # noqa: F401
    evaluate_cmds,  # noqa: F401
    predict_cmds,  # noqa: F401
    qgis_cmds,  # noqa: F401
    vector_cmds,  # noqa: F401
)
from geomm.cli.group import main

__all__ = ["main"]
