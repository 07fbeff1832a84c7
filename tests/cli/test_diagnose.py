"""`doctor diagnose` on the command line: page and JSON written, one-line errors for missing or mismatched
predictions, and --model predicting both splits with one of our checkpoints (an untrained one: no training)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from dataset_doctor.cli import app
from tests.reports.diagnosis_inputs import IMAGES, NAMES, write_predicted
from trainer.checkpoint import save_checkpoint
from trainer.model.detector import Detector, ModelConfig

runner = CliRunner()


@pytest.fixture
def predicted(make_dataset, tmp_path):
    return write_predicted(make_dataset, tmp_path)


def _diagnose(*args: str):
    return runner.invoke(app, ["diagnose", *args])


def test_the_page_and_the_json_are_written(predicted, tmp_path):
    data, train, val = predicted
    page, document = tmp_path / "diagnosis.html", tmp_path / "diagnosis.json"
    result = _diagnose(str(data), "--train-predictions", str(train), "--val-predictions", str(val), "--out",
                       str(page), "--json", str(document), "--name", "yolov8n")
    assert result.exit_code == 0, result.output
    assert page.is_file() and "Diagnosis: yolov8n" in page.read_text(encoding="utf-8")
    payload = json.loads(document.read_text(encoding="utf-8"))
    assert [entry["diagnosis"] for entry in payload["per_class"]] == ["fine", "overfitting", "labels-or-capacity"]
    assert "steady: fine" in result.output and "memorised: overfitting" in result.output
    to_stdout = _diagnose(str(data), "--train-predictions", str(train), "--val-predictions", str(val), "--out",
                          str(page), "--json", "-")
    assert to_stdout.exit_code == 0
    assert json.loads(to_stdout.stdout)["verdict"] == payload["verdict"]


def test_the_default_page_goes_to_doctor_reports(predicted, tmp_path, monkeypatch):
    data, train, val = predicted
    monkeypatch.setenv("DOCTOR_REPORTS_DIR", str(tmp_path / "reports"))
    result = _diagnose(str(data), "--train-predictions", str(train), "--val-predictions", str(val))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "reports" / "data-diagnosis.html").is_file()


def _one_line_error(result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in result.output, result.output


def test_missing_or_mismatched_predictions_are_one_line_errors(predicted, tmp_path):
    data, train, val = predicted
    gone = tmp_path / "nowhere"
    _one_line_error(_diagnose(str(data), "--train-predictions", str(gone), "--val-predictions", str(val)),
                    "--train-predictions: predictions directory not found", "nowhere")
    _one_line_error(_diagnose(str(data), "--val-predictions", str(val)), "missing --train-predictions")
    # val's files passed as train: named after no train image
    _one_line_error(_diagnose(str(data), "--train-predictions", str(val), "--val-predictions", str(val)),
                    "none of the 24 prediction files is named after an image of this split", "val0.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(_diagnose(str(data), "--train-predictions", str(train), "--val-predictions", str(empty)),
                    "--val-predictions: no prediction file here is named after a val image", "empty")
    (val / "val3.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # no confidence
    _one_line_error(_diagnose(str(data), "--train-predictions", str(train), "--val-predictions", str(val)),
                    "val3.txt", ":1", "save_conf=True")
    (val / "val3.txt").write_text(f"{len(NAMES)} 0.5 0.5 0.2 0.2 0.9\n")  # a class the dataset does not have
    _one_line_error(_diagnose(str(data), "--train-predictions", str(train), "--val-predictions", str(val)),
                    "val3.txt", "not an integer in 0..2")
    _one_line_error(_diagnose(str(data), "--model", str(tmp_path / "best.pt"), "--train-predictions", str(train)),
                    "either --model or")
    _one_line_error(_diagnose(str(data), "--train-predictions", str(train), "--val-predictions", str(val), "--out",
                              str(tmp_path / "no" / "dir" / "p.html")), "the directory does not exist")
    labels = data.parent / "labels" / "val"
    before = sorted(path.name for path in labels.iterdir())
    _one_line_error(_diagnose(str(data), "--train-predictions", str(train), "--val-predictions", str(val), "--json",
                              str(labels / "val0.txt")), "would be written inside the dataset")
    _one_line_error(_diagnose(str(data), "--train-predictions", str(train), "--val-predictions", str(val), "--out",
                              str(data)), "would overwrite the dataset's data.yaml")
    assert sorted(path.name for path in labels.iterdir()) == before and data.read_text().startswith("train")


def test_our_checkpoint_predicts_both_splits_itself(predicted, tmp_path):
    data, _, _ = predicted
    weights = tmp_path / "best.pt"
    config = ModelConfig(scale="n", num_classes=len(NAMES))
    torch.manual_seed(0)
    save_checkpoint(weights, {"model": Detector(config).state_dict(), "ema": None,
                              "model_config": vars(config).copy(), "names": list(NAMES)})
    page, document = tmp_path / "p.html", tmp_path / "p.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = _diagnose(str(data), "--model", str(weights), "--imgsz", "64", "--device", "cpu", "--out",
                           str(page), "--json", str(document), "--train-images", "10")
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    payload = json.loads(document.read_text(encoding="utf-8"))
    assert payload["train"]["images"] == 10 and payload["val"]["images"] == IMAGES  # a seeded train subset
    assert len(payload["per_class"]) == len(NAMES)
    text = page.read_text(encoding="utf-8")
    assert "best.pt" in text
    assert "doctor-diagnose-" not in text  # the predictions' temporary folder is gone: the page never points there
    assert "--split val --conf 0.001 --imgsz 64 --out preds" in text

    wrong = tmp_path / "other.pt"
    other = ModelConfig(scale="n", num_classes=2)
    save_checkpoint(wrong, {"model": Detector(other).state_dict(), "ema": None, "model_config": vars(other).copy(),
                            "names": ["x", "y"]})
    _one_line_error(_diagnose(str(data), "--model", str(wrong), "--imgsz", "64", "--device", "cpu", "--out",
                              str(page)), "classes are not the dataset's")


@pytest.fixture(autouse=True)
def _reports_dir(tmp_path, monkeypatch):
    """No test writes into the working directory's doctor_reports/."""
    monkeypatch.setenv("DOCTOR_REPORTS_DIR", str(tmp_path / "default_reports"))
    monkeypatch.chdir(tmp_path)
