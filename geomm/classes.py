"""The land-cover classes of a map: names, their ids (0..K-1, in order) and display colours.

A :class:`ClassTable` is what ties a label raster's uint8 ids back to names. It is saved
next to every label store and model as JSON (:meth:`ClassTable.to_dict`), so the ids a model
predicts mean the same thing wherever the table travels.
"""

from __future__ import annotations

import colorsys
import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from geomm.errors import LabelError

__all__ = ["RGB", "ClassTable", "conventional_colours", "default_colours"]

QGIS_VERSION = "3.34.0-Prizren"
"""The QGIS version a class style (:meth:`ClassTable.qml`) declares."""

RGB = tuple[int, int, int]

MAX_CLASSES = 255
"""At most 255 classes: ids 0..254 leave one uint8 value for "unlabelled"."""

# matplotlib's tab20, strong shades first: distinct for small tables, fixed across versions.
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
            "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def default_colours(n: int) -> tuple[RGB, ...]:
    """The first ``n`` colours of the fixed qualitative palette (tab20, then golden-ratio hues)."""
    out = [_parse_colour(c, "palette") for c in _PALETTE[:n]]
    for i in range(len(out), n):
        k = i - len(_PALETTE)
        hue = (k * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.55 + 0.35 * (k % 2), 0.95 - 0.25 * (k // 2 % 2))
        out.append((round(r * 255), round(g * 255), round(b * 255)))
    return tuple(out)


# Colours land-cover legends use (ESA WorldCover, CORINE, NLCD), so that a table without
# `colours:` still shows water blue and forest green. A class name matches when one of its
# words (split on anything not a letter) starts with a key.
_CONVENTIONAL: tuple[tuple[tuple[str, ...], str], ...] = (
    (("water", "river", "lake", "sea", "ocean", "reservoir", "pond", "canal", "stream", "basin"),
     "#0064c8"),
    (("road", "rail", "transport", "airport", "parking", "highway", "impervious", "paved"),
     "#646464"),
    (("wetland", "marsh", "swamp", "bog", "fen", "mangrove", "reed"), "#0096a0"),
    (("forest", "wood", "tree", "conifer", "decidu", "broadleaf", "needleleaf"), "#006400"),
    (("orchard", "plantation", "vineyard"), "#8c6e1e"),
    (("scrub", "shrub", "heath", "bush"), "#b38f2d"),
    (("meadow", "pasture"), "#a6d96a"),
    (("grass", "herbaceous", "lawn", "park", "savanna", "prairie", "steppe"), "#ffff4c"),
    (("farm", "crop", "arable", "agricult", "field", "cultivat", "paddy", "rice"), "#f0c85a"),
    (("residential", "urban", "built", "building", "settlement", "city", "town", "village",
      "housing"), "#e6004d"),
    (("industrial", "commercial", "retail", "construction"), "#a0a0a0"),
    (("bare", "barren", "sand", "beach", "dune", "rock", "quarry", "sediment", "soil",
      "desert", "gravel", "mine"), "#d2b48c"),
    (("moss", "lichen", "tundra"), "#fae6a0"),
    (("snow", "ice", "glacier"), "#f0f0f0"),
    (("cloud",), "#dcdcdc"),
    (("shadow",), "#3c3c3c"),
)


def _conventional(name: str) -> str | None:
    words = [w for w in re.split(r"[^a-z]+", name.lower()) if w]
    for keys, colour in _CONVENTIONAL:
        if any(w.startswith(k) for w in words for k in keys):
            return colour
    return None


def _distance(a: RGB, b: RGB) -> int:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True))


