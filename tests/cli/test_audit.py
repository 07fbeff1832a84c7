"""`doctor audit` on the command line: exit codes, --fail-on, --ignore, --json, the summary, and read-only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataset_doctor.cli import app
from tests.dataset_doctor.audit_helpers import NAMES, base_splits, grid_label

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["audit", *map(str, args)])


@pytest.fixture
def clean_yaml(make_dataset) -> Path:
    return make_dataset(base_splits(), names=NAMES)


@pytest.fixture
def warning_yaml(make_dataset) -> Path:
    splits = base_splits()
    splits["train"]["unlabelled.jpg"] = None
    return make_dataset(splits, names=NAMES)


@pytest.fixture
def error_yaml(make_dataset) -> Path:
    splits = base_splits()
    splits["train"]["t001.jpg"] = grid_label() + "0 0.5 0.5 0.1\n"
    return make_dataset(splits, names=NAMES)


def test_clean_dataset_exits_0_with_a_green_verdict(clean_yaml):
    result = run(clean_yaml)
    assert result.exit_code == 0, result.output
    assert "0 errors, 0 warnings" in result.output and "ready to train" in result.output
    assert "cat" in result.output and "dog" in result.output  # the class tables


def test_errors_exit_1_and_show_file_and_line(error_yaml):
    result = run(error_yaml)
    assert result.exit_code == 1
    assert "malformed-line" in result.output
    assert "labels/train/t001.txt:11" in result.output
    assert "doctor fix" in result.output


def test_warnings_exit_0_unless_fail_on_warning(warning_yaml):
    assert run(warning_yaml).exit_code == 0
    assert run(warning_yaml, "--fail-on", "warning").exit_code == 1
    assert run(warning_yaml, "--fail-on", "warning", "--ignore", "missing-label").exit_code == 0


def test_ignore_is_repeatable_and_accepts_commas(error_yaml, tmp_path):
    out = tmp_path / "audit.json"
    assert run(error_yaml, "--ignore", "malformed-line", "--json", out).exit_code == 0
    assert run(error_yaml, "--ignore", "few-instances,malformed-line", "--ignore", "tiny-box").exit_code == 0
    assert all(f["check"] != "malformed-line" for f in json.loads(out.read_text())["findings"])


def test_unknown_ignore_id_is_a_usage_error(clean_yaml):
    result = run(clean_yaml, "--ignore", "malformed-lines")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "malformed-lines" in lines[0] and "malformed-line," in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--fail-on", "info"], ["--imgsz", "0"], ["--duplicate-iou", "2"]])
def test_bad_option_values_exit_2(clean_yaml, args):
    assert run(clean_yaml, *args).exit_code == 2


def test_unreadable_dataset_exits_2_naming_the_file(tmp_path):
    result = run(tmp_path / "nowhere.yaml")
    assert result.exit_code == 2
    assert "nowhere.yaml" in result.output and "Traceback" not in result.output


def test_json_file_has_the_design_shape(error_yaml, tmp_path):
    out = tmp_path / "audit.json"
    result = run(error_yaml, "--json", out)
    assert result.exit_code == 1
    data = json.loads(out.read_text())
    assert list(data) == ["dataset", "classes", "splits", "findings", "summary"]
    assert data["classes"] == NAMES
    assert data["splits"]["train"] == {"images": 20, "backgrounds": 0, "instances": [100, 100]}
    assert data["summary"] == {"error": 1, "warning": 0, "info": 0}
    assert data["findings"] == [{"check": "malformed-line", "severity": "error", "split": "train",
                                 "image": "images/train/t001.jpg", "label": "labels/train/t001.txt", "line": 11,
                                 "message": data["findings"][0]["message"]}]
    assert not list(tmp_path.glob(".audit.json*"))  # no temporary file left behind


def test_json_to_stdout_keeps_the_summary_off_stdout(error_yaml):
    result = run(error_yaml, "--json", "-")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["summary"]["error"] == 1
    assert "malformed-line" in result.stderr


def test_json_into_a_missing_directory_exits_2(clean_yaml, tmp_path):
    result = run(clean_yaml, "--json", tmp_path / "missing" / "audit.json")
    assert result.exit_code == 2 and "audit.json" in result.output


def dataset_state(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha1(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_audit_never_writes_into_the_dataset(error_yaml):
    before = dataset_state(error_yaml.parent)
    assert run(error_yaml).exit_code == 1
    assert run(error_yaml, "--no-cache").exit_code == 1
    assert dataset_state(error_yaml.parent) == before


def test_examples_limit_the_locations_shown(make_dataset):
    splits = base_splits()
    for number in range(5):
        splits["train"][f"t{number:03d}.jpg"] = grid_label() + "0 0.5 0.5\n"
    data_yaml = make_dataset(splits, names=NAMES)
    result = run(data_yaml, "--examples", "2")
    assert "labels/train/t000.txt:11" in result.output and "labels/train/t001.txt:11" in result.output
    assert "labels/train/t002.txt" not in result.output and "and 3 more" in result.output


def test_markup_in_class_names_is_printed_as_text(make_dataset):
    data_yaml = make_dataset(base_splits(), names=["[bold]cat", "dog[/]"])
    result = run(data_yaml)
    assert result.exit_code == 0
    assert "[bold]cat" in result.output and "dog[/]" in result.output


# --- names, links and huge images (issue 16 items 3, 5, 9) ---------------------------------------------------------

def test_json_holds_a_name_that_is_not_utf8_as_escapes_of_the_same_name(tmp_path):
    import os

    from tests.odd_files import BAD_NAME, BAD_SHOWN, dataset_with_bad_name

    data_yaml = dataset_with_bad_name(tmp_path / "data")
    result = run(data_yaml, "--no-html", "--json", tmp_path / "audit.json")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "audit.json").read_bytes().decode("utf-8")  # strict: valid UTF-8
    assert f'"images/train/{BAD_SHOWN}.jpg"' in text
    [finding] = [f for f in json.loads(text)["findings"] if f["check"] == "non-utf8-name"]
    assert os.fsencode(finding["image"]) == b"images/train/" + BAD_NAME + b".jpg"
    assert (data_yaml.parent / finding["image"]).is_file()
    piped = run(data_yaml, "--no-html", "--json", "-")
    assert piped.exit_code == 0 and f'"images/train/{BAD_SHOWN}.jpg"' in piped.stdout
