"""Recipes: YAML that maps onto typed, validated specs.

A recipe names the modalities (band files), the labels, the target grid and the tiling. Every
key is checked when the recipe is loaded; an error names the key, the bad value and what is
allowed. Paths are relative to ``data_root``: a folder (relative to the recipe file), or
``sample:NAME`` for a geomm sample scene (fetched and cached on first use). A recipe with
``scenes:`` is a template: ``{placeholder}``s in paths are filled from each scene's entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal

import yaml

from geomm._remote import AnyPath, RemotePath, as_path, is_remote
from geomm.errors import RecipeError
from geomm.modality import BandSpec, ModalitySpec
from geomm.stacspec import StacSource, parse_stac_modality, parse_stac_source

__all__ = ["GridRequest", "LabelSpec", "Recipe", "SceneInputs", "TilingSpec", "load_recipe"]


@dataclass(frozen=True)
class GridRequest:
    """How the target grid is chosen."""

    reference: str | None = None
    """Modality whose finest band gives CRS, resolution and origin (default: the finest)."""
    crs: str | None = None
    """Explicit target CRS (with ``resolution``)."""
    resolution: float | None = None
    """Explicit base resolution in CRS units (with ``crs``)."""
    bounds: tuple[float, float, float, float] | None = None
    """Explicit (left, bottom, right, top); needs ``crs`` and ``resolution``."""
    extent: Literal["intersection", "union"] = "intersection"
    """Footprint policy when bounds are derived."""


@dataclass(frozen=True)
class TilingSpec:
    """How the stack is cut into tiles."""

    size: int = 384
    """Tile side in base pixels; a multiple of every layer's resolution factor."""
    halo: int = 48
    """Overlap read around each tile, base pixels; a multiple of every factor."""


@dataclass(frozen=True)
class LabelSpec:
    """Where labels come from."""

    kind: Literal["vector", "raster", "json-multilabel"]
    """Polygons with a class column, a class-code raster, or per-scene JSON class lists."""
    path: str
    """File (template); relative to the data root."""
    class_column: str | None = None
    """Vector: attribute holding the class; JSON: key holding the list of class names."""
    classes: tuple[str, ...] | None = None
    """Class names in id order (default: sorted values found)."""
    values: Mapping[int, str] | None = None
    """Raster: code -> class name."""
    colours: tuple[str, ...] | None = None
    """Optional '#rrggbb' per class."""
    ignore_value: int = 255
    """Label value of unlabelled pixels."""
    layer: str | None = None
    """Vector: the layer of a file with several (default: its only layer with geometries)."""


@dataclass(frozen=True)
class SceneInputs:
    """One scene of a recipe with every path resolved."""

    id: str
    """Scene identifier (sub-folder of the store for multi-scene recipes)."""
    modalities: tuple[ModalitySpec, ...]
    """Modalities with absolute band paths."""
    labels: LabelSpec | None
    """Labels with an absolute path."""


