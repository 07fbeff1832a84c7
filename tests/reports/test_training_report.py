"""The training report on a real (tiny) run: it is written, renders in Chromium without errors, shows train and
val AP for every class, escapes hostile class names, links the audit report, and copes with unfinished runs."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from dataset_doctor.cli import app
from dataset_doctor.dataset.index import build_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.sample.generate import write_sample_dataset
from dataset_doctor.sample.spec import SampleSpec
from reports.audit_link import (
    dataset_report_name,
    default_audit_candidates,
    find_audit_report,
    relative_link,
    scale_shift_notes,
)
from reports.training_report import build_training_report, class_numbers, run_facts
from reports.training_run import load_training_run
from reports.val_examples import score_val_images
from tests.reports.browser import open_in_chromium, requires_chromium, screenshot
from trainer import run_dir as files
from trainer.config import TrainConfig, TrainSettings
from trainer.data.config import AugmentConfig, DataConfig
from trainer.loop import train

HOSTILE = "<b id=x>pwn</b>"
TRICKY = 'two, "quoted" & <i>'  # a comma and quotes: CSV cells and HTML attributes both need care


@pytest.fixture(scope="module")
def hostile_dataset(tmp_path_factory) -> Path:
    """The smallest sample dataset (50 train / 20 val, 10 classes), two classes renamed to hostile strings."""
    data = write_sample_dataset(tmp_path_factory.mktemp("tiny") / "digits", seed=1,
                                spec=SampleSpec(train_images=50, val_images=20))
    config = yaml.safe_load(data.read_text())
    config["names"][1], config["names"][2] = HOSTILE, TRICKY
    data.write_text(yaml.safe_dump(config, sort_keys=False))
    return data


@pytest.fixture(scope="module")
def tiny_run(hostile_dataset, tmp_path_factory) -> Path:
    """Two epochs at 64 px, one torch thread (on a shared 2-core machine two threads took 15x longer)."""
    config = TrainConfig(data=str(hostile_dataset), epochs=2, batch=8, project=str(tmp_path_factory.mktemp("runs")),
                         name="exp", save_batches=1, seed=0, threads=1)
    threads = torch.get_num_threads()
    try:
        return train(TrainSettings(config, DataConfig(imgsz=64, workers=0), AugmentConfig()), progress=False)
    finally:
        torch.set_num_threads(threads)  # process-wide: leave it as other test modules expect it


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory) -> Path:
    return build_training_report(tiny_run, search_dirs=[tmp_path_factory.mktemp("nowhere")])


class TableReader(HTMLParser):
    """Rows of every <table> as lists of (text, data-value) cells; header rows included."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[tuple[str, str | None]]]] = []
        self._cell: list[str] | None = None
        self._value: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._value = [], dict(attrs).get("data-value")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(("".join(self._cell).strip(), self._value))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def per_class_table(markup: str) -> list[dict[str, tuple[str, str | None]]]:
    reader = TableReader()
    reader.feed(markup)
    for table in reader.tables:
        header = [text for text, _ in table[0]]
        if header[:4] == ["class", "diagnosis", "train AP50", "val AP50"]:
            return [dict(zip(header, row)) for row in table[1:]]
    raise AssertionError("no per-class table in the page")


def figure_segments(dom: str) -> list[str]:
    """The markup of each plotly figure div, up to the next one."""
    starts = [match.start() for match in re.finditer(r'<div id="plot-\d+"', dom)]
    return [dom[start:end] for start, end in zip(starts, [*starts[1:], len(dom)])]


# --- the report of a real run --------------------------------------------------------------------------------------

def test_report_is_written_atomically_self_contained_and_small(report, tiny_run):
    assert report == tiny_run / files.REPORT_FILE and report.is_file()
    assert not list(tiny_run.glob(".report.html.*"))  # no temporary left behind
    text = report.read_text(encoding="utf-8")
    assert len(text.encode()) < 10_000_000
    assert not re.search(r"<(script|img|link)[^>]+(src|href)=\"https?:", text)  # nothing fetched from the network
    for anchor in ("verdict", "overview", "curves", "per-class", "class-diagnosis", "confusion", "pr-curves",
                   "val-images", "label-suspects", "batches"):
        assert f'<section id="{anchor}">' in text, anchor
    assert text.count("Plotly.newPlot") == 5  # losses, mAP, per-class bars, confusion, PR curves
    assert '<div class="verdict error">Not usable yet' in text  # two epochs at 64 px detect nothing yet


