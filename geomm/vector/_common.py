"""What the vector modules share: the error, a chunk of polygons, and a guarded chunk stream."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from geomm.errors import GeommError

__all__ = ["Chunk", "Guarded", "VectorizeError", "one_line"]

Chunk = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Polygons written together: class ids, class names, areas (m²), geometries in the CRS."""


class VectorizeError(GeommError, ValueError):
    """A class raster cannot be vectorized, or the output cannot be written."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split())


class Guarded:
    """An iterator of chunks that remembers the exception it raised (a write through a C
    stream, such as GDAL's, reports only that the stream failed)."""

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self.chunks = chunks
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[Chunk]:
        try:
            yield from self.chunks
        except GeneratorExit:  # closed by the consumer: its own error is the one to report
            raise
        except BaseException as exc:
            self.error = exc
            raise
