"""PyQGIS checks of the geomm plugin, run by QGIS's own Python (``/usr/bin/python3`` with
python3-qgis), headless, by tests/qgis/test_qgis_pyqgis.py; one JSON document on stdout.

``python3 pyqgis_checks.py load PLUGINS BUNDLE WORK PNG QGIS_PROCESS_MAP``: open the map that
``qgis_process run geomm:predict`` wrote (styled by its classes.qml); run geomm:predict,
geomm:vectorize and geomm:sample_design as the Processing toolbox does (``runAndLoadResults``:
outputs loaded into the project by the plugin's post-processors); describe every layer's
style; render the map, the points and a legend to PNG.

``python3 pyqgis_checks.py cancel PLUGINS BUNDLE OUT``: run geomm:predict and cancel it as
soon as it reports progress; report the geomm processes seen then and still alive after.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def start(plugins: str) -> Any:
    from qgis.core import QgsApplication

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], True)
    app.initQgis()
    sys.path[:0] = ["/usr/share/qgis/python/plugins", plugins]
    from processing.core.Processing import Processing

    Processing.initialize()
    import geomm_processing  # the installed copy, as QGIS loads it

    plugin = geomm_processing.classFactory(None)
    plugin.initProcessing()
    return app, plugin


def describe(layer: Any) -> dict[str, Any]:
    from qgis.core import QgsCategorizedSymbolRenderer, QgsPalettedRasterRenderer

    r = layer.renderer()
    if isinstance(r, QgsPalettedRasterRenderer):
        classes = [[int(c.value), c.label, c.color.name()] for c in r.classes()]
    elif isinstance(r, QgsCategorizedSymbolRenderer):
        classes = [[int(c.value()), c.label(), c.symbol().color().name()]
                   for c in r.categories()]
    else:
        classes = []
    return {"valid": layer.isValid(), "renderer": r.type() if r else None,
            "classes": classes, "source": layer.source(),
            "features": layer.featureCount() if hasattr(layer, "featureCount") else None}


def load(plugins: str, bundle: str, work: str, png: str, qp_map: str) -> dict[str, Any]:
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsRasterLayer

    app, plugin = start(plugins)
    import processing  # QGIS's Processing plugin (on sys.path once started)

    out: dict[str, Any] = {}
    opened = QgsRasterLayer(str(Path(qp_map) / "classes.tif"), "classes", "gdal")
    out["qgis_process_map"] = describe(opened)
    project = QgsProject.instance()
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = QgsProcessingFeedback()
    w = Path(work)
    timings = {}
    t = time.perf_counter()
    res = processing.runAndLoadResults(
        "geomm:predict", {"BUNDLE": bundle, "BUNDLED_RECIPE": "s2-landcover",
                          "OUTPUT": str(w / "map"), "PROBABILITIES": 2},
        feedback=feedback, context=context)
    timings["predict"] = time.perf_counter() - t
    classes = res["CLASSES"]
    t = time.perf_counter()
    processing.runAndLoadResults(
        "geomm:vectorize", {"INPUT": classes, "OUTPUT": str(w / "polygons.gpkg"),
                            "MIN_AREA": 2000, "SIMPLIFY": 5},
        feedback=feedback, context=context)
    timings["vectorize"] = time.perf_counter() - t
    t = time.perf_counter()
    processing.runAndLoadResults(
        "geomm:sample_design", {"MAP": classes, "N": 60, "MIN_PER_CLASS": 3,
                                "OUTPUT": str(w / "points.gpkg")},
        feedback=feedback, context=context)
    timings["sample_design"] = time.perf_counter() - t
    out["timings"] = timings
    out["arguments"] = arguments(context, bundle, classes, str(w / "points.gpkg"), str(w))
    out["project"] = {lyr.name(): describe(lyr) for lyr in project.mapLayers().values()}
    out["png"] = render(project, png)
    plugin.unload()
    return out


def arguments(context: Any, bundle: str, classes: str, points: str, w: str
              ) -> dict[str, list[str]]:
    """The command lines the algorithms build from typed parameters (not run)."""
    from qgis.core import QgsApplication

    cases = {
        "geomm:stack": {"BUNDLED_RECIPE": "s2-landcover", "OUTPUT": f"{w}/store",
                        "WORKERS": 2},
        "geomm:train": {"RECIPE": f"{w}/my.yaml", "CLASSIFIER": 1, "OUTPUT": f"{w}/rf",
                        "MAX_EPOCHS": 3, "MODALITY_DROPOUT": 0.25, "FUSION": 2, "AMP": False,
                        "DEVICE": 1, "OVERWRITE": True},
        "geomm:predict": {"BUNDLE": bundle, "MODALITIES": "visible=a.tif,b.tif\nsar=c.tif",
                          "OUTPUT": f"{w}/m2", "MISSING": "sar, infrared",
                          "PROBABILITIES": 1, "TILE_SIZE": 512},
        "geomm:vectorize": {"INPUT": classes, "OUTPUT": f"{w}/p.parquet", "MIN_AREA": 100},
        "geomm:evaluate": {"MAP": classes, "REFERENCE": points, "COLUMN": "map_class",
                           "SAMPLING": 1, "OUTPUT": f"{w}/report"},
        "geomm:sample_design": {"MAP": classes, "N": 50, "ALLOCATION": 2,
                                "EXPECTED_UA": "0.7, water=0.9", "OUTPUT": f"{w}/s.gpkg"},
    }
    out = {}
    for alg_id, params in cases.items():
        alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
        ok, msg = alg.checkParameterValues(params, context)
        out[alg_id] = alg.arguments(alg.values(params, context)) if ok else [f"ERROR {msg}"]
    return out


def render(project: Any, png: str) -> dict[str, Any]:
    """The class map with the sample points and a legend, as a PNG; its pixel colours."""
    from qgis.core import (
        QgsLayoutExporter,
        QgsLayoutItemLegend,
        QgsLayoutItemMap,
        QgsLayoutPoint,
        QgsLayoutSize,
        QgsMapLayerLegendUtils,
        QgsPrintLayout,
        QgsRasterLayer,
        QgsUnitTypes,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtGui import QColor, QImage

    rasters = [lyr for lyr in project.mapLayers().values() if isinstance(lyr, QgsRasterLayer)]
    points = [lyr for lyr in project.mapLayers().values()
              if isinstance(lyr, QgsVectorLayer) and lyr.name() == "points"]
    for lyr in project.mapLayers().values():  # polygons: shown in the legend, not drawn
        if isinstance(lyr, QgsVectorLayer) and lyr.name() != "points":
            project.layerTreeRoot().findLayer(lyr.id()).setItemVisibilityChecked(False)
    project.setCrs(rasters[0].crs())
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    mm = QgsUnitTypes.LayoutMillimeters
    layout.pageCollection().page(0).setPageSize(QgsLayoutSize(262, 106, mm))
    item = QgsLayoutItemMap(layout)
    item.attemptMove(QgsLayoutPoint(3, 3, mm))
    item.attemptResize(QgsLayoutSize(200, 100, mm))
    item.setCrs(rasters[0].crs())
    item.setLayers(points + rasters)
    item.setExtent(rasters[0].extent())
    layout.addLayoutItem(item)
    legend = QgsLayoutItemLegend(layout)
    legend.setLinkedMap(item)
    legend.setTitle("geomm predict")
    legend.setAutoUpdateModel(False)
    tree = legend.model().rootGroup()
    for node in list(tree.children()):
        if node.layerId() != rasters[0].id():
            tree.removeChildNode(node)
        else:  # the class entries, without the band's title
            n = len(legend.model().layerLegendNodes(node))
            QgsMapLayerLegendUtils.setLegendNodeOrder(node, list(range(1, n)))
            legend.model().refreshLayerLegend(node)
    legend.setResizeToContents(True)
    legend.attemptMove(QgsLayoutPoint(207, 3, mm))
    layout.addLayoutItem(legend)
    settings = QgsLayoutExporter.ImageExportSettings()
    settings.dpi = 110
    settings.generateWorldFile = False
    settings.exportMetadata = False
    result = QgsLayoutExporter(layout).exportToImage(png, settings)
    image = QImage(png)
    palette = {c.color.name(): c.label for c in rasters[0].renderer().classes()}
    counts: dict[str, int] = {}
    step = 2
    for y in range(0, image.height(), step):
        for x in range(0, image.width(), step):
            name = QColor(image.pixel(x, y)).name()
            if name in palette:
                counts[palette[name]] = counts.get(palette[name], 0) + 1
    sampled = ((image.width() + step - 1) // step) * ((image.height() + step - 1) // step)
    return {"exported": result == QgsLayoutExporter.Success, "width": image.width(),
            "height": image.height(), "class_pixels": counts, "sampled": sampled}


def _processes(needle: str) -> list[int]:
    """Live processes whose command line mentions ``needle`` (not zombies)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmd and state != "Z" and int(pid) != os.getpid():
            found.append(int(pid))
    return found


