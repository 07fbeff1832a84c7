"""The classification reports: `doctor report RUN` on a classifier run, and both classification pages (training
report, audit report) opened in headless Chromium: no console message, every figure drawn, every class shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dataset_doctor.cli import app
from dataset_doctor.sample.spec import CLASS_NAMES
from tests.reports.browser import open_in_chromium, requires_chromium

runner = CliRunner()


@pytest.fixture(scope="module")
def classify_run(classify_sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of the n classifier on the classification sample, its report.html removed (rebuilt below)."""
    project = tmp_path_factory.mktemp("classify-runs")
    result = runner.invoke(app, ["train", str(classify_sample_root), "--epochs", "1", "--imgsz", "32", "--batch",
                                 "32", "--project", str(project), "--device", "cpu", "--workers", "0"])
    assert result.exit_code == 0, result.output
    run = project / "exp"
    (run / "report.html").unlink()
    return run


def test_report_command_rebuilds_the_classifier_report(classify_run: Path) -> None:
    result = runner.invoke(app, ["report", str(classify_run)])
    assert result.exit_code == 0, result.output
    assert "classifier training report written" in result.output
    page = (classify_run / "report.html").read_text(encoding="utf-8")
    assert "Classifier training" in page and "Most confident wrong val predictions" in page
    text = re.sub(r"data:[^\"')\s]+", "", page)  # thumbnails' base64 can spell anything
    assert "mAP" not in text  # not the detection report


def test_report_command_on_a_classifier_run_without_an_epoch_is_one_line(tmp_path: Path) -> None:
    run = tmp_path / "exp"
    run.mkdir()
    (run / "args.yaml").write_text(yaml.safe_dump({"data": "x", "model": "n", "label_smoothing": 0.1}))
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 2 and "classifier run without a finished epoch" in result.output
    assert len(result.output.strip().splitlines()) == 1


def _assert_renders_every_figure_and_class(page: Path, profile: Path) -> str:
    source = page.read_text(encoding="utf-8")
    figures = re.findall(r'<div id="(plot-\d+)" class="plotly-graph-div"', source)
    assert figures
    rendered = open_in_chromium(page, profile)
    assert rendered.console == []
    starts = [(match.start(), match.group(1)) for match in re.finditer(r'<div id="(plot-\d+)"', rendered.dom)]
    assert [name for _, name in starts] == figures
    ends = [start for start, _ in starts[1:]] + [len(rendered.dom)]
    for (start, name), end in zip(starts, ends):
        assert 'class="main-svg"' in rendered.dom[start:end], f"{name} did not render"
    text = re.sub(r"<[^>]+>", " ", rendered.dom)
    missing = [name for name in CLASS_NAMES if not re.search(rf"\b{name}\b", text)]
    assert missing == [], f"classes not shown: {missing}"
    return rendered.dom


@requires_chromium
def test_classifier_training_report_renders_in_chromium(classify_run: Path, tmp_path: Path) -> None:
    runner.invoke(app, ["report", str(classify_run)])
    dom = _assert_renders_every_figure_and_class(classify_run / "report.html", tmp_path / "profile")
    assert "Accuracy per class" in dom and "data:image/jpeg;base64," in dom  # thumbnails of val images


@requires_chromium
def test_classification_audit_report_renders_in_chromium(classify_sample_root: Path, tmp_path: Path) -> None:
    page = tmp_path / "audit.html"
    result = runner.invoke(app, ["audit", str(classify_sample_root), "--html", str(page)])
    assert result.exit_code == 1, result.output  # the planted corrupt JPEG is an error
    dom = _assert_renders_every_figure_and_class(page, tmp_path / "profile")
    assert "Image sizes" in dom and "three_leak.jpg" in dom