def conventional_colours(names: Sequence[str]) -> tuple[RGB, ...]:
    """A colour per class: the legend colour of a recognised name (water blue, forest green,
    built-up red, cropland yellow, ...), else the next palette colour not close to one taken.

    Two classes that match the same legend colour get shades of it (lighter, then darker).
    """
    out: list[RGB | None] = []
    taken: list[RGB] = []
    for name in names:
        hex_ = _conventional(name)
        if hex_ is None:
            out.append(None)
            continue
        base = _parse_colour(hex_, "legend")
        colour, step = base, 0
        while colour in taken and step < 8:
            step += 1
            sign, k = (1, (step + 1) // 2) if step % 2 else (-1, step // 2)
            h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in base))
            v = min(1.0, max(0.15, v + sign * 0.18 * k)) if s > 0.1 else v
            s = s * (1 - 0.25 * k) if sign > 0 and s > 0.1 else s
            if s <= 0.1:
                v = min(1.0, max(0.1, v + sign * 0.12 * k))
            r, g, b = colorsys.hsv_to_rgb(h, s, v)
            colour = (round(r * 255), round(g * 255), round(b * 255))
        out.append(colour)
        taken.append(colour)
    spare = iter(c for c in default_colours(len(names) + len(_PALETTE))
                 if all(_distance(c, t) > 90 for t in taken))
    fallback = default_colours(len(names))
    return tuple(c if c is not None else next(spare, fallback[i]) for i, c in enumerate(out))


def _parse_colour(value: Any, where: str) -> RGB:
    if isinstance(value, str):
        if not _HEX.match(value):
            raise LabelError(f"{where}: colour {value!r} is not '#rrggbb' hex; write e.g. "
                             "'#1f77b4' or an (r, g, b) triple of 0-255 integers")
        return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)
    if isinstance(value, Sequence) and len(value) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
        return int(value[0]), int(value[1]), int(value[2])
    raise LabelError(f"{where}: colour {value!r} is not '#rrggbb' hex or an (r, g, b) triple "
                     "of 0-255 integers")


