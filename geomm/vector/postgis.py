"""PostGIS output of :func:`geomm.vector.vectorize.vectorize`: polygons into a table, one
transaction per write.

The target is a connection string (``postgresql://user:pw@host:port/db`` or GDAL's
``PG:dbname=... host=...``, with ``active_schema=``/``tables=`` understood) and a table
``[schema.]name`` (default ``public.classes``). Columns: ``fid`` (identity, primary key),
``class_id``, ``class_name``, ``area_m2``, ``geom`` (``geometry(Polygon, SRID)``, SRID of the
raster's CRS, GiST index) and, for a batch job, ``block_id`` (indexed).

Every write is one transaction, so a failed or killed write leaves the table as it was: a new
table is created and filled in it; ``overwrite`` fills a staging table and swaps it for the old
one at the end; ``append`` copies the rows into the table (a batch block first deletes its own
rows, so a block written again replaces itself: no duplicate). Writers of one table are
serialized by a transaction advisory lock. The QGIS style goes into ``public.layer_styles`` in
the same transaction. Passwords never appear in a message: connection strings are shown with
``***`` in their place.
"""

from __future__ import annotations

import re
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyproj
import shapely

from geomm.errors import GeommWarning
from geomm.vector._common import Chunk, VectorizeError, one_line
from geomm.vector.styles import STYLE_NAME

__all__ = ["PgTarget", "is_postgis", "mask", "write_postgis"]

DEFAULT_SCHEMA, DEFAULT_TABLE = "public", "classes"
GEOM = "geom"
"""The geometry column."""
MAX_NAME = 48
"""Longest table name (PostgreSQL's 63 less room for the index and staging names)."""
_PREFIXES = ("postgresql://", "postgres://", "pg:")
_GDAL_KEY = re.compile(r"\b(active_schema|schemas|tables)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)",
                       re.IGNORECASE)
# a URL's password runs to the line's last '@' (an unquoted '@' or space in it is masked too)
_URL_PW = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)[^\n]*(@)", re.IGNORECASE)
_KEY_PW = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)
_RAW_PW = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|.*?)(?=[\s&]+\w+\s*=|$)",
                     re.IGNORECASE)
_INSTALL = "pip install 'geomm[postgis]'"
Style = Callable[[], tuple[str, str] | None]
"""Called after the last row: the QML and SLD of the table's style (None: no style row)."""


def is_postgis(out: object) -> bool:
    """Whether ``out`` is a PostgreSQL connection string (not a file name)."""
    return isinstance(out, str) and out.lower().startswith(_PREFIXES)


def mask(text: str) -> str:
    """``text`` with the password of every connection string in it replaced by ``***``."""
    return _URL_PW.sub(r"\1***\2", _KEY_PW.sub(r"\1***", text))


def _secrets(raw: str) -> tuple[str, ...]:
    """What of ``raw`` (a connection string, maybe malformed) may be a password, longest
    first: the password as written and decoded, and its pieces (a malformed string's error
    message quotes pieces)."""
    from urllib.parse import unquote

    found = [m.group(1).strip("'") for m in _RAW_PW.finditer(raw)]
    if "://" in raw and "@" in (rest := raw.split("://", 1)[1]):
        found.append(rest.rsplit("@", 1)[0].partition(":")[2])
    out = {t for f in found for t in (f, unquote(f), _quoted(unquote(f)))}
    out |= {p for f in list(out) for p in re.split(r"[@:/\s'&%]+", f) if len(p) >= 3}
    return tuple(sorted((s for s in out if s), key=len, reverse=True))


def _psycopg(shown: str) -> Any:
    try:
        import psycopg
    except ImportError:
        raise VectorizeError(f"{shown}: writing to PostGIS needs psycopg, which is not "
                             f"installed; {_INSTALL}") from None
    return psycopg