@dataclass(frozen=True)
class Recipe:
    """A validated recipe."""

    name: str
    """Recipe name; the store goes to ``tiles/<name>/``."""
    modalities: tuple[ModalitySpec, ...]
    """Modality templates (paths may hold ``{placeholders}``)."""
    labels: LabelSpec | None
    """Label source template, or None."""
    grid: GridRequest
    """Target grid choice."""
    tiling: TilingSpec
    """Tile size and halo."""
    data_root: str
    """Folder or ``sample:NAME`` the paths are relative to."""
    base_dir: Path
    """Folder of the recipe file (relative ``data_root`` is taken from here)."""
    scenes: tuple[Mapping[str, str], ...] = field(default=())
    """Per-scene placeholder values; empty for a single-scene recipe."""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """The recipe as loaded, for the store's provenance."""
    stac: StacSource | None = None
    """Where the modalities with a ``stac:`` block search (None: files only)."""

    @property
    def needs_stac(self) -> bool:
        """Some modality still comes from a STAC search (see :func:`geomm.sources.resolve`)."""
        return any(m.stac is not None for m in self.modalities)

    def root(self) -> AnyPath:
        """Resolve ``data_root`` (fetching a sample scene if it names one); a URL or GDAL
        ``/vsi…/`` folder stays remote."""
        if self.data_root.startswith("sample:"):
            from geomm.sampledata import fetch

            return fetch(self.data_root.removeprefix("sample:")).root
        root = as_path(self.data_root)
        if isinstance(root, RemotePath):
            return root
        root = root.expanduser()
        return root if root.is_absolute() else (self.base_dir / root)

    def scene_inputs(self) -> list[SceneInputs]:
        """Every scene with placeholders filled and paths made absolute."""
        if self.needs_stac:
            raise RecipeError(f"recipe {self.name!r}: its STAC modalities must be searched and "
                              "composited first (geomm.sources.resolve)")
        root = self.root()
        entries = self.scenes or ({"id": self.name},)
        out = []
        for i, entry in enumerate(entries):
            def fill(p: AnyPath | str, _e: Mapping[str, str] = entry, _i: int = i
                     ) -> AnyPath:
                try:
                    text = str(p).format(**_e)
                except KeyError as exc:
                    raise RecipeError(f"scenes[{_i}]: path {str(p)!r} uses placeholder {exc} "
                                      f"that the scene does not define (it has "
                                      f"{sorted(_e)})") from None
                return as_path(text) if is_remote(text) else root / text
            mods = tuple(
                ModalitySpec(m.name, tuple(BandSpec(fill(b.path), b.name, b.index, b.description)
                                           for b in m.bands),
                             m.nodata, m.scale, m.offset, m.categorical, m.resampling)
                for m in self.modalities)
            labels = None
            if self.labels is not None:
                labels = LabelSpec(**{**self.labels.__dict__, "path": str(fill(self.labels.path))})
            out.append(SceneInputs(str(entry["id"]), mods, labels))
        return out


_TOP = {"name", "data_root", "modalities", "labels", "grid", "tiling", "scenes", "description",
        "stac", "acquired"}
_MOD = {"bands", "file", "nodata", "scale", "offset", "categorical", "resampling", "stac"}
_BAND = {"file", "name", "index", "description"}
_LAB = {"vector", "raster", "json", "class_column", "key", "classes", "values", "colours",
        "ignore_value", "layer"}
_GRID = {"reference", "crs", "resolution", "bounds", "extent"}
_TILE = {"size", "halo"}


