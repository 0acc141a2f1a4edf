"""QGIS styles of a class map's polygons, kept inside the output so that QGIS opens it styled.

A categorized renderer on ``class_id`` (QML) and the same rules as SLD 1.1, one fill colour
per class, from the raster's class table. Both go into a row of QGIS's ``layer_styles`` table
(in the GeoPackage, or ``public.layer_styles`` in PostGIS), marked ``useAsDefault``: QGIS loads
that row when the layer is opened.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from geomm.classes import ClassTable, conventional_colours
from geomm.vector._common import VectorizeError, one_line

__all__ = ["STYLE_NAME", "StyleClass", "class_info", "style_classes", "style_row", "vector_qml",
           "vector_sld"]

STYLE_NAME = "geomm classes"
"""``styleName`` of the row geomm writes (a rewrite replaces its own row only)."""
QGIS_VERSION = "3.28.0-Firenze"
COLUMN = "class_id"
_OUTLINE = "35,35,35,255"
_SLD_NS = {"": "http://www.opengis.net/sld", "ogc": "http://www.opengis.net/ogc",
           "se": "http://www.opengis.net/se", "xlink": "http://www.w3.org/1999/xlink",
           "xsi": "http://www.w3.org/2001/XMLSchema-instance"}


@dataclass(frozen=True)
class StyleClass:
    """One category: the class id, its name and its ``#rrggbb`` colour."""

    class_id: int
    name: str
    colour: str

    def rgba(self) -> str:
        """QGIS's ``r,g,b,a`` form of the colour."""
        h = self.colour.lstrip("#")
        return ",".join(str(int(h[i:i + 2], 16)) for i in (0, 2, 4)) + ",255"


def class_info(src: Any, path: Path | str) -> tuple[dict[int, str], dict[int, str], int | None]:
    """Names and ``#rrggbb`` colours per id, and the ignore value, of the open class raster
    ``src``: from its ``GEOMM_CLASSES`` tag (a :meth:`ClassTable.to_dict` JSON), else names from
    the band-1 tags ``class_<id>=<name>`` (no colours)."""
    tag = src.tags().get("GEOMM_CLASSES")
    if tag is not None:
        try:
            table = ClassTable.from_dict(json.loads(tag))
        except (ValueError, TypeError, AttributeError) as exc:
            raise VectorizeError(f"{path}: tag GEOMM_CLASSES is not a class table "
                                 f"({one_line(exc)}); rewrite it from ClassTable.to_dict()"
                                 ) from None
        return (dict(enumerate(table.names)),
                {i: table.hex_colour(i) for i in range(len(table))}, table.ignore_value)
    names = {}
    for key, value in src.tags(1).items():
        found = re.fullmatch(r"class_(\d+)", key)
        if found:
            names[int(found.group(1))] = value
    return names, {}, None


def style_classes(names: Mapping[int, str], colours: Mapping[int, str],
                  present: Iterable[int] = ()) -> list[StyleClass]:
    """A category per named or ``present`` class id, in id order; a class without a colour
    gets the legend colour of its name (:func:`geomm.classes.conventional_colours`)."""
    ids = sorted(set(names) | {int(k) for k in present})
    missing = [i for i in ids if i not in colours]
    spare = conventional_colours([names.get(i, str(i)) for i in missing]) if missing else ()
    extra = {i: "#{:02x}{:02x}{:02x}".format(*c) for i, c in zip(missing, spare, strict=True)}
    return [StyleClass(i, names.get(i, str(i)), colours.get(i) or extra[i]) for i in ids]


def _fill_layer(parent: ET.Element, colour: str) -> None:
    layer = ET.SubElement(parent, "layer", {"class": "SimpleFill", "enabled": "1",
                                            "locked": "0", "pass": "0"})
    props = {"border_width_map_unit_scale": "3x:0,0,0,0,0,0", "color": colour,
             "joinstyle": "bevel", "offset": "0,0", "offset_unit": "MM",
             "outline_color": _OUTLINE, "outline_style": "solid", "outline_width": "0.1",
             "outline_width_unit": "MM", "style": "solid"}
    option = ET.SubElement(layer, "Option", type="Map")  # QGIS >= 3.26 reads this
    for k, v in props.items():
        ET.SubElement(option, "Option", name=k, type="QString", value=v)
    for k, v in props.items():  # older QGIS 3 reads these
        ET.SubElement(layer, "prop", k=k, v=v)