@dataclass(frozen=True, repr=False)
class PgTarget:
    """A PostGIS table to write; ``str()`` and ``repr()`` show no password."""

    shown: str
    """The connection string, password masked."""
    schema: str
    table: str
    _conninfo: str = field(compare=False)
    _secrets: tuple[str, ...] = field(compare=False, default=())

    def __str__(self) -> str:
        return f"{self.shown} table {self.schema}.{self.table}"

    def __repr__(self) -> str:
        return f"PgTarget({self})"

    def scrub(self, text: str) -> str:
        """``text`` (a server or driver message) with no password in it."""
        text = mask(text)
        for s in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(s, "***")
        return text

    @classmethod
    def parse(cls, out: str, layer: str | None = None) -> PgTarget:
        """Read ``out`` (a connection string) and ``layer`` (``[schema.]table``)."""
        shown = mask(out)
        psycopg = _psycopg(shown)
        text, gdal = out, {}
        if out.lower().startswith("pg:"):  # GDAL's keys (not libpq's) name schema and table
            def grab(m: re.Match[str]) -> str:
                gdal[m.group(1).lower()] = m.group(2).strip("'")
                return " "

            text = _GDAL_KEY.sub(grab, out[3:]).strip()
        try:
            params = psycopg.conninfo.conninfo_to_dict(text)
        except psycopg.Error as exc:
            raise VectorizeError(f"{shown}: not a PostgreSQL connection string ("
                                 f"{cls(shown, '', '', '', _secrets(out)).scrub(one_line(exc))}"
                                 "); "
                                 "write postgresql://USER@HOST:PORT/DB or "
                                 "PG:'host=... dbname=... user=...'") from None
        schema, table = DEFAULT_SCHEMA, DEFAULT_TABLE
        if gdal.get("active_schema") or gdal.get("schemas"):
            schema = (gdal.get("active_schema") or gdal["schemas"]).split(",")[0]
        if gdal.get("tables"):
            schema, table = _split(gdal["tables"].split(",")[0], schema, shown)
        if layer:
            schema, table = _split(layer, schema, shown)
        params.setdefault("application_name", "geomm")
        return cls(shown, schema, table, psycopg.conninfo.make_conninfo("", **params),
                   tuple(dict.fromkeys(_secrets(f"password='{params.get('password') or ''}'")
                                       + _secrets(out))))


def _quoted(pw: str) -> str:
    from urllib.parse import quote

    return quote(pw, safe="")


def _split(name: str, schema: str, shown: str) -> tuple[str, str]:
    sch, _, tab = name.rpartition(".")
    sch = sch or schema
    if not tab or not sch or len(tab) > MAX_NAME or len(sch) > 63:
        raise VectorizeError(f"{shown}: table {name!r} is not [SCHEMA.]TABLE with a table "
                             f"name of 1-{MAX_NAME} characters; name it e.g. "
                             "--table public.landcover")
    return sch, tab


def _connect(target: PgTarget) -> Any:
    psycopg = _psycopg(target.shown)
    try:
        return psycopg.connect(target._conninfo, connect_timeout=20)
    except psycopg.Error as exc:
        raise VectorizeError(f"{target.shown}: cannot connect ({target.scrub(one_line(exc))}); "
                             "check host, port, database, user and password (PGPASSWORD or "
                             "~/.pgpass keep it off the command line)") from None


class _Tx:
    """One transaction on a new connection: committed when the block ends, rolled back (and
    the error made one line, password masked) when it raises."""

    def __init__(self, target: PgTarget) -> None:
        self.target = target

    def __enter__(self) -> Any:
        self.conn = _connect(self.target)
        cur = self.conn.cursor()
        key = f"geomm:{self.target.schema}.{self.target.table}"
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
        return cur

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        psycopg = _psycopg(self.target.shown)
        try:
            if exc is None:
                self.conn.commit()
            else:
                self.conn.rollback()
        except psycopg.Error as err:
            if exc is None:
                exc = err
        finally:
            self.conn.close()
        if isinstance(exc, psycopg.Error):
            raise VectorizeError(f"{self.target}: {self.target.scrub(one_line(exc))}; nothing "
                                 "was written (the table is as it was)") from None