@dataclass(frozen=True)
class ClassTable:
    """Ordered land-cover classes: class ``names[i]`` has id ``i`` and colour ``colours[i]``."""

    names: tuple[str, ...]
    """Class names; their order gives the ids 0..K-1."""
    colours: tuple[RGB, ...] = ()
    """RGB colour per class; empty takes :func:`conventional_colours` (hex strings accepted)."""
    ignore_value: int = 255
    """Label value of unlabelled pixels; not an id (losses and metrics skip it)."""

    def __post_init__(self) -> None:
        names = tuple(self.names)
        if not names:
            raise LabelError("a class table needs at least one class name")
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise LabelError(f"class {i}: name {name!r} must be a non-empty string")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise LabelError(f"class names {dupes} appear more than once; give each class a "
                             "unique name (map several codes to one name instead)")
        if len(names) > MAX_CLASSES:
            raise LabelError(f"{len(names)} classes is more than the {MAX_CLASSES} a uint8 "
                             "label raster holds; merge classes, or check that the class "
                             "column holds categories, not measurements")
        given = tuple(self.colours or ())
        if given and len(given) != len(names):
            raise LabelError(f"{len(given)} colours for {len(names)} classes; give one colour "
                             "per class, or none for the default palette")
        colours = tuple(_parse_colour(c, f"class {names[i]!r}") for i, c in enumerate(given))
        iv = self.ignore_value
        if isinstance(iv, bool) or not isinstance(iv, int) or not 0 <= iv <= 255:
            raise LabelError(f"ignore_value {iv!r} must be an integer 0-255 (default 255)")
        if iv < len(names):
            raise LabelError(f"ignore_value {iv} is the id of class {names[iv]!r}; use a value "
                             f"from {len(names)} to 255 (default 255)")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colours", colours or conventional_colours(names))

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_names(cls, names: Sequence[str], colours: Sequence[str | Sequence[int]] | None
                   = None, *, ignore_value: int = 255) -> ClassTable:
        """Build a table from names in id order; colours are '#rrggbb' or (r, g, b), or None."""
        return cls(tuple(names), tuple(colours or ()), ignore_value)  # type: ignore[arg-type]

    def id_of(self, name: str) -> int:
        """The id of class ``name``.

        Raises:
            LabelError: no class has that name (the message lists the classes).
        """
        try:
            return self.names.index(name)
        except ValueError:
            raise LabelError(f"no class {name!r}; the classes are "
                             f"{', '.join(self.names)}") from None

    def hex_colour(self, class_id: int) -> str:
        """Colour of ``class_id`` as '#rrggbb'."""
        return "#{:02x}{:02x}{:02x}".format(*self.colours[class_id])

    def qml(self, nodata: int) -> str:
        """A QGIS 3 layer style (paletted renderer on band 1) for a raster of these
        classes: one palette entry per class, ``nodata`` drawn transparent. Saved as
        ``<raster>.qml`` beside the raster, QGIS applies it when the raster is opened."""
        import xml.etree.ElementTree as ET

        root = ET.Element("qgis", version=QGIS_VERSION, styleCategories="AllStyleCategories",
                          hasScaleBasedVisibilityFlag="0", minScale="1e+08", maxScale="0")
        pipe = ET.SubElement(root, "pipe")
        renderer = ET.SubElement(pipe, "rasterrenderer", type="paletted", opacity="1", band="1",
                                 alphaBand="-1", nodataColor="")
        pixels = ET.SubElement(ET.SubElement(renderer, "rasterTransparency"),
                               "singleValuePixelList")
        ET.SubElement(pixels, "pixelListEntry", min=str(nodata), max=str(nodata),
                      percentTransparent="100")
        origin = ET.SubElement(renderer, "minMaxOrigin")
        for tag, text in (("limits", "None"), ("extent", "WholeRaster"),
                          ("statAccuracy", "Estimated"), ("cumulativeCutLower", "0.02"),
                          ("cumulativeCutUpper", "0.98"), ("stdDevFactor", "2")):
            ET.SubElement(origin, tag).text = text
        palette = ET.SubElement(renderer, "colorPalette")
        for i, name in enumerate(self.names):
            ET.SubElement(palette, "paletteEntry", value=str(i), color=self.hex_colour(i),
                          label=name, alpha="255")
        ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
        ET.SubElement(pipe, "huesaturation", saturation="0", grayscaleMode="0", colorizeOn="0",
                      invertColors="0")
        ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
        ET.SubElement(pipe, "resamplingStage").text = "resamplingFilter"
        ET.SubElement(root, "blendMode").text = "0"
        ET.indent(root)
        body = ET.tostring(root, encoding="unicode")
        return f"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n{body}\n"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: ``{"classes": [{"id", "name", "colour"}, ...], "ignore_value"}``."""
        return {"classes": [{"id": i, "name": n, "colour": self.hex_colour(i)}
                            for i, n in enumerate(self.names)],
                "ignore_value": self.ignore_value}

    def raster_tags(self) -> tuple[dict[str, str], dict[str, str],
                                   dict[int, tuple[int, int, int, int]]]:
        """What names the classes of a class-id GeoTIFF: dataset tags (``GEOMM_CLASSES``, the
        table as JSON; ``CLASS_NAMES``, one CSV row), band tags ``class_<id>``, and a colour
        table with the ignore value transparent."""
        row = io.StringIO()
        csv.writer(row, lineterminator="").writerow(self.names)  # "bâti, dense" stays one
        tags = {"GEOMM_CLASSES": json.dumps(self.to_dict()), "CLASS_NAMES": row.getvalue()}
        cmap = {i: (*c, 255) for i, c in enumerate(self.colours)}
        cmap[self.ignore_value] = (0, 0, 0, 0)
        return tags, {f"class_{i}": n for i, n in enumerate(self.names)}, cmap

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ClassTable:
        """Inverse of :meth:`to_dict`; ``id`` and ``colour`` are optional in each entry.

        Raises:
            LabelError: a key is missing or ids are not 0..K-1 in order.
        """
        entries = doc.get("classes") if isinstance(doc, Mapping) else None
        if not isinstance(entries, list):
            raise LabelError("class table: key `classes` must be a list of "
                             "{name, colour} entries")
        names: list[Any] = []
        colours: list[Any] = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise LabelError(f"class table: classes[{i}] has no `name` ({entry!r})")
            if entry.get("id", i) != i:
                raise LabelError(f"class table: classes[{i}] ({entry['name']!r}) has id "
                                 f"{entry['id']!r}; ids must be 0..K-1 in list order")
            names.append(entry["name"])
            colours.append(entry.get("colour"))
        palette = default_colours(len(names))
        colours = [palette[i] if c is None else c for i, c in enumerate(colours)]
        return cls(tuple(names), tuple(colours), doc.get("ignore_value", 255))
