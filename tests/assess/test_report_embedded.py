"""report.html carries its figures: copied alone it still shows every plot (issue 16, item 5)."""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess

import numpy as np
import pytest
from _evaldata import T10, centre, write_class_map, write_points
from PIL import Image

from geomm.assess.evaluate import evaluate
from geomm.assess.report import _figure
from tests.conftest import need_program

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ("water", "forest", "crop")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A report on a three-class map scored against 75 points, one in five wrong."""
    tmp = tmp_path_factory.mktemp("embedded")
    classes = np.zeros((90, 90), np.uint8)
    classes[30:60] = 1
    classes[60:] = 2
    map_tif = write_class_map(tmp / "classes.tif", classes, NAMES)
    rng = np.random.default_rng(11)
    xy, ref = [], []
    for k in range(3):
        for i, (r, c) in enumerate(zip(rng.integers(30 * k, 30 * k + 30, 25),
                                       rng.integers(0, 90, 25), strict=True)):
            xy.append(centre(T10, int(r), int(c)))
            ref.append(NAMES[(k + 1) % 3] if i % 5 == 0 else NAMES[k])
    evaluate(map_tif, write_points(tmp / "p.gpkg", xy, ref), tmp / "rep")
    return tmp / "rep"


def _embedded(page: str) -> dict[str, bytes]:
    """Fallback file name -> the PNG embedded for it."""
    found = re.findall(r"<picture><source srcset='data:image/png;base64,([^']+)'>"
                       r"<img src='([^']+)'", page)
    return {name: base64.b64decode(html.unescape(data)) for data, name in found}


def test_every_figure_is_embedded_byte_for_byte(report):
    page = (report / "report.html").read_text()
    pngs = _embedded(page)
    assert sorted(pngs) == sorted(p.name for p in report.glob("*.png"))
    for name, data in pngs.items():
        assert data.startswith(PNG_MAGIC) and data == (report / name).read_bytes(), name
    # offline: no URL scheme anywhere in the page, the embedded data included
    assert "http" not in page.lower() and "<script" not in page


def test_http_in_the_base64_text_is_an_entity_of_the_same_bytes():
    png = PNG_MAGIC + b"\0" + base64.b64decode("httpHTTPhtTp")  # 9 bytes: the groups align
    assert "httpHTTPhtTp" in base64.b64encode(png).decode()
    fig = _figure("f.png", "F", png)
    assert "http" not in fig.lower()
    assert _embedded(fig) == {"f.png": png}


def test_without_the_png_the_figure_links_the_file():
    assert _figure("f.png", "F & G", None) == (
        "<figure><img src='f.png' alt='F &amp; G'><figcaption>F &amp; G</figcaption></figure>")


def test_html_copied_alone_shows_its_figures_in_headless_chromium(report, tmp_path):
    chromium = need_program("chromium", "chromium-browser",
                            why="the HTML rendering check needs it")
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(report / "report.html", alone / "report.html")  # no PNG beside it
    shot = tmp_path / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={shot}", "--window-size=1200,4000",
           (alone / "report.html").resolve().as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    flat = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    # the heatmap (dark blue of matplotlib's Blues) and the class-coloured bars are drawn
    assert ((flat[:, 0] < 40) & (flat[:, 2] > 90)).sum() > 500
    quick = np.asarray(Image.open(report / "quicklook.png").convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(quick, axis=0, return_counts=True)
    top = [tuple(c) for c, n in zip(colours, counts, strict=True)
           if n > 2000 and tuple(c) != (255, 255, 255)]
    assert top, "the quicklook has large class areas"
    for c in top:  # every large class area of the quicklook is on the screen
        assert (np.abs(flat - np.array(c)).sum(axis=1) <= 6).sum() > 500, c
