"""The evaluate stage: score a map against a reference and write the report folder.

``geomm evaluate`` calls :func:`evaluate`; notebooks can call :func:`geomm.assess.accuracy.assess`
for the numbers alone and :func:`geomm.assess.report.write_report` to write them.
"""

from __future__ import annotations

from pathlib import Path

from geomm.assess.accuracy import Assessment, Sampling, assess

__all__ = ["evaluate"]


def evaluate(map_path: str | Path, reference: str | Path, out_dir: str | Path, *,
             column: str | None = "reference", sampling: Sampling = "stratified",
             bundle: str | Path | None = None, unknown_classes: str = "error",
             overwrite: bool = False) -> Assessment:
    """Assess ``map_path`` against ``reference`` and write the report into ``out_dir``.

    Args:
        map_path: The class map (``classes.tif``) or ``probabilities.tif``.
        reference: Reference points, polygons or label raster.
        out_dir: Report folder: ``metrics.json``, ``report.md``, ``report.html``, PNGs.
        column: Reference class column of a vector reference.
        sampling: ``"stratified"`` or ``"simple"`` (see :func:`geomm.assess.accuracy.assess`).
        bundle: Model bundle for class names, when the map carries none.
        unknown_classes: ``"error"``, ``"extra"`` or ``"skip"`` for reference classes the
            map does not have.
        overwrite: Replace the files of an earlier report in ``out_dir``.

    Returns:
        The assessment written.

    Raises:
        GeommError: see :func:`geomm.assess.accuracy.assess`; OutputExistsError when ``out_dir``
            holds a report and not ``overwrite``.
    """
    from geomm._outputs import OutputExistsError
    from geomm.assess.report import REPORT_FILES, write_report

    out = Path(out_dir)
    clash = [n for n in REPORT_FILES if (out / n).exists()]
    if clash and not overwrite:  # fail before the (possibly long) assessment
        raise OutputExistsError(f"{out}: already holds a report ({', '.join(clash)}); pass "
                                "--overwrite to replace it, or choose another folder")
    result = assess(map_path, reference, column=column, sampling=sampling, bundle=bundle,
                    unknown_classes=unknown_classes)  # type: ignore[arg-type]
    write_report(result, out, overwrite=overwrite)
    return result
