"""The six geomm algorithms: stack, train, predict, vectorize, evaluate, sample-design.

Each declares the options of its ``geomm`` command (``geomm <command> --help``) and, once the
command succeeded, its outputs: the class map loaded with geomm's ``classes.qml``, polygons and
points coloured by class, the accuracy report as HTML, the scores as numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputVectorLayer,
)

from .algorithm import GeommAlgorithm, Opt
from .styling import load_on_completion, palette_of_file, style_vector_file

__all__ = ["ALGORITHMS"]

RECIPE_HELP = ("a recipe YAML file, or the name of a recipe bundled with geomm "
               "(s2-landcover, s1s2-bigearthnet)")
OVERWRITE = Opt("OVERWRITE", "--overwrite", "bool", "Replace earlier results in the output",
                default=False, help="geomm never replaces its earlier results otherwise")
WORKERS = Opt("WORKERS", "--workers", "int", "Dask worker threads (default: all cores)",
              minimum=1, advanced=True)
DEVICE = Opt("DEVICE", "--device", "enum", "Device", choices=("auto", "cpu", "cuda"),
             default="auto", omit="auto", advanced=True,
             help="auto: CUDA when torch sees a GPU")
AMP = Opt("AMP", None, "bool", "bf16 mixed precision (CUDA; training also on a CPU with "
          "native bf16)", default=True, off="--no-amp", advanced=True)
BUNDLE_FOR_NAMES = Opt("BUNDLE", "--bundle", "folder", "Model bundle with the class names "
                       "(for a map that carries none)", advanced=True)


def _number(path: Path, *keys: str) -> float | None:
    try:
        doc: Any = json.loads(path.read_text(encoding="utf-8"))
        for k in keys:
            doc = doc[k]
        return float(doc)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class StackAlgorithm(GeommAlgorithm):
    command, title = "stack", "Stack (co-register and tile)"
    summary = ("Co-register a recipe's rasters and labels, each at its native resolution, "
               "into a tile store (Zarr + GeoParquet index). STAC modalities are searched "
               "and composited first.")
    opts = (Opt("RECIPE", None, "recipe", "Recipe", optional=False, help=RECIPE_HELP),
            Opt("OUTPUT", "--out", "out_folder", "Tile store folder", optional=False),
            Opt("DRY_RUN", "--dry-run", "bool", "Only print the plan (write nothing)",
                default=False),
            WORKERS, OVERWRITE)


class TrainAlgorithm(GeommAlgorithm):
    command, title = "train", "Train a model"
    summary = ("Train the multi-branch fusion CNN, or a per-pixel random forest / SVM, on a "
               "recipe's spatial-block split and write a model bundle; ends with its score "
               "on the held-out test blocks.")
    opts = (Opt("RECIPE", None, "recipe", "Recipe", optional=False, help=RECIPE_HELP),
            Opt("CLASSIFIER", "--classifier", "enum", "Model",
                choices=("cnn", "rf", "svm", "auto"), default="cnn", omit="cnn",
                labels=("fusion CNN", "random forest (per pixel)", "SVM (per pixel)",
                        "auto (CNN and RF, keep the better)")),
            Opt("OUTPUT", "--out", "out_folder", "Model bundle folder", optional=False),
            Opt("MAX_EPOCHS", "--max-epochs", "int", "Epochs (default: sized to the labels)",
                minimum=1),
            Opt("MAX_MINUTES", "--max-minutes", "float", "Wall-time budget per model, minutes",
                minimum=0.1),
            Opt("FOLD", "--fold", "int", "Spatial fold held out for testing (default 0)",
                minimum=0, advanced=True),
            Opt("FOLDS", "--folds", "int", "Number of spatial folds (default 5)", minimum=3,
                advanced=True),
            Opt("STEPS_PER_EPOCH", "--steps-per-epoch", "int", "Training batches per epoch",
                minimum=1, advanced=True),
            Opt("PATCH_SIZE", "--patch-size", "int", "Training patch side, base pixels",
                minimum=6, advanced=True),
            Opt("BLOCK_SIZE", "--block-size", "float", "Spatial block side, CRS units "
                "(default 2000)", minimum=1, advanced=True),
            Opt("FUSION", "--fusion", "enum", "Fusion of the modality branches",
                choices=("concat", "weighted", "attention", "early"), default="concat",
                omit="concat", advanced=True),
            Opt("MODALITY_DROPOUT", "--modality-dropout", "float", "Modality dropout "
                "probability", minimum=0, maximum=0.99, advanced=True),
            Opt("SEED", "--seed", "int", "Seed of split, patches and weights", advanced=True),
            Opt("WIDTH", "--width", "int", "Channels of each branch (default: 48 for one "
                "network, 32 for each of several)", minimum=1, advanced=True),
            Opt("SPECTRAL", "--spectral", "int", "Width of the per-pixel spectral pathway "
                "(default 32; 0: none)", minimum=0, advanced=True),
            Opt("POLYGONS_PER_CLASS", "--polygons-per-class", "int", "Train on only K "
                "labelled polygons per class", minimum=1, advanced=True),
            Opt("ERODE_LABELS", "--erode-labels", "int", "Leave out labels within N pixels "
                "of another class", minimum=0, advanced=True),
            DEVICE, AMP, WORKERS, OVERWRITE)

    def add_outputs(self) -> None:
        for name, label in (("TEST_OA", "Overall accuracy on the test blocks"),
                            ("TEST_KAPPA", "Kappa on the test blocks"),
                            ("TEST_MACRO_F1", "Macro-F1 on the test blocks")):
            self.addOutput(QgsProcessingOutputNumber(name, label))

    def epochs(self, values: dict[str, Any]) -> int | None:
        return int(values.get("MAX_EPOCHS") or 0) or None  # else geomm's plan line says

    def outputs_written(self, values: dict[str, Any]) -> list[Path]:
        out = Path(values["OUTPUT"])
        return [out, out.with_name(out.name + "-logs")]

    def finish(self, values: dict[str, Any], context: QgsProcessingContext,
               feedback: QgsProcessingFeedback) -> dict[str, Any]:
        bundle = Path(values["OUTPUT"]) / "bundle.json"
        return {"OUTPUT": values["OUTPUT"],
                **{k: _number(bundle, "metrics", k.lower())
                   for k in ("TEST_OA", "TEST_KAPPA", "TEST_MACRO_F1")}}


class PredictAlgorithm(GeommAlgorithm):
    command, title = "predict", "Predict a land-cover map"
    span = (2.0, 90.0)  # the bar counts tiles; co-registration before, COGs after
    summary = ("Map a scene with a model bundle: streamed, blended tiles written as COGs "
               "(classes, probabilities, confidence) with a QGIS style, a STAC item and a "
               "quicklook. The class map is added to the project, styled.")
    opts = (Opt("BUNDLE", None, "folder", "Model bundle", optional=False),
            Opt("RECIPE", None, "recipe", "Recipe (or give the inputs below)",
                help=RECIPE_HELP),
            Opt("MODALITIES", "--modality", "lines", "Inputs instead of a recipe: one "
                "NAME=FILE[,FILE...] per line", help="bands in the bundle's order"),
            Opt("OUTPUT", "-o", "out_folder", "Output folder", optional=False),
            Opt("MISSING", "--missing", "names", "Predict without these modalities "
                "(comma-separated)", advanced=True),
            Opt("PROBABILITIES", "--probabilities", "enum", "probabilities.tif",
                choices=("uint8", "float32", "none"), default="uint8", omit="uint8"),
            Opt("TILE_SIZE", "--tile-size", "int", "Tile side, base pixels", default=768,
                minimum=8, advanced=True),
            Opt("HALO", "--halo", "int", "Half the tile overlap, base pixels", default=48,
                minimum=0, advanced=True),
            Opt("BATCH_SIZE", "--batch-size", "int", "Tiles per forward pass", minimum=1,
                advanced=True),
            Opt("THREADS", "--threads", "int", "Torch CPU threads", minimum=1, advanced=True),
            DEVICE, AMP,
            Opt("COMPILE", "--compile", "bool", "torch.compile the network", default=False,
                advanced=True),
            OVERWRITE)

    def add_outputs(self) -> None:
        self.addOutput(QgsProcessingOutputRasterLayer("CLASSES", "Class map"))
        self.addOutput(QgsProcessingOutputRasterLayer("CONFIDENCE", "Confidence"))
        self.addOutput(QgsProcessingOutputRasterLayer("PROBABILITY_MAP", "Class probabilities"))
        self.addOutput(QgsProcessingOutputFile("STAC_ITEM", "STAC item"))

    def finish(self, values: dict[str, Any], context: QgsProcessingContext,
               feedback: QgsProcessingFeedback) -> dict[str, Any]:
        out = Path(values["OUTPUT"])
        maps = sorted(out.glob("classes.tif")) or sorted(out.glob("*/classes.tif"))
        for classes in maps:  # one per scene of a multi-scene recipe
            name = "classes" if classes.parent == out else f"{classes.parent.name} classes"
            qml = classes.with_suffix(".qml")
            load_on_completion(context, str(classes), name, "CLASSES", raster=True,
                               style=str(qml) if qml.is_file() else None)
        if not maps:
            feedback.reportError(f"{out}: geomm wrote no classes.tif", False)
            return {"OUTPUT": str(out)}
        first = maps[0].parent
        files = {"CLASSES": "classes.tif", "CONFIDENCE": "confidence.tif",
                 "PROBABILITY_MAP": "probabilities.tif", "STAC_ITEM": "item.json"}
        return {"OUTPUT": str(out), **{k: str(first / f) for k, f in files.items()
                                       if (first / f).exists()}}


class VectorizeAlgorithm(GeommAlgorithm):
    command, title = "vectorize", "Vectorize a class map"
    summary = ("Turn a class raster into polygons per class (id, name, area), merged across "
               "window seams, optionally sieved and simplified as a coverage. The polygons are "
               "added to the project coloured by class.")
    opts = (Opt("INPUT", None, "raster", "Class raster (classes.tif)", optional=False),
            Opt("OUTPUT", "-o", "out_file", "Polygons", optional=False,
                file_filter="GeoPackage (*.gpkg);;GeoParquet (*.parquet)"),
            Opt("MIN_AREA", "--min-area", "float", "Sieve regions smaller than (m²)",
                minimum=0),
            Opt("SIMPLIFY", "--simplify", "float", "Simplify tolerance (m)", minimum=0),
            Opt("WINDOW", "--window", "int", "Window side, pixels", default=2048, minimum=1,
                advanced=True),
            OVERWRITE)

    def add_outputs(self) -> None:
        self.addOutput(QgsProcessingOutputVectorLayer("POLYGONS", "Polygons"))

    def finish(self, values: dict[str, Any], context: QgsProcessingContext,
               feedback: QgsProcessingFeedback) -> dict[str, Any]:
        return _load_vector(values, context, feedback, layer="classes", field="class_id",
                            raster=values["INPUT"], output="POLYGONS")


class EvaluateAlgorithm(GeommAlgorithm):
    command, title = "evaluate", "Evaluate a map's accuracy"
    summary = ("Assess a class map against a reference sample (points, polygons or a label "
               "raster), classes matched by name: error matrix, OA, kappa, per-class scores "
               "and error-adjusted areas with 95 % intervals (Olofsson et al. 2014).")
    opts = (Opt("MAP", None, "raster", "Class map (classes.tif or probabilities.tif)",
                optional=False),
            Opt("REFERENCE", None, "layer", "Reference (points, polygons or label raster)",
                optional=False),
            Opt("COLUMN", "--column", "string", "Reference class column", default="reference"),
            Opt("SAMPLING", "--sampling", "enum", "Sampling design",
                choices=("stratified", "simple"), default="stratified", omit="stratified"),
            Opt("UNKNOWN_CLASSES", "--unknown-classes", "enum", "Reference classes the map "
                "lacks", choices=("error", "extra", "skip"), default="error", omit="error"),
            BUNDLE_FOR_NAMES,
            Opt("OUTPUT", "-o", "out_folder", "Report folder", optional=False),
            OVERWRITE)

    def add_outputs(self) -> None:
        self.addOutput(QgsProcessingOutputHtml("REPORT", "Accuracy report"))
        self.addOutput(QgsProcessingOutputFile("METRICS", "metrics.json"))
        self.addOutput(QgsProcessingOutputNumber("OVERALL_ACCURACY", "Overall accuracy"))
        self.addOutput(QgsProcessingOutputNumber("KAPPA", "Kappa"))

    def finish(self, values: dict[str, Any], context: QgsProcessingContext,
               feedback: QgsProcessingFeedback) -> dict[str, Any]:
        out = Path(values["OUTPUT"])
        metrics = out / "metrics.json"
        oa = _number(metrics, "scores", "overall_accuracy")
        kappa = _number(metrics, "scores", "kappa")
        if oa is not None and kappa is not None:
            feedback.pushInfo(f"overall accuracy {oa:.3f}, kappa {kappa:.3f}")
        return {"OUTPUT": str(out), "REPORT": str(out / "report.html"),
                "METRICS": str(metrics), "OVERALL_ACCURACY": oa, "KAPPA": kappa}


class SampleDesignAlgorithm(GeommAlgorithm):
    command, title = "sample-design", "Design a reference sample"
    summary = ("Draw a stratified random sample of reference points from a class map "
               "(strata: the map classes). Fill the points' 'reference' column, then run "
               "Evaluate. The points are added to the project coloured by map class.")
    opts = (Opt("MAP", None, "raster", "Class map (classes.tif)", optional=False),
            Opt("N", "-n", "int", "Number of points", optional=False, minimum=1),
            Opt("ALLOCATION", "--allocation", "enum", "Allocation to classes",
                choices=("proportional", "equal", "neyman"), default="proportional",
                omit="proportional"),
            Opt("EXPECTED_UA", "--expected-ua", "names", "Expected user's accuracy for neyman "
                "(U, or NAME=U per class, comma-separated)"),
            Opt("MIN_PER_CLASS", "--min-per-class", "int", "At least this many points per "
                "class", default=0, minimum=0),
            Opt("SEED", "--seed", "int", "Random seed", default=0),
            BUNDLE_FOR_NAMES,
            Opt("OUTPUT", "-o", "out_file", "Points", optional=False,
                file_filter="GeoPackage (*.gpkg)"),
            OVERWRITE)

    def add_outputs(self) -> None:
        self.addOutput(QgsProcessingOutputVectorLayer("POINTS", "Reference points"))

    def finish(self, values: dict[str, Any], context: QgsProcessingContext,
               feedback: QgsProcessingFeedback) -> dict[str, Any]:
        return _load_vector(values, context, feedback, layer="samples", field="map_class_id",
                            raster=values["MAP"], output="POINTS")


def _load_vector(values: dict[str, Any], context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, *, layer: str, field: str, raster: str,
                 output: str) -> dict[str, Any]:
    path = str(values["OUTPUT"])
    uri = f"{path}|layername={layer}" if path.lower().endswith(".gpkg") else path
    palette = palette_of_file(raster)
    qml = style_vector_file(uri, field, palette)
    if qml:
        feedback.pushInfo(f"style: {qml} (class colours of {raster})")
    load_on_completion(context, uri, Path(path).stem, output, raster=False, style=qml,
                       field=field, palette=palette)
    return {"OUTPUT": path, output: uri}


ALGORITHMS = (StackAlgorithm, TrainAlgorithm, PredictAlgorithm, VectorizeAlgorithm,
              EvaluateAlgorithm, SampleDesignAlgorithm)
