"""Write an accuracy report folder: metrics.json, report.md, report.html and four PNG plots.

The HTML is one self-contained file (inline style, no scripts, nothing fetched): its figures
are embedded as ``data:`` URIs (a ``<picture>`` whose fallback ``<img>`` names the PNG beside
it), so ``report.html`` copied or mailed alone shows them; the PNGs are written too, for reuse.
The folder is filled atomically (:func:`geomm._outputs.staged_outputs`).
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from geomm._outputs import staged_outputs
from geomm.assess.accuracy import Assessment
from geomm.assess.areas import Estimate

__all__ = ["REPORT_FILES", "write_report"]

REPORT_FILES = ("metrics.json", "report.md", "report.html", "confusion_matrix.png", "f1.png",
                "quicklook.png", "areas.png")
"""The files a report folder holds."""

_FIGURES = (("confusion_matrix.png", "Error matrix"), ("f1.png", "Per-class scores"),
            ("areas.png", "Area estimates"), ("quicklook.png", "The map"))


@dataclass(frozen=True)
class _Table:
    """A table rendered the same way to Markdown and HTML."""

    title: str
    head: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ""

    def markdown(self) -> str:
        def cell(s: str) -> str:
            return s.replace("|", "\\|")

        lines = [f"### {self.title}", ""]
        if self.caption:
            lines += [self.caption, ""]
        lines.append("| " + " | ".join(cell(h) for h in self.head) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(self.head) - 1)) + "|")
        lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in self.rows]
        return "\n".join(lines)

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.head)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                       for r in self.rows)
        cap = f"<p class='cap'>{html.escape(self.caption)}</p>" if self.caption else ""
        return (f"<h3>{html.escape(self.title)}</h3>{cap}<table><thead><tr>{head}</tr>"
                f"</thead><tbody>{body}</tbody></table>")


def _f(v: float | None, nd: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"


def _pm(e: Estimate, nd: int = 3, scale: float = 1.0) -> str:
    if math.isnan(e.value):
        return "n/a"
    ci = "n/a" if math.isnan(e.se) else f"{e.ci95 * scale:,.{nd}f}"
    return f"{e.value * scale:,.{nd}f} ± {ci}"


def _tables(a: Assessment) -> list[_Table]:
    names, em = a.names, a.error_matrix
    row_tot, col_tot = em.sum(axis=1), em.sum(axis=0)
    counts = _Table(
        "Error matrix (sample counts)", ["map \\ reference", *names, "total"],
        [[n, *map(str, em[i]), str(row_tot[i])] for i, n in enumerate(names)]
        + [["total", *map(str, col_tot), str(int(em.sum()))]],
        "Rows are map classes, columns reference classes (as in Olofsson et al. 2014).")
    s = a.scores
    per = _Table(
        "Per-class scores of the sample", ["class", "user's acc. (precision)",
                                           "producer's acc. (recall)", "F1", "IoU",
                                           "reference samples"],
        [[n, _f(s.precision[i]), _f(s.recall[i]), _f(s.f1[i]), _f(s.iou[i]),
          str(s.support[i])] for i, n in enumerate(names)]
        + [[f"{what} average", _f(av.precision), _f(av.recall), _f(av.f1), _f(av.iou), ""]
           for what, av in (("macro", s.macro), ("weighted", s.weighted))],
        "Unweighted sample figures; macro averages are over the classes present in the "
        "reference, weighted averages weight classes by their reference samples.")
    out = [counts]
    e = a.estimates
    if e is not None and a.sampling == "stratified":
        out.append(_Table(
            "Estimated area proportions", ["map \\ reference", *names, "total (W)"],
            [[n, *(f"{v:.4f}" for v in e.proportions[i]), f"{e.proportions[i].sum():.4f}"]
             for i, n in enumerate(names)]
            + [["total", *(f"{v:.4f}" for v in e.proportions.sum(axis=0)), "1.0000"]],
            "p_ij = W_i n_ij / n_i. with W_i the map share of class i."))
    out.append(per)
    if e is not None:
        ha = e.area_ha
        unit, scale = ("ha", (e.pixel_area_m2 or 0) / 1e4) if ha is not None else ("px", 1.0)
        nd = 0 if unit == "px" else 1
        out.append(_Table(
            "Error-adjusted area and accuracy estimates",
            ["class", f"mapped ({unit})", f"estimated ({unit}) ± 95% CI", f"SE ({unit})",
             "estimated (px) ± 95% CI", "user's acc. ± 95% CI", "producer's acc. ± 95% CI"],
            [[n, f"{e.mapped_px[i] * scale:,.{nd}f}", _pm(e.area_px[i], nd, scale),
              "n/a" if math.isnan(e.area_px[i].se) else f"{e.area_px[i].se * scale:,.{nd}f}",
              _pm(e.area_px[i], 0), _pm(e.users[i]), _pm(e.producers[i])]
             for i, n in enumerate(names)],
            f"{'Stratified estimator of Olofsson et al. (2014)' if e.design == 'stratified' else 'Simple random sampling estimators'}"  # noqa: E501
            f"; overall accuracy {_pm(e.overall)}; CIs are ±1.96 SE."))
    return out


def _summary(a: Assessment) -> list[tuple[str, str]]:
    m, t, s = a.map, a.tally, a.scores
    crs = "none" if m.crs is None else m.crs.to_string()
    rows = [("map", f"{m.path} ({m.kind}, {m.width} × {m.height} px, {crs}; class names from "
                    f"{m.names_from})"),
            ("reference", f"{a.reference} ({t.kind}" + (f", column '{a.column}'" if a.column
                                                         else "") + ")"),
            ("sampling design", a.sampling),
            ("samples scored", f"{int(a.error_matrix.sum()):,}"),
            ("overall accuracy (sample)", _f(s.overall_accuracy)),
            ("Cohen's kappa", _f(s.kappa)),
            ("macro F1", _f(s.macro.f1))]
    if a.estimates is not None:
        rows.append(("overall accuracy (estimated ± 95% CI)", _pm(a.estimates.overall)))
    return rows


def _markdown(a: Assessment, when: str) -> str:
    parts = [f"# Accuracy assessment of {a.map.path.name}", "", f"Written {when} by geomm.", ""]
    parts += [f"- **{k}**: {v}" for k, v in _summary(a)]
    parts += ["", "## Notes", ""] + ([f"- {n}" for n in a.notes] or ["- none"])
    parts += ["", "## Tables", ""]
    for t in _tables(a):
        parts += [t.markdown(), ""]
    parts += ["## Figures", ""] + [f"![{title}]({name})\n" for name, title in _FIGURES]
    return "\n".join(parts)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}h1{font-size:1.6em;border-bottom:3px solid #1f77b4}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}td,th{border:1px solid #bbb;
padding:.25em .6em;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#e8f0f8}tr:nth-child(even) td{background:#f6f8fa}.cap{color:#555;font-size:.85em}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}
figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}.notes li{color:#8a4b00}"""