def _keys(where: str, doc: Any, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise RecipeError(f"{where}: expected a mapping, got {type(doc).__name__} {doc!r}")
    bad = sorted(set(map(str, doc)) - allowed)
    if bad:
        raise RecipeError(f"{where}: unknown key(s) {bad}; allowed: {sorted(allowed)}")
    return doc


def _get(where: str, doc: Mapping[str, Any], key: str, typ: type | tuple[type, ...],
         default: Any = None) -> Any:
    val = doc.get(key, default)
    if val is None or val is default:
        return val
    if typ is float and isinstance(val, int) and not isinstance(val, bool):
        return float(val)
    if not isinstance(val, typ) or (isinstance(val, bool) and typ in (int, float)):
        names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise RecipeError(f"{where}.{key}: expected {names}, got {val!r}")
    return val


def _band_name(value: Any) -> Any:
    """A band named by a whole number (``10``, ``B8`` written as ``8``) is named by its digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _stac_modalities(name: str, d: Mapping[str, Any]) -> list[ModalitySpec]:
    """A modality whose bands come from a STAC search (placeholder paths until resolved);
    one per season when it has ``seasons:``, named ``NAME_SEASON``."""
    where = f"modalities.{name}"
    if "file" in d or "bands" in d:
        raise RecipeError(f"{where}: a modality with `stac:` takes its bands from the search; "
                          "name them under `stac:` (`bands:` or `assets:`), not `file:`/`bands:`")
    spec = parse_stac_modality(name, d["stac"])
    from geomm.stacpresets import PRESETS

    preset = PRESETS.get(spec.preset or "")
    seasons = spec.seasons or ((None, spec.datetime),)
    out = []
    for season, when in seasons:
        mname = name if season is None else f"{name}_{season}"
        bands = tuple(BandSpec(as_path(f"stac:{mname}/{band}"), band)
                      for band, _ in spec.assets)
        out.append(ModalitySpec(
            mname, bands, _get(where, d, "nodata", float),
            _get(where, d, "scale", float, preset.scale if preset else 1.0),
            _get(where, d, "offset", float, preset.offset if preset else 0.0),
            bool(_get(where, d, "categorical", bool, False)), _get(where, d, "resampling", str),
            stac=replace(spec, datetime=when, seasons=())))
    return out


def _modalities(name: str, doc: Any) -> list[ModalitySpec]:
    d = _keys(f"modalities.{name}", doc, _MOD)
    if "stac" in d:
        return _stac_modalities(name, d)
    return [_modality(name, d)]


def _modality(name: str, doc: Any) -> ModalitySpec:
    where = f"modalities.{name}"
    d = _keys(where, doc, _MOD)
    bands_doc = d.get("bands")
    if not isinstance(bands_doc, list) or not bands_doc:
        raise RecipeError(f"{where}.bands: expected a non-empty list of bands")
    template = _get(where, d, "file", str)
    bands = []
    for i, b in enumerate(bands_doc):
        b = _band_name(b)  # `bands: [10, 20, 30]`: YAML reads numeric names as numbers
        if isinstance(b, str):
            if template is None:
                raise RecipeError(f"{where}.bands[{i}]: a bare band name {b!r} needs a "
                                  f"modality-level `file:` template with {{band}}")
            bands.append(BandSpec(as_path(template.replace("{band}", b)), b))
            continue
        bd = _keys(f"{where}.bands[{i}]", b, _BAND)
        file = _get(f"{where}.bands[{i}]", bd, "file", str) or template
        bname = _band_name(_get(f"{where}.bands[{i}]", bd, "name", (str, int)))
        if file is None or bname is None:
            raise RecipeError(f"{where}.bands[{i}]: needs `file` and `name`")
        bands.append(BandSpec(as_path(file.replace("{band}", bname)), bname,
                              _get(f"{where}.bands[{i}]", bd, "index", int),
                              _get(f"{where}.bands[{i}]", bd, "description", str)))
    return ModalitySpec(name, tuple(bands), _get(where, d, "nodata", float),
                        _get(where, d, "scale", float, 1.0), _get(where, d, "offset", float, 0.0),
                        bool(_get(where, d, "categorical", bool, False)),
                        _get(where, d, "resampling", str))


def _labels(doc: Any) -> LabelSpec:
    d = _keys("labels", doc, _LAB)
    kinds = [k for k in ("vector", "raster", "json") if k in d]
    if len(kinds) != 1:
        raise RecipeError("labels: give exactly one of `vector: FILE`, `raster: FILE` or "
                          f"`json: FILE`, got {kinds or 'none'}")
    kind = kinds[0]
    path = _get("labels", d, kind, str)
    column = _get("labels", d, "class_column", str) or _get("labels", d, "key", str)
    if kind in ("vector", "json") and not column:
        raise RecipeError(f"labels: a {kind} label source needs `class_column` (the attribute "
                          "or key holding the class name)")
    classes = _get("labels", d, "classes", list)
    values = _get("labels", d, "values", dict)
    if kind == "raster" and classes:
        raise RecipeError("labels.classes names the classes of vector or JSON labels; a label "
                          "raster names its codes with `values`, e.g. `values: {1: farm, "
                          "2: forest}` (class ids follow the order of the names)")
    colours = _get("labels", d, "colours", list)
    layer = _get("labels", d, "layer", str)
    if layer is not None and kind != "vector":
        raise RecipeError(f"labels.layer picks a layer of a vector file; a {kind} label "
                          "source has none, remove it")
    label_kind: Literal["vector", "raster", "json-multilabel"] = (
        "json-multilabel" if kind == "json" else "vector" if kind == "vector" else "raster")
    return LabelSpec(
        label_kind, path, column,
        tuple(map(str, classes)) if classes else None,
        _values(values) if values else None,
        tuple(map(str, colours)) if colours else None,
        _get("labels", d, "ignore_value", int, 255), layer)


def _values(values: Mapping[Any, Any]) -> dict[int, str]:
    """``labels.values``: raster value -> class name."""
    out = {}
    for k, v in values.items():
        if isinstance(k, bool) or not isinstance(k, int | str) or not str(k).strip().isdigit():
            example = k if isinstance(k, str) else "farm"
            raise RecipeError(f"labels.values: key {k!r} is not a raster value; write raster "
                              f"value: class name, e.g. `values: {{1: {example}}}`")
        if not isinstance(v, str | int) or isinstance(v, bool):
            raise RecipeError(f"labels.values.{k}: expected a class name, got {v!r}")
        out[int(k)] = str(v)
    return out


def _bounds(bounds: list[Any]) -> tuple[float, float, float, float]:
    """``grid.bounds``: four numbers, left < right and bottom < top."""
    try:
        left, bottom, right, top = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise RecipeError(f"grid.bounds: expected four numbers [left, bottom, right, top] in "
                          f"the grid's CRS units, got {bounds!r}") from None
    if not (left < right and bottom < top):
        raise RecipeError(f"grid.bounds: {bounds!r} is empty; give [left, bottom, right, top] "
                          "with left < right and bottom < top")
    return left, bottom, right, top


def acquired_range(value: Any, where: str = "acquired") -> tuple[datetime, datetime]:
    """``acquired:`` (a date, a time, ``START/END`` or ``[START, END]``) as UTC (start, end);
    a date stands for its whole day, a time without a zone for UTC."""
    ends = value.split("/") if isinstance(value, str) else value
    if not isinstance(ends, list | tuple) or len(ends) not in (1, 2):
        ends = [value]
    try:
        times = [_acquired_time(v, i == len(ends) - 1) for i, v in enumerate(ends)]
        if len(ends) == 1:
            times.insert(0, _acquired_time(ends[0], False))
    except (TypeError, ValueError):
        raise RecipeError(f"{where}: {value!r} is not a date or time; write e.g. 2017-02-16, "
                          "2017-02-16T10:21:01Z or 2021-06-01/2021-08-31") from None
    if times[0] > times[1]:
        raise RecipeError(f"{where}: {value!r} ends before it starts; give START/END in order")
    return times[0], times[1]


def _acquired_time(v: Any, end: bool) -> datetime:
    if isinstance(v, str):
        v = v.strip()
        v = (date.fromisoformat(v) if len(v) == 10
             else datetime.fromisoformat(v.replace("Z", "+00:00")))
    if isinstance(v, datetime):
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
    if isinstance(v, date):
        return datetime.combine(v, time.max if end else time.min, UTC).replace(microsecond=0)
    raise TypeError(v)


def parse_recipe(doc: Any, *, base_dir: Path, source: str = "recipe") -> Recipe:
    """Validate a recipe mapping (as loaded from YAML) into a :class:`Recipe`."""
    d = _keys(source, doc, _TOP)
    name = _get("name", d, "name", str)
    if not name or "/" in name:
        raise RecipeError(f"{source}: `name` must be a non-empty string without '/'")
    mods = _keys("modalities", d.get("modalities"), set(map(str, d.get("modalities") or {})))
    if not mods:
        raise RecipeError(f"{source}: `modalities` must list at least one modality")
    g = _keys("grid", d.get("grid") or {}, _GRID)
    extent = _get("grid", g, "extent", str, "intersection")
    if extent not in ("intersection", "union"):
        raise RecipeError(f"grid.extent: {extent!r} is not one of 'intersection', 'union'")
    bounds = _get("grid", g, "bounds", list)
    if bounds is not None and (len(bounds) != 4 or not g.get("crs")):
        raise RecipeError("grid.bounds: give [left, bottom, right, top] together with `crs` "
                          "and `resolution`")
    crs = g.get("crs")
    grid = GridRequest(_get("grid", g, "reference", str), None if crs is None else str(crs),
                       _get("grid", g, "resolution", float),
                       _bounds(bounds) if bounds else None,
                       extent)
    t = _keys("tiling", d.get("tiling") or {}, _TILE)
    tiling = TilingSpec(_get("tiling", t, "size", int, 384), _get("tiling", t, "halo", int, 48))
    if tiling.size < 1 or not 0 <= tiling.halo < tiling.size:
        raise RecipeError(f"tiling: size {tiling.size} and halo {tiling.halo} must satisfy "
                          "size >= 1 and 0 <= halo < size (the halo is context around a tile)")
    scenes = d.get("scenes") or []
    if not isinstance(scenes, list) or any(not isinstance(s, Mapping) or "id" not in s
                                           for s in scenes):
        raise RecipeError("scenes: expected a list of mappings, each with an `id`")
    if d.get("acquired") is not None:
        acquired_range(d["acquired"])
    for i, s in enumerate(scenes):
        if s.get("acquired") is not None:
            acquired_range(s["acquired"], f"scenes[{i}].acquired")
    modalities = tuple(m for k, v in mods.items() for m in _modalities(str(k), v))
    names = [m.name for m in modalities]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise RecipeError(f"modalities: {clash} named twice (a season's modality is "
                          "NAME_SEASON); rename one")
    stac = parse_stac_source(d["stac"]) if d.get("stac") is not None else None
    if stac is None and any(m.stac is not None for m in modalities):
        raise RecipeError(f"{source}: a modality has a `stac:` block but the recipe has no "
                          "top-level `stac:` (api: URL or catalog: FILE, bbox, datetime)")
    if stac is not None and scenes:
        raise RecipeError(f"{source}: `stac:` with `scenes:` is not supported yet; write one "
                          "recipe per area")
    return Recipe(name, modalities, _labels(d["labels"]) if d.get("labels") else None, grid,
                  tiling, str(_get(source, d, "data_root", str, ".")), base_dir,
                  tuple({str(k): str(v) for k, v in s.items()} for s in scenes), raw=dict(d),
                  stac=stac)


def bundled_recipes() -> dict[str, Path]:
    """Recipes shipped with geomm (the repo's ``recipes/`` folder), by name."""
    from importlib.resources import files

    root = files("geomm.recipes")
    return {Path(str(f)).stem: Path(str(f)) for f in root.iterdir() if str(f).endswith(".yaml")}


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe YAML file, or a bundled recipe by name (``s2-landcover``).

    Raises:
        RecipeError: the file is missing, not YAML, or has a bad key or value.
    """
    p = Path(path)
    if not p.exists() and p.suffix == "" and len(p.parts) == 1:
        p = bundled_recipes().get(p.name, p)
    try:
        doc = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        names = ", ".join(sorted(bundled_recipes()))
        raise RecipeError(f"{p}: no such recipe file; give a path to a YAML recipe or a "
                          f"bundled recipe name ({names})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{p}: not valid YAML{at} ({problem})") from None
    if not isinstance(doc, Mapping):
        what = "empty" if doc is None else f"a {type(doc).__name__}, not a mapping"
        raise RecipeError(f"{p}: the recipe is {what}; a recipe is a YAML mapping with `name:` "
                          "and `modalities:` (see recipes/s2-landcover.yaml)")
    try:
        return parse_recipe(doc, base_dir=p.resolve().parent, source=str(p))
    except RecipeError as exc:
        raise RecipeError(f"{p}: {exc}") from None
