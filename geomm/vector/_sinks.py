"""Where :func:`geomm.vector.vectorize.vectorize` writes its polygons: vector files.

Chunks of polygons arrive as an iterator and are streamed into one file under a private name
beside the output (renamed into place when complete): GeoParquet with pyarrow (row group by row
group), every other format through GDAL/OGR (``pyogrio.write_arrow`` on a stream of Arrow record
batches: one dataset open from the first chunk to the last, whatever the driver). A GeoPackage
is written as version 1.2 (GDAL 3.6 warns that 1.4 "may only be partially supported") and
carries its QGIS style in a ``layer_styles`` table.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely

from geomm._outputs import PARTIAL_TAG, partial_path
from geomm.errors import GeommWarning
from geomm.vector._common import Chunk, VectorizeError
from geomm.vector.styles import StyleClass, style_row, vector_qml

__all__ = ["FORMATS", "check_side_files", "commit_file", "drop_file", "drop_partial_folders",
           "resolve_driver", "style_path", "temp_path", "write_file"]

FORMATS = {".gpkg": "GPKG", ".parquet": "GeoParquet", ".geoparquet": "GeoParquet",
           ".fgb": "FlatGeobuf", ".shp": "ESRI Shapefile", ".geojson": "GeoJSON",
           ".json": "GeoJSON"}
"""Output suffixes and the driver each one selects (``driver=`` names any other OGR driver)."""
GPKG_VERSION = "1.2"
"""The GeoPackage version written: what GDAL up to 3.7.0 writes itself (1.4 from 3.7.1 on)."""
SHAPEFILE_PARTS = (".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".shp.xml", ".qml")
"""A shapefile's side files (an older map's are removed when it is replaced)."""
_GEOPARQUET = ("geoparquet", "parquet")


def _writable_drivers() -> dict[str, str]:
    import pyogrio

    return {k.lower(): k for k, mode in pyogrio.list_drivers(write=True).items() if mode}


def resolve_driver(out: Path, driver: str | None) -> str:
    """The driver that writes ``out``: ``driver`` (an OGR driver name, or GeoParquet) or the
    one of its suffix; raises a one-line :class:`VectorizeError` naming the choices."""
    if driver is not None:
        if driver.lower() in _GEOPARQUET:
            return "GeoParquet"
        found = _writable_drivers().get(driver.lower())
        if found is None:
            raise VectorizeError(f"{out}: driver {driver!r} cannot write vectors here; give "
                                 "one of GPKG, GeoParquet, FlatGeobuf, 'ESRI Shapefile', "
                                 "GeoJSON (or any name pyogrio.list_drivers(write=True) lists)")
        if found == "GPKG" and out.suffix.lower() != ".gpkg":  # GDAL would say it 3 times
            warnings.warn(f"{out}: a GeoPackage is named .gpkg by its specification (QGIS and "
                          "GDAL open it by content all the same)", GeommWarning, stacklevel=2)
        return found
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise VectorizeError(f"{out}: unknown output format {out.suffix or '(no suffix)'!r}; "
                             f"name it with one of {', '.join(FORMATS)}, or give --driver, "
                             "or a postgresql:// or PG: connection string")
    return FORMATS[suffix]


def style_path(out: Path, driver: str) -> Path | None:
    """The QGIS style :func:`write_file` puts beside ``out``: ``<name>.qml``; None for a
    GeoPackage (its style goes inside, in ``layer_styles``)."""
    return None if driver == "GPKG" else out.with_suffix(".qml")


def side_files(out: Path, driver: str) -> list[Path]:
    """The files beside ``out`` that writing it makes or replaces, known before the write: its
    QGIS style and, for a shapefile, every part (an older map's are removed). A driver may make
    others (MapInfo's ``.dat``, ``.id``, ``.map``): :func:`commit_file` checks those."""
    if driver == "ESRI Shapefile":
        return [out.with_name(out.stem + ext) for ext in SHAPEFILE_PARTS]
    style = style_path(out, driver)
    return [] if style is None else [style]


def _taken(out: Path, paths: Iterable[Path]) -> str | None:
    """The one-line refusal of ``paths`` (side files of ``out``) that exist, or None."""
    taken = sorted({p for p in paths if p != out and (p.exists() or p.is_symlink())})
    if not taken:
        return None
    what = ("the QGIS style geomm writes beside" if taken == [out.with_suffix(".qml")]
            else "side files geomm writes or replaces with")
    names = ", ".join([str(taken[0])] + [p.name for p in taken[1:]])
    verb, it = ("exists", "it") if len(taken) == 1 else ("exist", "them")
    return (f"{names} already {verb} ({what} {out.name}); pass overwrite=True (--overwrite) to "
            f"replace {it}, or choose another output name")


def check_side_files(out: Path, driver: str, overwrite: bool) -> None:
    """Refuse, before anything is written, an output whose side files (:func:`side_files`)
    exist and not ``overwrite`` (nothing a user made beside the file is replaced unasked),
    a side file that is a folder, and a ``.qml`` output name (where its style would go)."""
    style = style_path(out, driver)
    if style is not None and out.suffix.lower() == ".qml":
        raise VectorizeError(f"{out}: .qml is the name of the QGIS style geomm writes beside "
                             "the output; name the output with its format's suffix (.geojson, "
                             ".fgb, .shp, .parquet, ...)")
    sides = side_files(out, driver)
    folders = [p for p in sides if p.is_dir() and not p.is_symlink()]
    if folders:
        raise VectorizeError(f"{folders[0]} is a folder where geomm writes a side file of "
                             f"{out.name}; move it away or choose another output name")
    if not overwrite and (msg := _taken(out, sides)):
        raise VectorizeError(msg)


def temp_path(out: Path) -> Path:
    """The private name ``out`` is written under (:func:`geomm._outputs.partial_path`), with a
    suffix even when ``out`` has none: its side files are found by its stem, which must be its
    own (``.map`` would take in ``.map.geomm-lock`` and any ``.map.*`` of the user's)."""
    tmp = partial_path(out)
    return tmp if out.suffix else tmp.with_name(tmp.name + ".tmp")


def _sidecars(tmp: Path) -> list[Path]:
    """The files a driver made beside ``tmp`` (a shapefile's ``.dbf``, ``.shx``, ...)."""
    stem = tmp.with_suffix("").name
    return sorted(p for p in tmp.parent.glob(glob.escape(stem) + ".*") if p != tmp
                  and not p.name.endswith(("-journal", "-wal", "-shm")))


def commit_file(tmp: Path, out: Path, driver: str, *, overwrite: bool) -> None:
    """Rename the complete ``tmp`` (a file, or the folder some drivers make) over ``out``: its
    side files first (a part of an older shapefile that this write did not make is removed),
    ``tmp`` itself last. Without ``overwrite``, a side file that exists by now (one a driver
    made that :func:`side_files` could not foresee) is refused before any rename."""
    stem = tmp.with_suffix("").name
    made = {out.with_name(out.stem + p.name[len(stem):]): p for p in _sidecars(tmp)}
    stale = [p for p in side_files(out, driver) if p != out and p not in made] \
        if driver == "ESRI Shapefile" else []
    if not overwrite and (msg := _taken(out, [*made, *stale])):
        raise VectorizeError(msg)
    for old in stale:
        old.unlink(missing_ok=True)
    for dst, src in made.items():
        os.replace(src, dst)
    os.replace(tmp, out)


def drop_partial_folders(out: Path) -> None:
    """Remove the folders that killed writers of ``out`` left (a driver that writes a folder,
    such as OpenFileGDB); :func:`geomm._outputs.drop_partials` removes their files."""
    for p in out.parent.glob(f".{glob.escape(out.name)}{PARTIAL_TAG}*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def drop_file(tmp: Path) -> None:
    """Remove what a failed write of ``tmp`` left (side files, SQLite's journals, a folder)."""
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    for p in _sidecars(tmp):
        p.unlink(missing_ok=True)
    for end in ("", "-journal", "-wal", "-shm"):
        tmp.with_name(tmp.name + end).unlink(missing_ok=True)


def write_file(path: Path, driver: str, crs: pyproj.CRS, layer: str, chunks: Iterable[Chunk],
               classes: Callable[[], Sequence[StyleClass]]) -> None:
    """Stream ``chunks`` into the new file ``path``; ``classes()`` (called after the last chunk)
    gives the style's categories: a GeoPackage's ``layer_styles`` row, else a QGIS style
    ``<name>.qml`` beside the file (:func:`style_path`; QGIS loads it as the layer's default
    style; it is renamed with the file's other side files, and :func:`check_side_files` has
    refused an existing one unless the user asked to overwrite)."""
    if driver == "GeoParquet":
        _write_parquet(path, crs, chunks)
        _write_qml(path, driver, classes())
        return
    import pyarrow as pa
    import pyogrio

    schema = _arrow_schema()
    batches = (pa.record_batch(_columns(c), schema=schema) for c in chunks)
    opts: dict[str, Any] = {}
    if driver == "GPKG":
        opts = {"dataset_options": {"VERSION": GPKG_VERSION},
                "layer_options": {"SPATIAL_INDEX": "YES"}}
    with warnings.catch_warnings():  # GDAL's "extension should be 'gpkg'", named once before
        warnings.filterwarnings("ignore", r".*(extension|non conformant)", RuntimeWarning)
        pyogrio.write_arrow(pa.RecordBatchReader.from_batches(schema, batches), path,
                            driver=driver, layer=layer, geometry_name="geometry",
                            geometry_type="Polygon", crs=crs.to_wkt(), **opts)
        if driver == "GPKG":
            write_gpkg_style(path, layer, classes())
        else:
            _write_qml(path, driver, classes())


def _write_qml(path: Path, driver: str, classes: Sequence[StyleClass]) -> None:
    style = style_path(path, driver)
    if style is not None and style != path:
        style.write_text(vector_qml(classes))


def write_gpkg_style(path: Path, layer: str, classes: Sequence[StyleClass]) -> None:
    """Add QGIS's ``layer_styles`` table to the GeoPackage ``path``, one row for ``layer``."""
    import pandas as pd
    import pyogrio

    geom_col = pyogrio.read_info(path, layer=layer).get("geometry_name") or "geom"
    row = style_row(classes, layer, geom_col)
    frame = pd.DataFrame({k: pd.array([v], dtype="string") if v is None else [v]
                          for k, v in row.items()})
    pyogrio.write_dataframe(frame, path, layer="layer_styles", driver="GPKG", append=True,
                            layer_options={"FID": "id"})


def _arrow_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("class_id", pa.int32()), ("class_name", pa.string()),
                      ("area_m2", pa.float64()), ("geometry", pa.binary())])


def _columns(chunk: Chunk) -> list[Any]:
    import pyarrow as pa

    ids, names, area, geoms = chunk
    return [pa.array(ids.astype(np.int32), pa.int32()), pa.array(names.tolist(), pa.string()),
            pa.array(area.astype(np.float64), pa.float64()),
            pa.array(shapely.to_wkb(geoms) if len(geoms) else [], pa.binary())]


def _write_parquet(path: Path, crs: pyproj.CRS, chunks: Iterable[Chunk]) -> None:
    """GeoParquet 1.1 (WKB column ``geometry``), one row group per chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # `geo` goes in the schema so that the Arrow schema and the file's key-value metadata
    # agree; it has no bbox, which is optional and not known before the end
    geo = {"version": "1.1.0", "primary_column": "geometry",
           "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"],
                                    "crs": crs.to_json_dict()}}}
    schema = _arrow_schema().with_metadata({"geo": json.dumps(geo)})
    with pq.ParquetWriter(path, schema) as writer:
        for chunk in chunks:
            writer.write_table(pa.Table.from_arrays(_columns(chunk), schema=schema))