def _ident(*names: str) -> Any:
    from psycopg import sql

    return sql.Identifier(*names)


def _exists(cur: Any, schema: str, table: str) -> str | None:
    """The table's relkind ('r' a table, 'v' a view, ...) or None."""
    row = cur.execute("SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = "
                      "c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                      (schema, table)).fetchone()
    return None if row is None else str(row[0])


def _srid(cur: Any, crs: pyproj.CRS) -> int:
    """The SRID of ``crs`` in ``spatial_ref_sys`` (its EPSG code, or a row added for it)."""
    code = crs.to_epsg()
    if code is not None:
        row = cur.execute("SELECT srid FROM spatial_ref_sys WHERE auth_name = 'EPSG' AND "
                          "auth_srid = %s", (code,)).fetchone()
        if row:
            return int(row[0])
    wkt = crs.to_wkt("WKT1_GDAL") or crs.to_wkt()
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended('geomm:spatial_ref_sys', 0))")
    row = cur.execute("SELECT srid FROM spatial_ref_sys WHERE srtext = %s", (wkt,)).fetchone()
    if row:
        return int(row[0])
    new = int(cur.execute("SELECT COALESCE(MAX(srid), 939999) + 1 FROM spatial_ref_sys WHERE "
                          "srid BETWEEN 940000 AND 998999").fetchone()[0])
    with warnings.catch_warnings():  # "you will likely lose ... information": srtext keeps it
        warnings.simplefilter("ignore", UserWarning)
        proj4 = crs.to_proj4()
    cur.execute("INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, srtext, proj4text) "
                "VALUES (%s, 'geomm', %s, %s, %s)", (new, new, wkt, proj4))
    return new


def _create(cur: Any, schema: str, table: str, srid: int, block: bool) -> None:
    from psycopg import sql

    cols: list[Any] = [sql.SQL("fid bigint GENERATED BY DEFAULT AS IDENTITY"),
                       sql.SQL("class_id integer NOT NULL"),
                       sql.SQL("class_name text NOT NULL"),
                       sql.SQL("area_m2 double precision NOT NULL")]
    if block:
        cols.append(sql.SQL("block_id text NOT NULL"))
    cols.append(sql.SQL("{} geometry(Polygon, {}) NOT NULL").format(_ident(GEOM),
                                                                    sql.Literal(srid)))
    cols.append(sql.SQL("CONSTRAINT {} PRIMARY KEY (fid)").format(_ident(f"{table}_pkey")))
    cur.execute(sql.SQL("CREATE TABLE {} ({})").format(_ident(schema, table),
                                                        sql.SQL(", ").join(cols)))


def _index(cur: Any, schema: str, table: str, block: bool) -> None:
    from psycopg import sql

    cur.execute(sql.SQL("CREATE INDEX {} ON {} USING GIST ({})").format(
        _ident(f"{table}_geom_idx"), _ident(schema, table), _ident(GEOM)))
    if block:
        cur.execute(sql.SQL("CREATE INDEX {} ON {} (block_id)").format(
            _ident(f"{table}_block_idx"), _ident(schema, table)))