def assert_table_matches_per_class_csv(rows: list[dict], run: Path) -> None:
    """Every class in order, with its train and val AP50 / AP50-95 as per_class.csv has them (empty = None)."""
    csv_rows = files.read_per_class(run)
    names = list(build_index(files.read_args(run)["resolved"]["dataset"], progress=False).names)
    assert [row["class"][0] for row in rows] == names  # every class, in order, names shown as text
    for row, name in zip(rows, names):
        for split, column, key in (("train", "train AP50", "ap50"), ("val", "val AP50", "ap50"),
                                   ("train", "train AP50-95", "ap50_95"), ("val", "val AP50-95", "ap50_95")):
            expected = next(r for r in csv_rows if r["split"] == split and r["class"] == name)[key]
            text, value = row[column]
            if expected is None:
                assert text == "" and value is None, (name, column)  # not measurable: empty, not 0
            else:
                assert float(value) == pytest.approx(expected, abs=1e-6) and text == f"{expected:.3f}"
        assert row["diagnosis"][0]
    assert any(r["ap50"] is not None for r in csv_rows if r["split"] == "train")
    assert any(r["ap50"] is not None for r in csv_rows if r["split"] == "val")


def test_report_holds_train_and_val_ap_of_every_class_as_in_per_class_csv(report, tiny_run):
    rows = per_class_table(report.read_text(encoding="utf-8"))
    assert_table_matches_per_class_csv(rows, tiny_run)
    val_rows = [r for r in files.read_per_class(tiny_run) if r["split"] == "val"]
    no_val = [r["class"] for r in val_rows if r["instances"] == 0]
    assert no_val  # the sample's rarest digits have no val box in 20 images
    for name in no_val:
        assert next(row for row in rows if row["class"][0] == name)["diagnosis"][0] == "val AP not measurable"


def test_report_content_follows_the_run(report, tiny_run):
    text = report.read_text(encoding="utf-8")
    weights = json.loads((tiny_run / files.CLASS_WEIGHTS_FILE).read_text())
    assert "inverse (auto" in text and "uniform: every image once per epoch" in text
    assert "not a rebalanced copy" in text and "2 of 2" in text
    assert "short training for the class count" in text  # 2 epochs of 7 steps for 10 classes
    assert "doctor train " in text and "--epochs" in text
    assert "No audit report of this dataset was found" in text
    assert text.count('src="data:image/jpeg;base64,') >= 2  # a training batch and worst val images
    rows = per_class_table(text)
    assert [float(row["class weight"][1]) for row in rows] == pytest.approx(weights["weights"])
    assert [int(row["train instances"][1]) for row in rows] == weights["instances"]


def test_hostile_class_names_are_escaped_in_the_markup(report):
    text = report.read_text(encoding="utf-8")
    assert HOSTILE not in text and "<i>" not in text
    assert "&lt;b id=x&gt;pwn&lt;/b&gt;" in text and "two, &quot;quoted&quot; &amp; &lt;i&gt;" in text


@requires_chromium
def test_report_renders_in_chromium_without_errors(report, tmp_path):
    rendered = open_in_chromium(report, tmp_path / "profile")
    assert rendered.console == []
    segments = figure_segments(rendered.dom)
    assert len(segments) == 5 and all('class="main-svg"' in segment for segment in segments)  # every figure drew
    assert 'id="x"' not in rendered.dom and "<b id=" not in rendered.dom  # the hostile name made no element
    assert "pwn" in rendered.dom
    assert_table_matches_per_class_csv(per_class_table(rendered.dom), report.parent)  # as the browser holds it
    shot = screenshot(report, "training-report-top", tmp_path / "profile2")
    assert shot.is_file() and shot.stat().st_size > 10_000


# --- the pieces it is built from -----------------------------------------------------------------------------------

