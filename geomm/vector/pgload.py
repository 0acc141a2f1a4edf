"""Batch jobs into one PostGIS table: each block's vector map copied in as its own rows.

Every row carries the ``block_id`` of the block that made it. :func:`load_file` replaces a
block's rows in one transaction (delete, then copy), so a block loaded again (a resumed or
retried job) never leaves duplicates, and a killed load leaves the table as it was;
:func:`blocks_in` tells a resumed job which blocks' rows are there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely

from geomm.vector._common import Chunk, VectorizeError
from geomm.vector.postgis import PgTarget, _exists, _ident, _Tx, write_postgis
from geomm.vector.styles import STYLE_NAME

__all__ = ["blocks_in", "check_table", "load_file", "load_missing"]

_ATTRS = ["class_id", "class_name", "area_m2"]


def check_table(target: PgTarget, *, append: bool) -> None:
    """Connect (a bad address or password fails here, in one line) and refuse an existing
    table unless ``append``."""
    with _Tx(target) as cur:
        if _exists(cur, target.schema, target.table) is not None and not append:
            raise VectorizeError(f"{target} already exists; pass --append to add to it (a "
                                 "block's rows replace that block's earlier rows) or name "
                                 "a new table")


def blocks_in(target: PgTarget) -> set[str]:
    """The ``block_id`` values in the table (none when it does not exist yet)."""
    from psycopg import sql

    with _Tx(target) as cur:
        if _exists(cur, target.schema, target.table) is None:
            return set()
        rows = cur.execute(sql.SQL("SELECT DISTINCT block_id FROM {}").format(
            _ident(target.schema, target.table))).fetchall()
    return {str(r[0]) for r in rows}


def _chunk(batch: Any) -> Chunk:
    geom = next(n for n in batch.schema.names if n not in _ATTRS)
    return (batch.column("class_id").to_numpy(zero_copy_only=False).astype(np.int32),
            np.asarray(batch.column("class_name").to_pylist(), object),
            batch.column("area_m2").to_numpy(zero_copy_only=False).astype(np.float64),
            shapely.from_wkb(np.asarray(batch.column(geom).to_pylist(), object)))


def _parquet(path: Path, batch_size: int) -> tuple[pyproj.CRS, Iterator[Chunk]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    geo = json.loads((pf.schema_arrow.metadata or {}).get(b"geo", b"{}"))
    col = geo.get("primary_column", "geometry")
    crs = pyproj.CRS.from_json_dict(geo["columns"][col]["crs"])
    return crs, (_chunk(b) for b in pf.iter_batches(batch_size, columns=[*_ATTRS, col]))


def _ogr(path: Path, layer: str | None, batch_size: int) -> tuple[pyproj.CRS, Iterator[Chunk]]:
    import pyogrio

    crs = pyproj.CRS.from_user_input(pyogrio.read_info(path, layer=layer)["crs"])

    def chunks() -> Iterator[Chunk]:
        with pyogrio.open_arrow(path, layer=layer, batch_size=batch_size, columns=_ATTRS,
                                use_pyarrow=True) as (_, reader):
            for batch in reader:
                yield _chunk(batch)

    return crs, chunks()


def _gpkg_style(path: Path) -> tuple[str, str] | None:
    import pyogrio

    if "layer_styles" not in {str(n) for n, _ in pyogrio.list_layers(path)}:
        return None
    rows = pyogrio.read_dataframe(path, layer="layer_styles")
    rows = rows[rows["styleName"] == STYLE_NAME]
    return None if rows.empty else (str(rows.iloc[-1]["styleQML"]),
                                    str(rows.iloc[-1]["styleSLD"]))


def load_file(target: PgTarget, path: Path, block_id: str, *, layer: str | None = "classes",
              batch_size: int = 20_000) -> None:
    """Copy a vector map geomm wrote (``path``: GeoPackage, GeoParquet, FlatGeobuf, ...) into
    the table as block ``block_id``, in one transaction replacing that block's rows; the
    GeoPackage's QGIS style row comes along."""
    gpkg = path.suffix.lower() == ".gpkg"
    if path.suffix.lower() in (".parquet", ".geoparquet"):
        crs, chunks = _parquet(path, batch_size)
    else:
        crs, chunks = _ogr(path, layer if gpkg else None, batch_size)
    write_postgis(target, chunks, crs, lambda: _gpkg_style(path) if gpkg else None,
                  mode="append", block_id=block_id)


def load_missing(target: PgTarget, maps: Mapping[str, Path], *, again: Iterable[str] = ()
                 ) -> list[str]:
    """Copy in each map of ``maps`` (block id -> file) whose block has no rows in the table
    yet, or is named in ``again``; returns the blocks copied."""
    present, again = blocks_in(target), set(again)
    done = []
    for block_id, path in maps.items():
        if block_id in again or block_id not in present:
            load_file(target, path, block_id)
            done.append(block_id)
    return done