def _figure(name: str, title: str, png: bytes | None) -> str:
    """A figure: the PNG embedded (a ``<picture>`` source), the file beside it as fallback."""
    esc = html.escape
    img = f"<img src='{name}' alt='{esc(title)}'>"
    if png is not None:
        # "http" in the base64 text is written with an entity (the attribute value is the
        # same): the page's text names no URL scheme, so a grep for one checks it is offline
        data = re.sub("(?i)(htt)(p)", lambda m: f"{m[1]}&#{ord(m[2])};",
                      base64.b64encode(png).decode("ascii"))
        img = f"<picture><source srcset='data:image/png;base64,{data}'>{img}</picture>"
    return f"<figure>{img}<figcaption>{esc(title)}</figcaption></figure>"


def _html(a: Assessment, when: str, pngs: Mapping[str, bytes] | None = None) -> str:
    """The page; ``pngs`` (file name -> bytes) are embedded."""
    esc = html.escape
    summary = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in _summary(a))
    notes = "".join(f"<li>{esc(n)}</li>" for n in a.notes) or "<li>none</li>"
    tables = "".join(t.html() for t in _tables(a))
    figures = "".join(_figure(name, title, (pngs or {}).get(name)) for name, title in _FIGURES)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Accuracy "
            f"assessment of {esc(a.map.path.name)}</title><style>{_CSS}</style></head><body>"
            f"<h1>Accuracy assessment of {esc(a.map.path.name)}</h1><p>Written {esc(when)} by "
            f"geomm.</p><dl>{summary}</dl><h2>Notes</h2><ul class='notes'>{notes}</ul>"
            f"<h2>Tables</h2>{tables}<h2>Figures</h2>{figures}</body></html>\n")