def test_numbers_come_from_the_run_directory_and_the_dataset(tiny_run):
    run = load_training_run(tiny_run)
    index = build_index(run.dataset, progress=False)
    classes = class_numbers(run, index)
    assert [c.name for c in classes] == list(index.names)
    assert [c.train_instances for c in classes] == index.instances("train").tolist()
    assert [c.val_instances for c in classes] == index.instances("val").tolist()
    facts = run_facts(run, index, None)
    loader_steps = -(-run.resolved["train_images"] // 8)
    assert facts.iterations_per_epoch == run.resolved["iterations_per_epoch"] == loader_steps
    assert facts.iterations == 2 * loader_steps and facts.num_classes == 10
    assert ("imgsz", "64") in facts.train_options and facts.class_weights_method == "inverse"
    assert facts.copy_paste == run.augment_settings["copy_paste"] == 0.5  # the default: not repeated in commands
    assert not any(key == "copy-paste" for key, _ in facts.train_options)
    run.args["augment"] = {**run.augment_settings, "copy_paste": 0.0}  # a run that turned pasting off keeps it off
    assert ("copy-paste", "0") in run_facts(run, index, None).train_options
    del run.args["augment"]["copy_paste"]  # a run from before the option: it did not paste
    assert run_facts(run, index, None).copy_paste == 0.0
    scaled = next(c for c in classes if c.name == TRICKY)  # the sample draws this class smaller in val
    assert scaled.size_ratio is None or scaled.size_ratio < 0.8


def test_worst_val_images_count_misses_false_alarms_and_wrong_classes(make_dataset, tmp_path):
    data = make_dataset({"train": {"t.jpg": "0 0.5 0.5 0.2 0.2\n"},
                         "val": {"a.jpg": "0 0.25 0.25 0.2 0.2\n1 0.75 0.75 0.2 0.2\n",
                                 "b.jpg": "0 0.5 0.5 0.3 0.3\n", "c.jpg": "1 0.5 0.5 0.4 0.4\n"}},
                        names=["cat", "dog"], size=(200, 100))
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    (predictions / "a.txt").write_text("0 0.25 0.25 0.2 0.2 0.9\n"  # right
                                       "0 0.75 0.75 0.2 0.2 0.8\n"  # the dog called a cat
                                       "1 0.1 0.9 0.1 0.1 0.7\n"  # a false alarm
                                       "1 0.5 0.5 0.1 0.1 0.1\n")  # below 0.25: ignored
    (predictions / "b.txt").write_text("")  # the cat missed
    (predictions / "c.txt").write_text("1 0.5 0.5 0.4 0.4 0.95\n")  # perfect
    scored = score_val_images(build_index(data, progress=False), predictions)
    assert [s.image for s in scored] == ["images/val/a.jpg", "images/val/b.jpg", "images/val/c.jpg"]
    a, b, c = scored
    assert (a.missed, a.false_alarms, a.wrong_class, a.score) == (0, 1, 1, 2)
    assert (b.missed, b.false_alarms, b.wrong_class, b.score) == (1, 0, 0, 1)
    assert c.score == 0 and len(a.detections) == 3
    assert a.caption() == "images/val/a.jpg: 0 missed, 1 false alarms, 1 wrong class (2 boxes)"


def test_audit_report_lookup_and_its_scale_shift_findings(tmp_path):
    dataset = tmp_path / "digits" / "data.yaml"
    assert dataset_report_name(dataset) == "digits"
    assert dataset_report_name(tmp_path / "coco" / "coco128.yaml") == "coco-coco128"
    candidates = default_audit_candidates([dataset], [tmp_path / "work"])
    assert candidates[0] == tmp_path / "work" / "doctor_reports" / "digits.html"
    assert find_audit_report(candidates) is None
    report = candidates[1]
    report.parent.mkdir(parents=True)
    report.write_text("<html></html>")
    assert find_audit_report(candidates) == report
    findings = [{"check": "scale-shift", "message": "class 'two': median box side in val is 0.40x train's"},
                {"check": "scale-shift", "message": "class 'twenty': median box side in val is 2.0x train's"},
                {"check": "few-instances", "message": "class 'two': 3 train instances"}]
    (report.with_suffix(".json")).write_text(json.dumps({"findings": findings}))
    notes = scale_shift_notes(report.with_suffix(".json"), ["two", "twenty", "one"])
    assert notes == {"two": (findings[0]["message"],), "twenty": (findings[1]["message"],)}
    (tmp_path / "broken.json").write_text("{not json")
    assert scale_shift_notes(tmp_path / "broken.json", ["two"]) == {}
    assert relative_link(report, tmp_path / "runs" / "exp" / "report.html") == \
        "../../work/doctor_reports/digits-audit.html"


def copy_run(run: Path, target: Path) -> Path:
    return Path(shutil.copytree(run, target / run.name, ignore=shutil.ignore_patterns("weights")))


def test_report_links_the_audit_report_and_says_when_the_train_set_is_a_rebalanced_copy(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "runs")
    dataset = Path(files.read_args(run)["resolved"]["dataset"])
    audit = tmp_path / "doctor_reports" / f"{dataset_report_name(dataset)}.html"
    audit.parent.mkdir()
    audit.write_text("<html>audit</html>")
    record = dataset.parent / "rebalance.json"
    record.write_text(json.dumps({"source": "/data/original/data.yaml", "target": 300}))
    try:
        text = build_training_report(run, search_dirs=[tmp_path]).read_text(encoding="utf-8")
    finally:
        record.unlink()
    assert '<a href="../../doctor_reports/digits.html">' in text
    assert "a rebalanced copy (doctor rebalance) of /data/original/data.yaml, target 300" in text
    assert "rebalancing mechanisms at once" in text  # the copy and the loss weights compound


def test_an_audit_json_given_explicitly_feeds_the_diagnosis_and_links_its_page(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path / "runs")
    page, audit_json = tmp_path / "audit.html", tmp_path / "audit.json"
    page.write_text("<html>audit</html>")
    message = f"class '{TRICKY}': median box side in val is 0.40x train's"
    audit_json.write_text(json.dumps({"findings": [{"check": "scale-shift", "message": message}]}))
    text = build_training_report(run, audit_report=audit_json, search_dirs=[]).read_text(encoding="utf-8")
    assert '<a href="../../audit.html">' in text  # the page, not its JSON
    loaded = load_training_run(run)
    classes = class_numbers(loaded, None, scale_shift_notes(audit_json, loaded.classes))
    assert [c.audit_notes for c in classes if c.audit_notes] == [(message,)]


def test_an_unfinished_run_still_gets_a_report_that_says_so(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    for name in (files.PER_CLASS_FILE, files.CONFUSION_FILE, files.PR_CURVES_FILE):
        (run / name).unlink()
    shutil.rmtree(run / files.PREDICTIONS_DIR)
    text = build_training_report(run, search_dirs=[tmp_path]).read_text(encoding="utf-8")
    assert "no per-class results: the run has not finished" in text
    assert "predictions/val is missing" in text and "confusion_matrix.csv is missing" in text
    assert text.count("Plotly.newPlot") == 2  # the curves are there


def test_a_moved_dataset_leaves_out_the_images_and_says_why(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    args = files.read_args(run)
    args["resolved"]["dataset"] = str(tmp_path / "gone" / "data.yaml")
    files.write_args(run, args)
    text = build_training_report(run, search_dirs=[tmp_path]).read_text(encoding="utf-8")
    assert "Val images cannot be shown: the dataset cannot be read any more" in text
    assert len(per_class_table(text)) == 10  # everything from the run directory itself is still there


def test_doctor_report_cli(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    (run / files.REPORT_FILE).unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / files.REPORT_FILE).is_file() and "training report written to" in result.output
    not_a_run = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert not_a_run.exit_code == 2 and "not a run directory" in not_a_run.output
    missing = CliRunner().invoke(app, ["report", str(run), "--audit-report", str(tmp_path / "nope.html")])
    assert missing.exit_code == 2 and "audit report not found" in missing.output
    assert "Traceback" not in not_a_run.output + missing.output


def test_a_broken_run_file_is_a_one_line_error(tiny_run, tmp_path):
    run = copy_run(tiny_run, tmp_path)
    (run / files.CONFUSION_FILE).write_text("predicted \\ true,a,b\na,1,x\nb,0,1\n")
    with pytest.raises(DoctorError, match="non-integer"):
        build_training_report(run)
