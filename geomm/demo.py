"""``geomm demo``: the whole pipeline on the real ``s2-t33uuu`` sample scene."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from geomm import sampledata


def run_demo(*, dest: Path | None = None, echo: Callable[[str], object] = print) -> None:
    """Fetch the s2-t33uuu sample and describe what it holds."""
    sample = sampledata.fetch("s2-t33uuu", dest=dest)
    echo(sample.summary())