def _swap(cur: Any, schema: str, stage: str, table: str, block: bool) -> None:
    """Drop ``table``, rename ``stage`` (and its key, indexes, sequence) to it."""
    from psycopg import sql

    cur.execute(sql.SQL("DROP TABLE {}").format(_ident(schema, table)))
    cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(_ident(schema, stage),
                                                             _ident(table)))
    renames = [("pkey", "CONSTRAINT"), ("geom_idx", "INDEX")] + ([("block_idx", "INDEX")]
                                                                 if block else [])
    for end, what in renames:
        if what == "CONSTRAINT":
            q = sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                _ident(schema, table), _ident(f"{stage}_{end}"), _ident(f"{table}_{end}"))
        else:
            q = sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                _ident(schema, f"{stage}_{end}"), _ident(f"{table}_{end}"))
        cur.execute(q)
    seq = cur.execute("SELECT pg_get_serial_sequence(%s, 'fid')",
                      (sql.Identifier(schema, table).as_string(cur),)).fetchone()[0]
    if seq:
        cur.execute(sql.SQL("ALTER SEQUENCE {} RENAME TO {}").format(
            sql.SQL(seq), _ident(f"{table}_fid_seq")))


def _table_srid(cur: Any, target: PgTarget, block: bool) -> int:
    """The SRID of an existing table that ``append`` may add to; else a one-line error."""
    rows = cur.execute("SELECT column_name, udt_name FROM information_schema.columns WHERE "
                       "table_schema = %s AND table_name = %s",
                       (target.schema, target.table)).fetchall()
    have = {str(n): str(t) for n, t in rows}
    need = {"class_id": ("int2", "int4", "int8"), "class_name": ("text", "varchar"),
            "area_m2": ("float8", "float4", "numeric"), GEOM: ("geometry",)}
    if block:
        need["block_id"] = ("text", "varchar")
    bad = [c for c, types in need.items() if have.get(c) not in types]
    if bad:
        raise VectorizeError(f"{target}: the table has no column(s) {', '.join(bad)} of the "
                             f"right type (it has {', '.join(sorted(have)) or 'none'}); "
                             "append only to a table geomm wrote, or write a new table")
    row = cur.execute("SELECT srid FROM geometry_columns WHERE f_table_schema = %s AND "
                      "f_table_name = %s AND f_geometry_column = %s",
                      (target.schema, target.table, GEOM)).fetchone()
    return int(row[0]) if row else 0


def _copy(cur: Any, schema: str, table: str, chunks: Iterable[Chunk], srid: int,
          block_id: str | None) -> None:
    from psycopg import sql

    cols = ["class_id", "class_name", "area_m2"] + (["block_id"] if block_id else []) + [GEOM]
    query = sql.SQL("COPY {} ({}) FROM STDIN").format(
        _ident(schema, table), sql.SQL(", ").join(map(_ident, cols)))
    with cur.copy(query) as copy:
        for ids, names, area, geoms in chunks:
            ewkb = shapely.to_wkb(shapely.set_srid(geoms, srid), hex=True, include_srid=True)
            if block_id is None:
                rows: Iterator[tuple[Any, ...]] = zip(
                    ids.tolist(), names.tolist(), area.tolist(), ewkb.tolist(), strict=True)
            else:
                rows = ((i, n, a, block_id, g) for i, n, a, g in zip(
                    ids.tolist(), names.tolist(), area.tolist(), ewkb.tolist(), strict=True))
            for row in rows:
                copy.write_row(row)


def _style(cur: Any, target: PgTarget, style: tuple[str, str]) -> None:
    """QGIS's ``public.layer_styles`` row for the table (made if missing); a failure (no right
    to create the table, say) costs the style only, with a warning."""
    psycopg = _psycopg(target.shown)
    cur.execute("SAVEPOINT geomm_style")
    try:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS public.layer_styles (id serial PRIMARY KEY, "
            "f_table_catalog varchar, f_table_schema varchar, f_table_name varchar, "
            "f_geometry_column varchar, stylename text, styleqml xml, stylesld xml, "
            "useasdefault boolean, description text, owner varchar(63) DEFAULT CURRENT_USER, "
            "ui xml, update_time timestamp DEFAULT CURRENT_TIMESTAMP, type varchar)")
        key = (target.schema, target.table, GEOM, STYLE_NAME)
        cur.execute("DELETE FROM public.layer_styles WHERE f_table_catalog = current_database() "
                    "AND f_table_schema = %s AND f_table_name = %s AND f_geometry_column = %s "
                    "AND stylename = %s", key)
        # `type` (the geometry type) left NULL: QGIS then finds the row whatever type its
        # layer URI names, or none
        cur.execute("INSERT INTO public.layer_styles (f_table_catalog, f_table_schema, "
                    "f_table_name, f_geometry_column, stylename, styleqml, stylesld, "
                    "useasdefault, description, update_time) VALUES (current_database(), %s, "
                    "%s, %s, %s, %s, %s, true, 'land-cover classes (geomm vectorize)', "
                    "CURRENT_TIMESTAMP)", (*key, *style))
        cur.execute("RELEASE SAVEPOINT geomm_style")
    except psycopg.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT geomm_style")
        warnings.warn(f"{target}: no QGIS style row written ({target.scrub(one_line(exc))})",
                      GeommWarning, stacklevel=3)


