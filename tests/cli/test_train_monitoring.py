"""Watching `doctor train`: TensorBoard event files that read back as results.csv, and a report.html that is
rewritten after every evaluation with a progress banner and a refresh, dropped by the final write."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

import reports.training_report as training_report
from dataset_doctor.cli import app
from dataset_doctor.sample.generate import write_sample_dataset
from dataset_doctor.sample.spec import SampleSpec
from tests.reports.browser import open_in_chromium, requires_chromium
from trainer import run_dir as files

pytest.importorskip("tensorboard", reason="the monitor extra (tensorboard) is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

runner = CliRunner()
VOID = {"meta", "link", "br", "img", "input", "hr", "col", "source", "area", "base", "wbr", "embed", "track", "param"}


class _Balance(HTMLParser):
    """Fails on a closing tag that closes nothing open: what a page cut off or spliced badly shows."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert tag in self.open, f"</{tag}> closes nothing"
        while self.open.pop() != tag:
            pass


def assert_whole_html(text: str) -> None:
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    parser = _Balance()
    parser.feed(text)
    parser.close()
    assert parser.open == [], parser.open[-5:]


@pytest.fixture(scope="module")
def monitored_run(tmp_path_factory) -> tuple[Path, list[str], str]:
    """A 2-epoch CLI run; the live report's text each time it was written, and the command's output."""
    root = tmp_path_factory.mktemp("monitor")
    data = write_sample_dataset(root / "digits", seed=1, spec=SampleSpec(
        train_images=16, val_images=8, min_side=96, max_side=160, max_object_px=60, inject_defects=False))
    written: list[str] = []
    real = training_report.write_live_report

    def capturing(run_dir, progress, console=None):
        path = real(run_dir, progress, console)
        written.append(path.read_text(encoding="utf-8") if path is not None else "")
        return path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training_report, "write_live_report", capturing)
        result = runner.invoke(app, ["train", str(data), "--epochs", "2", "--batch", "8", "--imgsz", "64",
                                     "--workers", "0", "--device", "cpu", "--project", str(root / "runs"),
                                     "--threads", "1"])
    assert result.exit_code == 0, result.output
    run_dir = Path(re.search(r"results in (\S+)", result.output.replace("\n", "")).group(1))
    return run_dir, written, result.output


def test_report_path_is_printed_at_the_start(monitored_run) -> None:
    run_dir, _, output = monitored_run
    flat = output.replace("\n", "")
    assert "live report" in flat and str(run_dir / "report.html") in flat
    assert flat.index("live report") < flat.index("val mAP50")  # before the first evaluation


def test_live_report_has_banner_and_refresh_mid_run_and_final_drops_them(monitored_run, tmp_path) -> None:
    run_dir, written, _ = monitored_run
    assert len(written) == 2  # one per evaluation (2 epochs, eval_every 1)
    first = written[0]
    assert_whole_html(first)
    assert "training in progress" in first and "epoch 1 of 2" in first and "ETA" in first
    assert '<meta http-equiv="refresh"' in first
    assert "epoch 2 of 2" in written[1]
    final = (run_dir / "report.html").read_text(encoding="utf-8")
    assert_whole_html(final)
    assert "training in progress" not in final and 'http-equiv="refresh"' not in final


@requires_chromium
def test_mid_run_report_renders_in_chromium(monitored_run, tmp_path) -> None:
    _, written, _ = monitored_run
    page = tmp_path / "live.html"
    page.write_text(written[0], encoding="utf-8")
    rendered = open_in_chromium(page, tmp_path / "profile", budget_ms=5000)
    assert rendered.console == []
    assert "training in progress" in rendered.dom and 'class="main-svg"' in rendered.dom


def test_tensorboard_scalars_match_results_csv(monitored_run) -> None:
    run_dir, _, _ = monitored_run
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    rows = files.read_results(run_dir)
    assert len(rows) == 2
    for group, column in [("train", "box_loss"), ("train", "cls_loss"), ("train", "dfl_loss"), ("train", "lr"),
                          ("train", "images_per_s"), ("metrics", "val_map50"), ("metrics", "val_map50_95"),
                          ("metrics", "train_map50"), ("metrics", "train_map50_95")]:
        scalars = events.Scalars(f"{group}/{column}")
        assert [s.step for s in scalars] == [row["epoch"] for row in rows], column
        for scalar, row in zip(scalars, rows):
            assert scalar.value == pytest.approx(row[column], rel=1e-5, abs=1e-6), column
    per_class = [tag for tag in tags if tag.startswith("val_ap50/")]
    assert per_class and all(len(events.Scalars(tag)) == 2 for tag in per_class)
    assert any(tag.startswith("train_batches/") for tag in events.Tags()["images"])
    assert "class_weights" in "".join(events.Tags().get("tensors", []))


def test_tensorboard_asked_for_but_missing_is_one_line(tmp_path, monkeypatch) -> None:
    import trainer.monitor as monitor

    monkeypatch.setattr(monitor, "tensorboard_available", lambda: False)
    result = runner.invoke(app, ["train", str(tmp_path / "data.yaml"), "--tensorboard", "--epochs", "1"])
    assert result.exit_code == 2 and "needs the tensorboard package" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
