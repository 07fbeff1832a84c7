"""`doctor diagnose`'s page and JSON from hand-made predictions with a known outcome per class: one class fine,
one high on train and low on val (overfitting), one low on both (labels or capacity). No training."""

from __future__ import annotations

import json
import re

import pytest

from reports.diagnosis_report import diagnose_predictions
from tests.reports.browser import open_in_chromium, requires_chromium
from tests.reports.diagnosis_inputs import HOSTILE, IMAGES, NAMES, write_predicted
from tests.reports.test_training_report import figure_segments, per_class_table


@pytest.fixture
def predicted(make_dataset, tmp_path):
    return write_predicted(make_dataset, tmp_path)


def test_each_class_gets_its_diagnosis_in_the_page_and_the_json(predicted, tmp_path):
    data, train, val = predicted
    outcome = diagnose_predictions(data, train, val, target=tmp_path / "out.html", search_dirs=[tmp_path])
    document = outcome.document
    by_class = {entry["class"]: entry for entry in document["per_class"]}
    assert [entry["class"] for entry in document["per_class"]] == NAMES
    assert by_class["steady"]["diagnosis"] == "fine"
    assert by_class["memorised"]["diagnosis"] == "overfitting"
    assert by_class[HOSTILE]["diagnosis"] == "labels-or-capacity"
    assert by_class["steady"]["train"]["ap50"] == pytest.approx(1.0)
    assert by_class["memorised"]["train"]["ap50"] == pytest.approx(1.0)
    assert by_class["memorised"]["val"]["ap50"] == pytest.approx(0.0)
    assert by_class[HOSTILE]["train"]["ap50"] < 0.5 and by_class[HOSTILE]["val"]["ap50"] < 0.5
    assert by_class["steady"]["val"]["instances"] == IMAGES and set(by_class["steady"]["val"]) == {
        "instances", "precision", "recall", "ap50", "ap50_95"}
    assert document["train"]["images"] == IMAGES and document["val"]["images"] == IMAGES
    assert set(document["train"]) == {"map50", "map50_95", "images"}
    assert document["verdict"].startswith("Needs work") and all(e["message"] for e in document["per_class"])
    json.dumps(document)  # serialisable as it is

    path = outcome.page.write(outcome.target)
    text = path.read_text(encoding="utf-8")
    rows = {row["class"][0]: row["diagnosis"][0] for row in per_class_table(text)}
    assert rows == {"steady": "fine", "memorised": "train high, val low", HOSTILE: "train and val low"}
    for section in ("verdict", "overview", "per-class", "class-diagnosis", "confusion", "pr-curves", "val-images",
                    "label-suspects"):
        assert f'<section id="{section}">' in text, section
    assert '<section id="batches">' not in text  # a run-directory section, not for predictions
    assert "doctor train" not in text  # another trainer: no doctor train command is suggested
    assert "missing-box" in text  # the model-assisted audit flags the memorised class's unlabelled val boxes
    assert "No results.csv given" in text


def test_a_subset_of_train_predictions_is_evaluated_as_the_images_present(predicted, tmp_path):
    data, train, val = predicted
    for path in sorted(train.glob("*.txt"))[: IMAGES // 2]:
        path.unlink()
    outcome = diagnose_predictions(data, train, val, target=tmp_path / "out.html", search_dirs=[tmp_path])
    assert outcome.document["train"]["images"] == IMAGES // 2
    assert outcome.document["per_class"][0]["train"]["instances"] == IMAGES // 2
    assert f"{IMAGES // 2} of {IMAGES}" in outcome.page.render()


def test_the_dataset_audit_report_is_linked_when_found(predicted, tmp_path):
    data, train, val = predicted
    reports = tmp_path / "doctor_reports"
    reports.mkdir()
    (reports / "data-audit.html").write_text("<html></html>")
    outcome = diagnose_predictions(data, train, val, target=tmp_path / "page.html", search_dirs=[tmp_path])
    assert 'href="doctor_reports/data-audit.html"' in outcome.page.render()


def test_ultralytics_results_give_the_val_map_curve(predicted, tmp_path):
    data, train, val = predicted
    results = tmp_path / "results.csv"
    results.write_text("                  epoch,      train/box_loss,      train/cls_loss,      train/dfl_loss,"
                       "   metrics/precision(B),      metrics/recall(B),       metrics/mAP50(B),    "
                       "metrics/mAP50-95(B)\n"
                       "1, 1.5, 2.0, 1.2, 0.2, 0.1, 0.15, 0.08\n2, 1.3, 1.7, 1.1, 0.4, 0.3, 0.35, 0.2\n")
    outcome = diagnose_predictions(data, train, val, results=results, target=tmp_path / "p.html",
                                   search_dirs=[tmp_path])
    text = outcome.page.render()
    assert "Val mAP per epoch as the trainer logged it" in text and "Training losses per epoch" in text
    assert "ultralytics" in text
    unknown = tmp_path / "other.csv"
    unknown.write_text("step,accuracy\n1,0.5\n")
    skipped = diagnose_predictions(data, train, val, results=unknown, target=tmp_path / "p.html",
                                   search_dirs=[tmp_path])
    assert any("layout is not recognised" in w for w in skipped.warnings)
    assert "layout is not recognised" in skipped.page.render()


def test_hostile_class_names_stay_escaped(predicted, tmp_path):
    data, train, val = predicted
    text = diagnose_predictions(data, train, val, target=tmp_path / "p.html", search_dirs=[tmp_path]).page.render()
    assert HOSTILE not in text and "&lt;img src=x onerror=" in text


@requires_chromium
def test_the_page_renders_in_chromium_and_the_hostile_name_makes_no_element(predicted, tmp_path):
    data, train, val = predicted
    outcome = diagnose_predictions(data, train, val, target=tmp_path / "p.html", search_dirs=[tmp_path])
    rendered = open_in_chromium(outcome.page.write(outcome.target), tmp_path / "profile")
    assert rendered.console == []
    segments = figure_segments(rendered.dom)
    assert len(segments) == 3 and all('class="main-svg"' in segment for segment in segments)  # bars, confusion, PR
    made = re.findall(r'<img[^>]*src="x"', rendered.dom)
    assert made == []  # the hostile name made no element
    assert '&lt;img src=x onerror="document.title=1"&gt;' in rendered.dom  # it is shown as text
    assert {row["class"][0] for row in per_class_table(rendered.dom)} == set(NAMES)