def write_postgis(target: PgTarget, chunks: Iterable[Chunk], crs: pyproj.CRS, style: Style, *,
                  mode: str = "create", block_id: str | None = None) -> None:
    """Write ``chunks`` into ``target`` in one transaction.

    ``mode``: ``create`` (an existing table is refused), ``overwrite`` (replace it) or
    ``append`` (add to it, made if missing; with ``block_id``, rows of that block are first
    deleted, in the same transaction).
    """
    block = block_id is not None
    schema, table = target.schema, target.table
    with _Tx(target) as cur:
        if cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() \
                is None:
            raise VectorizeError(f"{target}: schema {schema!r} does not exist; create it "
                                 f"(CREATE SCHEMA {schema}) or name another")
        kind = _exists(cur, schema, table)
        if kind is not None and kind not in "rp":
            raise VectorizeError(f"{target}: {schema}.{table} is not a table (a view?); "
                                 "name another table")
        if kind is not None and mode == "create":
            raise VectorizeError(f"{target} already exists; pass --overwrite to replace it or "
                                 "--append to add to it")
        srid = _srid(cur, crs)
        if kind is None or mode == "overwrite":
            into = table if kind is None else f"{table[:30]}_geomm_{uuid.uuid4().hex[:8]}"
            _create(cur, schema, into, srid, block)
            _copy(cur, schema, into, chunks, srid, block_id)
            _index(cur, schema, into, block)
            if into != table:
                _swap(cur, schema, into, table, block)
        else:
            _append(cur, target, chunks, srid, block_id)
        if (made := style()) is not None:
            _style(cur, target, made)


def _append(cur: Any, target: PgTarget, chunks: Iterable[Chunk], srid: int,
            block_id: str | None) -> None:
    from psycopg import sql

    table_srid = _table_srid(cur, target, block_id is not None)
    if block_id is not None:
        cur.execute(sql.SQL("DELETE FROM {} WHERE block_id = %s").format(
            _ident(target.schema, target.table)), (block_id,))
    if table_srid in (0, srid):
        _copy(cur, target.schema, target.table, chunks, srid, block_id)
        return
    # another CRS: through a temporary table, transformed to the table's SRID on insert
    cur.execute("CREATE TEMP TABLE geomm_rows (class_id integer, class_name text, area_m2 "
                "double precision, block_id text, geom geometry) ON COMMIT DROP")
    _copy(cur, "pg_temp", "geomm_rows", chunks, srid, block_id)
    cols = ["class_id", "class_name", "area_m2"] + (["block_id"] if block_id else [])
    cur.execute(sql.SQL("INSERT INTO {} ({}, {}) SELECT {}, ST_Transform({}, {}) FROM "
                        "pg_temp.geomm_rows").format(
        _ident(target.schema, target.table), sql.SQL(", ").join(map(_ident, cols)),
        _ident(GEOM), sql.SQL(", ").join(map(_ident, cols)), _ident(GEOM),
        sql.Literal(table_srid)))