def vector_qml(classes: Sequence[StyleClass], column: str = COLUMN) -> str:
    """A QGIS 3 layer style: polygons filled by category of ``column``, a thin dark outline."""
    root = ET.Element("qgis", version=QGIS_VERSION, styleCategories="Symbology")
    renderer = ET.SubElement(root, "renderer-v2", type="categorizedSymbol", attr=column,
                             symbollevels="0", enableorderby="0", forceraster="0",
                             referencescale="-1")
    cats = ET.SubElement(renderer, "categories")
    symbols = ET.SubElement(renderer, "symbols")
    for i, c in enumerate(classes):
        ET.SubElement(cats, "category", value=str(c.class_id), label=c.name, symbol=str(i),
                      render="true")
        sym = ET.SubElement(symbols, "symbol", type="fill", name=str(i), alpha="1",
                            clip_to_extent="1", force_rhr="0")
        _fill_layer(sym, c.rgba())
    ET.SubElement(root, "blendMode").text = "0"
    ET.SubElement(root, "featureBlendMode").text = "0"
    ET.SubElement(root, "layerGeometryType").text = "2"  # polygons
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f"<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n{body}\n"


def vector_sld(classes: Sequence[StyleClass], layer: str, column: str = COLUMN) -> str:
    """The same categories as an OGC SLD 1.1 (Symbology Encoding) document."""
    for prefix, uri in _SLD_NS.items():
        ET.register_namespace(prefix, uri)

    def q(tag: str) -> str:
        prefix, _, name = tag.rpartition(":")
        return f"{{{_SLD_NS[prefix]}}}{name}"

    root = ET.Element(q(":StyledLayerDescriptor"), {
        "version": "1.1.0", q("xsi:schemaLocation"): "http://www.opengis.net/sld "
        "http://schemas.opengis.net/sld/1.1.0/StyledLayerDescriptor.xsd"})
    named = ET.SubElement(root, q(":NamedLayer"))
    ET.SubElement(named, q("se:Name")).text = layer
    style = ET.SubElement(named, q(":UserStyle"))
    ET.SubElement(style, q("se:Name")).text = layer
    fts = ET.SubElement(style, q("se:FeatureTypeStyle"))
    for c in classes:
        rule = ET.SubElement(fts, q("se:Rule"))
        ET.SubElement(rule, q("se:Name")).text = c.name
        desc = ET.SubElement(rule, q("se:Description"))
        ET.SubElement(desc, q("se:Title")).text = c.name
        filt = ET.SubElement(rule, q("ogc:Filter"))
        eq = ET.SubElement(filt, q("ogc:PropertyIsEqualTo"))
        ET.SubElement(eq, q("ogc:PropertyName")).text = column
        ET.SubElement(eq, q("ogc:Literal")).text = str(c.class_id)
        sym = ET.SubElement(rule, q("se:PolygonSymbolizer"))
        fill = ET.SubElement(sym, q("se:Fill"))
        ET.SubElement(fill, q("se:SvgParameter"), name="fill").text = c.colour.lower()
        stroke = ET.SubElement(sym, q("se:Stroke"))
        ET.SubElement(stroke, q("se:SvgParameter"), name="stroke").text = "#232323"
        ET.SubElement(stroke, q("se:SvgParameter"), name="stroke-width").text = "0.5"
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def style_row(classes: Sequence[StyleClass], table: str, geometry_column: str, *,
              catalog: str = "", schema: str = "") -> dict[str, Any]:
    """The ``layer_styles`` row (QGIS's columns) for ``table``; a GeoPackage leaves catalog and
    schema empty, PostGIS gives the database and schema names."""
    return {"f_table_catalog": catalog, "f_table_schema": schema, "f_table_name": table,
            "f_geometry_column": geometry_column, "styleName": STYLE_NAME,
            "styleQML": vector_qml(classes), "styleSLD": vector_sld(classes, table),
            "useAsDefault": True, "description": "land-cover classes (geomm vectorize)",
            "owner": "", "ui": None,
            "update_time": datetime.now(UTC).replace(tzinfo=None, microsecond=0)}