def write_report(a: Assessment, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``metrics.json``, ``report.md``, ``report.html`` and the PNGs into ``out_dir``.

    Raises:
        OutputExistsError: ``out_dir`` already holds a report and not ``overwrite``.
    """
    from geomm.assess import _plots
    out = Path(out_dir)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with staged_outputs(out, REPORT_FILES, overwrite=overwrite, command="geomm evaluate",
                        record="metrics.json") as work:
        (work / "metrics.json").write_text(json.dumps(_jsonable(a.to_dict()), indent=2,
                                                      allow_nan=False) + "\n")
        names = a.names
        colours = _colours(a)
        e = a.estimates
        _plots.confusion_heatmap(work / "confusion_matrix.png", a.error_matrix, names,
                                 e.proportions if e is not None and a.sampling == "stratified"
                                 else None)
        s = a.scores
        _plots.f1_bars(work / "f1.png", names, s.f1, s.precision, s.recall, colours)
        _area_plot(work / "areas.png", a, colours)
        _quicklook(work, a)
        (work / "report.md").write_text(_markdown(a, when))
        pngs = {name: (work / name).read_bytes() for name, _ in _FIGURES
                if (work / name).exists()}
        (work / "report.html").write_text(_html(a, when, pngs))
    return out


def _colours(a: Assessment) -> list[tuple[int, int, int]]:
    from geomm.classes import default_colours

    return [*a.map.table.colours, *default_colours(len(a.names))[len(a.map.table):]]


def _area_plot(path: Path, a: Assessment, colours: Sequence[Sequence[int]]) -> None:
    from geomm.assess import _plots
    e = a.estimates
    if e is None:  # the mapped areas only; the notes say why there is no estimate
        _plots.area_bars(path, a.names, a.mapped_px.astype(float), None, None, "px", colours)
        return
    scale, unit = ((e.pixel_area_m2 or 0) / 1e4, "ha") if e.pixel_area_m2 else (1.0, "px")
    _plots.area_bars(path, a.names, e.mapped_px * scale,
                     [x.value * scale for x in e.area_px], [x.ci95 * scale for x in e.area_px],
                     unit, colours)


def _quicklook(work: Path, a: Assessment) -> None:
    """The map with its legend (geomm.predict.sidecars); a probabilities map is drawn by argmax."""
    from geomm.predict.sidecars import write_quicklook

    m = a.map
    title = f"{m.path.name} ({m.kind})"
    if m.kind == "classes":
        write_quicklook(m.path, work / "quicklook.png", table=m.table, title=title)
        return
    import rasterio
    from rasterio.enums import Resampling

    from geomm.assess._classmap import argmax_classes

    scale = max(1.0, max(m.height, m.width) / 1024)
    shape = (max(1, round(m.height / scale)), max(1, round(m.width / scale)))
    with rasterio.open(m.path) as src:
        data = src.read(out_shape=(src.count, *shape), resampling=Resampling.nearest)
    ids = argmax_classes(data, 255, np.uint8)
    tmp = work / ".argmax.tif"
    t = m.transform @ m.transform.scale(m.width / shape[1], m.height / shape[0])
    with rasterio.open(tmp, "w", driver="GTiff", width=shape[1], height=shape[0], count=1,
                       dtype="uint8", crs=m.crs, transform=t, nodata=255) as dst:
        dst.write(ids, 1)
    write_quicklook(tmp, work / "quicklook.png", table=m.table, title=title)
    tmp.unlink()


def _jsonable(v: Any) -> Any:
    """Replace NaN/inf by None and numpy scalars by Python ones, all the way down."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
