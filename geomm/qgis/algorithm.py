"""The base of the geomm algorithms: typed Processing parameters declared once per command
option (:class:`Opt`), turned into the command's arguments, and the run itself."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProviderRegistry,
)
from qgis.PyQt.QtGui import QIcon

from .runner import GeommNotFound, installed_settings, run_geomm

__all__ = ["GeommAlgorithm", "Opt"]


@dataclass(frozen=True)
class Opt:
    """One option (or positional argument, ``flag=None``) of a geomm command as a Processing
    parameter.

    ``kind``: ``file``, ``folder`` (an input folder), ``recipe`` (a YAML file or a bundled
    recipe's name), ``raster``, ``layer`` (a file-based layer), ``int``, ``float``, ``bool``,
    ``enum``, ``string``, ``lines`` (one option per line), ``names`` (one option per comma-
    separated name), ``out_folder``, ``out_file``.
    """

    name: str
    flag: str | None
    kind: str
    label: str
    default: Any = None
    optional: bool = True
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    advanced: bool = False
    off: str | None = None
    """For a ``bool``: the flag that says False (``--no-amp``); the flag then says True."""
    omit: str | None = None
    """For an ``enum``: the choice that leaves the option out (geomm's own default)."""
    labels: tuple[str, ...] = ()
    """For an ``enum``: what the choices are called in the dialog (default: the choices)."""
    file_filter: str = ""
    help: str = ""


TEMPORARY = QgsProcessing.TEMPORARY_OUTPUT
_NUMBER = {"int": QgsProcessingParameterNumber.Integer,
           "float": QgsProcessingParameterNumber.Double}


def _parameter(o: Opt) -> QgsProcessingParameterDefinition:
    label = o.label
    if o.kind in _NUMBER:
        p = QgsProcessingParameterNumber(o.name, label, _NUMBER[o.kind], o.default, o.optional)
        if o.minimum is not None:
            p.setMinimum(o.minimum)
        if o.maximum is not None:
            p.setMaximum(o.maximum)
    elif o.kind == "bool":
        p = QgsProcessingParameterBoolean(o.name, label, bool(o.default), o.optional)
    elif o.kind == "enum":
        default = o.choices.index(o.default) if o.default is not None else None
        p = QgsProcessingParameterEnum(o.name, label, list(o.labels or o.choices), False,
                                       default, o.optional)
    elif o.kind in ("string", "lines", "names"):
        p = QgsProcessingParameterString(o.name, label, o.default, o.kind == "lines",
                                         o.optional)
    elif o.kind == "recipe":  # a file here; a bundled recipe's name in _bundled_recipe
        p = QgsProcessingParameterFile(o.name, label, QgsProcessingParameterFile.File, "",
                                       None, True, "Recipes (*.yaml *.yml)")
    elif o.kind in ("file", "folder"):
        behaviour = (QgsProcessingParameterFile.Folder if o.kind == "folder"
                     else QgsProcessingParameterFile.File)
        p = QgsProcessingParameterFile(o.name, label, behaviour, "", o.default, o.optional,
                                       o.file_filter)
    elif o.kind == "raster":
        p = QgsProcessingParameterRasterLayer(o.name, label, o.default, o.optional)
    elif o.kind == "layer":
        p = QgsProcessingParameterMapLayer(o.name, label, o.default, o.optional)
    elif o.kind == "out_folder":
        p = QgsProcessingParameterFolderDestination(o.name, label, o.default or TEMPORARY,
                                                    o.optional)
    elif o.kind == "out_file":
        p = QgsProcessingParameterFileDestination(o.name, label, o.file_filter,
                                                  o.default or TEMPORARY, o.optional)
    else:  # pragma: no cover  (a typo in a declaration)
        raise ValueError(f"unknown parameter kind {o.kind!r}")
    if o.help:
        p.setHelp(o.help)
    if o.advanced:
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return p


def _bundled_recipe(o: Opt) -> QgsProcessingParameterDefinition:
    """The companion of a ``recipe`` option: the recipes bundled with geomm (their names, as
    ``geomm qgis install`` recorded them)."""
    names = [str(n) for n in installed_settings().get("recipes") or []]
    p = QgsProcessingParameterEnum(f"BUNDLED_{o.name}", f"{o.label}: or one bundled with geomm",
                                   names, False, None, True, True)
    p.setHelp("instead of a recipe file")
    return p


def layer_file(layer: Any, what: str) -> str:
    """The file behind a map layer (geomm reads files, not QGIS data sources)."""
    if layer is None:
        raise QgsProcessingException(f"{what}: no layer")
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    path = str(parts.get("path") or layer.source().split("|")[0])
    if not os.path.isfile(path):
        raise QgsProcessingException(f"{what}: layer '{layer.name()}' is not a file ("
                                     f"{layer.source()}); geomm reads files: save it to a "
                                     "GeoTIFF or GeoPackage first")
    return path


def _cli(o: Opt) -> str:
    if o.off and not o.flag:
        return f"{o.off} when unchecked"
    return o.flag or "argument"


class GeommAlgorithm(QgsProcessingAlgorithm):
    """One geomm command. Subclasses set :attr:`command`, :attr:`opts` and the texts, and
    override :meth:`finish` to describe and load their outputs."""

    command = ""
    title = ""
    summary = ""
    opts: tuple[Opt, ...] = ()
    span = (0.0, 100.0)
    """The part of the progress that the command's bars cover."""

    def name(self) -> str:
        return self.command.replace("-", "_")

    def displayName(self) -> str:
        return self.title

    def group(self) -> str:
        return "Land cover"

    def groupId(self) -> str:
        return "landcover"

    def shortHelpString(self) -> str:
        options = "".join(f"<li><b>{o.label}</b> ({_cli(o)}){': ' + o.help if o.help else ''}"
                          "</li>" for o in self.opts)
        return (f"<p>{self.summary}</p><p>Runs <code>geomm {self.command}</code> in geomm's "
                f"own environment (set by <code>geomm qgis install</code>, or the "
                f"GEOMM_EXECUTABLE environment variable).</p><ul>{options}</ul>")

    def icon(self) -> QIcon:
        return QIcon(str(Path(__file__).with_name("icon.svg")))

    def createInstance(self) -> GeommAlgorithm:
        return type(self)()

    def initAlgorithm(self, config: Any = None) -> None:
        for o in self.opts:
            self.addParameter(_parameter(o))
            if o.kind == "recipe":
                self.addParameter(_bundled_recipe(o))
        self.add_outputs()

    def add_outputs(self) -> None:
        """Declare the outputs beyond the destination parameters."""

    # -- the run ----------------------------------------------------------------------------

    def values(self, parameters: dict[str, Any], context: QgsProcessingContext
               ) -> dict[str, Any]:
        """Each option's value as the command line needs it (None: not given)."""
        out: dict[str, Any] = {}
        for o in self.opts:
            given = parameters.get(o.name) is not None or o.default is not None
            if o.kind == "int":
                v: Any = self.parameterAsInt(parameters, o.name, context) if given else None
            elif o.kind == "float":
                v = self.parameterAsDouble(parameters, o.name, context) if given else None
            elif o.kind == "bool":
                v = self.parameterAsBoolean(parameters, o.name, context)
            elif o.kind == "enum":
                v = o.choices[self.parameterAsEnum(parameters, o.name, context)] if given \
                    else o.default
            elif o.kind == "raster":
                layer = self.parameterAsRasterLayer(parameters, o.name, context)
                v = layer_file(layer, o.label) if layer is not None else None
            elif o.kind == "layer":
                layer = self.parameterAsLayer(parameters, o.name, context)
                v = layer_file(layer, o.label) if layer is not None else None
            elif o.kind in ("out_folder", "out_file"):
                v = self.parameterAsFileOutput(parameters, o.name, context) or None
            elif o.kind == "recipe":
                v = (self.parameterAsFile(parameters, o.name, context).strip()
                     or self.parameterAsEnumString(parameters, f"BUNDLED_{o.name}", context)
                     or None)
                if v is None and not o.optional:
                    raise QgsProcessingException(f"{o.label}: give a recipe file or choose a "
                                                 "recipe bundled with geomm")
            elif o.kind in ("file", "folder"):
                v = self.parameterAsFile(parameters, o.name, context).strip() or None
            else:
                v = self.parameterAsString(parameters, o.name, context).strip() or None
            out[o.name] = v
        return out

    def arguments(self, values: dict[str, Any]) -> list[str]:
        """The command line after ``geomm``."""
        args = [self.command]
        for o in self.opts:
            v = values.get(o.name)
            if o.kind == "bool":
                flag = o.flag if v else o.off
                args += [flag] if flag else []
                continue
            if v is None or (o.kind == "enum" and v == o.omit):
                continue
            if o.kind == "lines":
                items = [s.strip() for s in re.split(r"[\n;]", str(v)) if s.strip()]
            elif o.kind == "names":
                items = [s for s in re.split(r"[\s,]+", str(v)) if s]
            else:
                items = [str(v)]
            for item in items:
                args += [o.flag, item] if o.flag else [item]
        return args

    def outputs_written(self, values: dict[str, Any]) -> list[Path]:
        """Files and folders the run writes (cleaned up after a cancel)."""
        return [Path(values[o.name]) for o in self.opts
                if o.kind in ("out_folder", "out_file") and values.get(o.name)]

    def epochs(self, values: dict[str, Any]) -> int | None:
        return None

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        feedback = feedback or QgsProcessingFeedback()
        values = self.values(parameters, context)
        try:
            result = run_geomm(self.arguments(values), feedback,
                               outputs=self.outputs_written(values), epochs=self.epochs(values),
                               span=self.span)
        except GeommNotFound as e:
            raise QgsProcessingException(str(e)) from None
        if result.cancelled:
            gone = ", ".join(str(p) for p in result.removed)
            feedback.pushInfo(f"cancelled: geomm {self.command} was stopped"
                              + (f"; removed what it had begun: {gone}" if gone else ""))
            return {}
        if result.returncode:
            raise QgsProcessingException(f"geomm {self.command} failed: "
                                         + " | ".join(result.errors))
        if result.finished_first:
            feedback.pushInfo(f"geomm {self.command} had finished when the cancel came: "
                              "its outputs are complete and kept")
        feedback.setProgress(100)
        return self.finish(values, context, feedback)

    def finish(self, values: dict[str, Any], context: QgsProcessingContext,
               feedback: QgsProcessingFeedback) -> dict[str, Any]:
        """The results once geomm succeeded (default: the destination parameters)."""
        return {o.name: values[o.name] for o in self.opts
                if o.kind in ("out_folder", "out_file")}

