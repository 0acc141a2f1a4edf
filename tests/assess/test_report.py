"""The report folder: machine-readable JSON, Markdown/HTML that render, PNGs that are plots."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from _evaldata import T10, centre, write_class_map, write_points
from PIL import Image

from geomm.assess.accuracy import assess
from geomm.assess.evaluate import evaluate
from geomm.assess.report import REPORT_FILES, write_report
from tests.conftest import need_program

NAMES = ("water", "forest", "crop")


def _inputs(tmp: Path, wrong_every: int | None) -> tuple[Path, Path]:
    classes = np.zeros((90, 90), np.uint8)
    classes[30:60] = 1
    classes[60:] = 2
    map_tif = tmp / "classes.tif"
    if not map_tif.exists():
        write_class_map(map_tif, classes, NAMES)
    rng = np.random.default_rng(11)
    xy, ref = [], []
    for k in range(3):  # 25 points per stratum
        rows = rng.integers(30 * k, 30 * k + 30, 25)
        cols = rng.integers(0, 90, 25)
        for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
            xy.append(centre(T10, int(r), int(c)))
            wrong = wrong_every is not None and i % wrong_every == 0
            ref.append(NAMES[(k + 1) % 3] if wrong else NAMES[k])
    return map_tif, write_points(tmp / "p.gpkg", xy, ref)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    map_tif, pts = _inputs(tmp, wrong_every=5)
    evaluate(map_tif, pts, tmp / "rep")
    return tmp / "rep"


@pytest.fixture(scope="module")
def other_report(tmp_path_factory):
    """The same map scored against other reference labels."""
    tmp = tmp_path_factory.mktemp("other")
    map_tif, pts = _inputs(tmp, wrong_every=2)
    evaluate(map_tif, pts, tmp / "rep")
    return tmp / "rep"


def test_report_folder_holds_every_file_and_nothing_else(report):
    assert sorted(p.name for p in report.iterdir()) == sorted(REPORT_FILES)


def test_metrics_json_is_machine_readable(report):
    m = json.loads((report / "metrics.json").read_text())
    assert m["classes"] == list(NAMES) and m["sampling"] == "stratified"
    assert m["error_matrix"]["rows"] == "map"
    counts = np.array(m["error_matrix"]["counts"])
    assert counts.sum() == 75 and np.trace(counts) == 60
    assert m["scores"]["overall_accuracy"] == pytest.approx(0.8)
    assert set(m["scores"]["macro"]) == {"precision", "recall", "f1", "iou"}
    water = m["estimates"]["per_class"]["water"]
    assert water["mapped_px"] == 2700 and water["mapped_ha"] == pytest.approx(27.0)
    assert water["area_ha"]["low"] < water["area_ha"]["value"] < water["area_ha"]["high"]
    assert m["reference"]["outside_map"] == 0 and m["map"]["crs"] == "EPSG:32633"


def test_markdown_and_html_show_the_numbers_and_link_the_pngs(report):
    md = (report / "report.md").read_text()
    assert "| water | 20 | 5 | 0 | 25 |" in md             # map water: 5 called forest
    assert "overall accuracy (sample)**: 0.800" in md
    page = (report / "report.html").read_text()
    srcs = re.findall(r"<img src='([^']+)'", page)
    assert sorted(srcs) == sorted(n for n in REPORT_FILES if n.endswith(".png"))
    assert "http" not in page and "<script" not in page    # self-contained, offline
    assert "<td>water</td><td>20</td><td>5</td><td>0</td><td>25</td>" in page


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _distinct(img: np.ndarray) -> int:
    """Number of distinct RGB colours."""
    rgb = img.reshape(-1, 3).astype(np.int64)
    return len(np.unique(rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]))


@pytest.mark.parametrize("name", ["confusion_matrix.png", "f1.png", "areas.png",
                                  "quicklook.png"])
def test_pngs_are_plots_of_the_data(report, other_report, name):
    img = _pixels(report / name)
    assert img.shape[0] >= 200 and img.shape[1] >= 300
    assert _distinct(img) > 30                         # text, colour maps, not a flat image
    assert (img.reshape(-1, 3) < 245).any(axis=1).mean() > 0.03
    # other data give another picture (the quicklook shows the same map, so it stays)
    other = _pixels(other_report / name)
    same = other.shape == img.shape and bool((other == img).all())
    assert same == (name == "quicklook.png")


def test_heatmap_is_darkest_where_the_counts_are(tmp_path):
    """A perfect map: the row-share colour is darkest on the diagonal only."""
    map_tif, pts = _inputs(tmp_path, wrong_every=None)
    a = assess(map_tif, pts)
    write_report(a, tmp_path / "rep")
    img = _pixels(tmp_path / "rep" / "confusion_matrix.png").astype(int)
    img = img[:, :img.shape[1] // 2]                   # the counts panel
    dark = (img[..., 0] < 40) & (img[..., 2] > 90)    # the top of matplotlib's Blues
    rows, cols = np.nonzero(dark)
    box = dark[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = box.shape
    share = np.array([[box[i * h // 3:(i + 1) * h // 3, j * w // 3:(j + 1) * w // 3].mean()
                       for j in range(3)] for i in range(3)])
    assert (np.diag(share) > 0.8).all()                 # the three diagonal cells
    assert (share[~np.eye(3, dtype=bool)] < 0.05).all()  # and nothing else


def test_report_without_area_estimates_says_why(tmp_path):
    map_tif, pts = _inputs(tmp_path, wrong_every=5)
    import geopandas as gpd

    g = gpd.read_file(pts)
    g[g["reference"].notna() & (g.index >= 50)].to_file(tmp_path / "two.gpkg")  # no crop stratum
    evaluate(map_tif, tmp_path / "two.gpkg", tmp_path / "rep")
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["estimates"] is None
    assert any("'water', 'forest' have mapped pixels but no reference sample" in n
               for n in m["notes"])
    assert "no area estimates" in (tmp_path / "rep" / "report.html").read_text()


def test_html_renders_in_headless_chromium(report, tmp_path):
    chromium = need_program("chromium", "chromium-browser",
                            why="the HTML rendering check needs it")
    shot = tmp_path / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={shot}", "--window-size=1200,2000",
           (report / "report.html").resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    img = _pixels(shot)
    assert img.shape[:2] == (2000, 1200)
    flat = img.reshape(-1, 3).astype(int)
    assert (flat < 235).any(axis=1).mean() > 0.05              # text, tables, figures
    assert _distinct(img) > 200
    # the style sheet applied (table headers #e8f0f8) and the heatmap PNG loaded (dark blue)
    assert (np.abs(flat - [232, 240, 248]).sum(axis=1) <= 3).sum() > 500
    assert ((flat[:, 0] < 40) & (flat[:, 2] > 90)).sum() > 500
