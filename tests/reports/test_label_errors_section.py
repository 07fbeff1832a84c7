"""The "likely label errors" section (reports/label_errors_section.py): in the audit report when the audit read
predictions, absent without; suspects best score first with their type and class filters; pictures of the label
and the model's box side by side in their colours, bounded in number; hostile names escaped; and the training
report / `doctor diagnose` linking a class low on train and val to its suspects, with a count per class."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset_doctor.audit import run_audit
from dataset_doctor.audit.checks_predictions import label_suspects, read_audit_predictions, split_audit_predictions
from dataset_doctor.audit.label_errors import LabelErrorOptions
from dataset_doctor.dataset.index import build_index
from reports.audit_gallery import ImageLookup
from reports.audit_report import build_audit_report
from reports.diagnosis_report import diagnose_predictions
from reports.label_errors_section import label_errors_html, suspects_link
from tests.cli.test_audit_predictions import PREDICTIONS, VAL, write_files
from tests.reports.browser import open_in_chromium, requires_chromium
from tests.reports.diagnosis_inputs import HOSTILE, NAMES, write_predicted
from tests.reports.test_training_report import per_class_table

HOSTILE_CLASS = "<b id=x>pwn</b>"
HOSTILE_STEM = "a&<>\"'"  # every HTML-special character in the image (and label) file name
ANCHOR = "label-errors"


class Items(HTMLParser):
    """The filterable items of a label-errors block (pictures and table rows), in page order, and its options."""

    def __init__(self):
        super().__init__()
        self.items: list[dict[str, str]] = []
        self.options: dict[str, list[str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "suspect-item" in (attrs.get("class") or "").split():
            self.items.append({"tag": tag, **attrs})
        elif tag == "select":
            self._select = attrs["class"]
            self.options[self._select] = []
        elif tag == "option" and self._select:
            self.options[self._select].append(attrs["value"])

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def items_of(markup: str) -> Items:
    parser = Items()
    parser.feed(markup)
    return parser


def section(html: str, anchor: str) -> str:
    start = html.index(f'<section id="{anchor}">')
    return html[start:html.index("</section>", start)]


@pytest.fixture
def planted(make_dataset, tmp_path: Path):
    """The planted errors of tests/cli/test_audit_predictions.py (one of each type, and two unboxed objects), in
    an image with a hostile file name, with a hostile class name; the index and the audit with predictions."""
    val = dict(VAL)
    val[f"{HOSTILE_STEM}.jpg"] = val.pop("v0.jpg")
    predictions = dict(PREDICTIONS)
    predictions[f"{HOSTILE_STEM}.txt"] = predictions.pop("v0.txt")
    data_yaml = make_dataset({"train": {"t0.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": val}, names=["cat", HOSTILE_CLASS],
                             size=(160, 120))
    index = build_index(data_yaml, progress=False)
    read = read_audit_predictions(index, write_files(tmp_path / "predictions", predictions),
                                  LabelErrorOptions(confidence=0.3))
    return index, run_audit(index, predictions=read)


def test_the_section_lists_the_planted_suspects_best_score_first_with_filters(planted):
    index, result = planted
    html = build_audit_report(result, index).render()
    block = section(html, ANCHOR)
    found = items_of(block)
    ranked = result.label_suspects.sort_values("score", ascending=False)
    assert [item["data-check"] for item in found.items] == ranked["check"].tolist()
    scores = [float(item["data-score"]) for item in found.items]
    assert scores == sorted(scores, reverse=True) and len(scores) == 5
    assert sorted(item["data-check"] for item in found.items) == sorted(
        ["missing-box", "missing-box", "wrong-class", "mislocated-box", "spurious-box"])
    wrong = next(item for item in found.items if item["data-check"] == "wrong-class")
    assert wrong["data-classes"] == "0 1"  # labelled cat (0), the model says class 1
    assert found.options["suspect-check"] == ["", "missing-box", "wrong-class", "mislocated-box", "spurious-box"]
    assert found.options["suspect-class"] == ["", "0", "1"]
    escaped = "labels/val/a&amp;&lt;&gt;&quot;&#x27;.txt"
    for line in (2, 3, 4):  # file:line of each label suspect, escaped
        assert f"<code>{escaped}:{line}</code>" in block
    assert "change the class to 1" in block and "the model sees a" in block  # the fixes
    assert block.count("<img ") == 5 and "right: the model&#x27;s box" in block  # every picture, the legend
    # the findings section points the four checks at the section, filtered to the check
    assert f'href="{suspects_link(ANCHOR, check="wrong-class")}"' in section(html, "findings")


def test_the_pictures_show_the_label_left_in_red_and_the_models_box_right_in_blue(planted):
    index, result = planted
    block = section(build_audit_report(result, index).render(), ANCHOR)
    card = block[block.index('data-check="wrong-class"'):]
    data = re.search(r'src="data:image/jpeg;base64,([^"]+)"', card).group(1)
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR).astype(int)
    half = picture.shape[1] // 2
    blue, green, red = picture[..., 0], picture[..., 1], picture[..., 2]
    is_red = (red > 200) & (green < 60) & (blue < 60)
    is_blue = (blue > 200) & (green > 100) & (green < 180) & (red < 60)
    assert is_red[:, :half].sum() > 50 and is_red[:, half:].sum() < 10
    assert is_blue[:, half:].sum() > 50 and is_blue[:, :half].sum() < 10


def test_no_section_without_predictions(planted):
    index, _ = planted
    html = build_audit_report(run_audit(index), index).render()
    assert f'<section id="{ANCHOR}">' not in html and "suspect-item" not in html


def test_hostile_class_and_file_names_stay_escaped(planted):
    index, result = planted
    block = section(build_audit_report(result, index).render(), ANCHOR)
    assert HOSTILE_CLASS not in block and "<b id=" not in block and HOSTILE_STEM not in block
    assert "&lt;b id=x&gt;pwn&lt;/b&gt;" in block  # in the class select, the captions and the messages
    assert 'alt="wrong-class at labels/val/a&amp;&lt;&gt;&quot;&#x27;.txt:2"' in block


def test_the_pictures_are_bounded_and_the_rest_are_table_rows(planted):
    index, result = planted
    block = section(build_audit_report(result, index, suspect_pictures=2).render(), ANCHOR)
    found = items_of(block)
    assert block.count("<img ") == 2 and [item["tag"] for item in found.items] == ["figure"] * 2 + ["tr"] * 3
    assert "The best 2 suspects have a picture; the next 3 are rows of the table." in block
    shuffled = result.label_suspects.sample(frac=1.0, random_state=3)  # sorted whatever order it comes in
    markup = label_errors_html(shuffled, ImageLookup(index), result.classes, ANCHOR, pictures=0, max_rows=4)
    rows = items_of(markup).items
    assert "<img " not in markup and len(rows) == 4
    assert [row["data-check"] for row in rows] == result.label_suspects.sort_values(
        "score", ascending=False)["check"].head(4).tolist()
    assert "1 more are left out here" in markup


def test_a_class_low_on_train_and_val_links_to_its_suspects(make_dataset, tmp_path):
    data, train, val = write_predicted(make_dataset, tmp_path)
    outcome = diagnose_predictions(data, train, val, target=tmp_path / "p.html", search_dirs=[tmp_path])
    html = outcome.page.render()
    index = build_index(data, progress=False)
    suspects = label_suspects(index, index.usable_boxes(), split_audit_predictions(index, val, "val"))
    expected = [int(((suspects["class"] == k) | (suspects["suggested_class"] == k)).fillna(False).sum())
                for k in range(len(NAMES))]
    rows = per_class_table(html)
    assert [int(row["val label suspects"][0]) for row in rows] == expected
    hostile = NAMES.index(HOSTILE)  # the class diagnosed low on train and val
    assert outcome.document["per_class"][hostile]["diagnosis"] == "labels-or-capacity" and expected[hostile] > 0
    diagnosis = section(html, "class-diagnosis")
    links = re.findall(r'href="(#label-suspects[^"]*)"', diagnosis)
    assert links == [f"#label-suspects?class={hostile}"]  # only the class whose labels are suspect
    block = section(html, "label-suspects")
    assert str(hostile) in items_of(block).options["suspect-class"] and 'data-anchor="label-suspects"' in block


@requires_chromium
def test_the_section_renders_and_filters_in_chromium(planted, tmp_path):
    index, result = planted
    path = build_audit_report(result, index, suspect_pictures=3).write(tmp_path / "audit.html")
    rendered = open_in_chromium(path, tmp_path / "profile", fragment=f"{ANCHOR}?class=0&check=wrong-class")
    assert rendered.console == []
    assert 'id="x"' not in rendered.dom  # the hostile class name made no element
    block = section(rendered.dom, ANCHOR)
    visible = [item["data-check"] for item in items_of(block).items if "display: none" not in item.get("style", "")]
    assert visible == ["wrong-class"]  # the link's filter applied: 1 of 3 pictures + 2 rows
    assert "1 of 5 shown" in block


def test_a_suspect_in_an_undecodable_image_gets_a_tile_saying_why(make_dataset, tmp_path):
    data_yaml = make_dataset({"train": {"t.jpg": "0 0.5 0.5 0.2 0.2\n"},
                              "val": {"ok.jpg": "0 0.5 0.5 0.2 0.2\n", "bad.jpg": None}}, names=["cat"])
    (data_yaml.parent / "images" / "val" / "bad.jpg").write_bytes(b"not a jpeg at all")
    predictions = write_files(tmp_path / "predictions", {"ok.txt": "0 0.5 0.5 0.2 0.2 0.9\n",
                                                         "bad.txt": "0 0.5 0.5 0.2 0.2 0.9\n"})
    index = build_index(data_yaml, progress=False)
    result = run_audit(index, predictions=read_audit_predictions(index, predictions,
                                                                 LabelErrorOptions(confidence=0.3)))
    block = section(build_audit_report(result, index).render(), ANCHOR)
    assert [item["data-check"] for item in items_of(block).items] == ["missing-box"]
    data = re.search(r'src="data:image/jpeg;base64,([^"]+)"', block).group(1)
    tile = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
    assert tile.shape[:2] == (170, 344) and abs(float(tile.mean()) - 200) < 25  # the grey placeholder