def cancel(plugins: str, bundle: str, out_dir: str) -> dict[str, Any]:
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback

    app, plugin = start(plugins)
    feedback = QgsProcessingFeedback()
    seen: dict[str, Any] = {"progress": [], "pids": [], "log": []}

    def on_progress(p: float) -> None:
        seen["progress"].append(p)
        if p > 0 and not feedback.isCanceled():
            seen["pids"] = _processes(out_dir)
            seen["cancelled_at"] = time.perf_counter()
            feedback.cancel()

    feedback.progressChanged.connect(on_progress)
    alg = QgsApplication.processingRegistry().createAlgorithmById("geomm:predict")
    params = {"BUNDLE": bundle, "BUNDLED_RECIPE": "s2-landcover", "OUTPUT": out_dir,
              "TILE_SIZE": 256}
    t0 = time.perf_counter()
    results, ok = alg.run(params, QgsProcessingContext(), feedback)
    end = time.perf_counter()
    seen.update(ok=ok, results={k: str(v) for k, v in results.items()},
                seconds=end - t0, stop_seconds=end - seen.get("cancelled_at", end),
                alive_after=_processes(out_dir),
                log=feedback.textLog().splitlines()[-6:])
    plugin.unload()
    return seen


if __name__ == "__main__":
    what, *args = sys.argv[1:]
    doc = load(*args) if what == "load" else cancel(*args)
    print("GEOMM-JSON " + json.dumps(doc), flush=True)
    os._exit(0)  # QGIS 3.22 may crash in its exit handlers, after the answer
