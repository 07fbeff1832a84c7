"""The shared page builder: one self-contained file, every user string escaped, plots that render."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from reports.html import Page, plot_text, thumbnail_figure
from reports.thumbnails import DrawnBox, draw_boxes, encode_jpeg
from tests.reports.browser import open_in_chromium, requires_chromium, screenshot

HOSTILE = '<b id=x>pwn</b></script><img src=x onerror="alert(1)">'


def hostile_page() -> Page:
    page = Page(f"report of {HOSTILE}", subtitle=HOSTILE)
    page.section(HOSTILE).paragraph(HOSTILE)
    page.table(pd.DataFrame({"class": [HOSTILE, "cat"], "instances": [3, 10], "ap": [0.5, float("nan")]}),
               filterable=True)
    page.figure(go.Figure(go.Bar(x=[plot_text(HOSTILE), "cat"], y=[3, 10]),
                          layout={"title": {"text": plot_text(HOSTILE)}}), caption=HOSTILE)
    image = draw_boxes(np.full((60, 80, 3), 255, np.uint8), [DrawnBox(0.5, 0.5, 0.5, 0.5, label=HOSTILE)])
    page.section("pictures").html(f'<div class="gallery">{thumbnail_figure(encode_jpeg(image), HOSTILE)}</div>')
    return page


def test_page_is_self_contained_with_plotly_embedded_once():
    text = hostile_page().render()
    assert text.count("Plotly.newPlot") == 1
    assert len(re.findall(r"<script[^>]*src=", text)) == 0  # nothing loaded from elsewhere
    assert "https://" not in text.split("<main>")[1]  # no CDN, no fonts, no links out in the body
    assert text.count("plotly.js v") >= 1


def test_user_strings_are_escaped_everywhere_in_the_markup():
    text = hostile_page().render()
    assert "<b id=x>" not in text and 'onerror="alert' not in text
    assert "&lt;b id=x&gt;pwn&lt;/b&gt;" in text


def test_table_cells_keep_numbers_sortable():
    page = Page("t")
    page.table(pd.DataFrame({"name": ["a"], "count": [1234], "share": [0.25]}))
    body = page.render()
    assert '<td class="num" data-value="1234">1,234</td>' in body
    assert '<td class="num" data-value="0.25">0.250</td>' in body


def test_write_is_atomic_and_returns_the_path(tmp_path):
    path = hostile_page().write(tmp_path / "r.html")
    assert path.exists() and [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_thumbnails_draw_boxes_where_they_are():
    image = np.zeros((100, 200, 3), np.uint8)
    drawn = draw_boxes(image, [DrawnBox(0.5, 0.5, 0.5, 0.4, colour=(0, 0, 255), thickness=1)])
    assert drawn[30, 55:145, 2].min() > 150 and drawn[70, 55:145, 2].min() > 150  # top and bottom edges (antialiased)
    assert drawn[50, 100].sum() == 0  # inside stays untouched
    assert cv2.imdecode(np.frombuffer(encode_jpeg(drawn), np.uint8), cv2.IMREAD_COLOR).shape == (100, 200, 3)


@requires_chromium
def test_hostile_page_renders_in_chromium_without_errors_or_injected_elements(tmp_path):
    path = hostile_page().write(tmp_path / "hostile.html")
    rendered = open_in_chromium(path, tmp_path / "profile")
    assert rendered.console == []
    assert 'id="x"' not in rendered.dom and "<b id=" not in rendered.dom  # the class name created no element
    assert rendered.dom.count('class="main-svg"') >= 2  # plotly drew the figure
    assert "pwn" in rendered.dom  # ... and the name is shown, as text
    assert screenshot(path, "html-builder-hostile", tmp_path / "profile2").stat().st_size > 0


def test_written_files_get_the_usual_permissions_not_the_private_temporary_ones(tmp_path):
    """The temporary file behind an atomic write is created 0600; the report must end up like any new file."""
    import os

    umask = os.umask(0o022)
    os.umask(umask)
    path = hostile_page().write(tmp_path / "r.html")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
