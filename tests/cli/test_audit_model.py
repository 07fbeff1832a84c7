"""`doctor audit --model WEIGHTS`: the same predictions and findings as `doctor predict` + `--predictions`, the
in-sample warning when the checkpoint was trained on the audited train split, and one-line errors for a bad
--model (untrained checkpoints: no training here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.cli.test_audit_predictions import LABEL_ERRORS, assert_one_line_error, doctor, tree_hashes
from trainer.checkpoint import save_checkpoint
from trainer.model.detector import Detector, ModelConfig

NAMES = ("cat", "dog")
TRAIN = {f"t{i}.jpg": f"{i % 2} 0.{3 + i % 4} 0.5 0.2 0.3\n" for i in range(6)}
VAL = {f"v{i}.jpg": f"{i % 2} 0.5 0.{3 + i % 4} 0.3 0.2\n" for i in range(3)}


@pytest.fixture(autouse=True)
def _one_thread_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCTOR_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _checkpoint(path: Path, names=NAMES, data: Path | None = None) -> Path:
    """An untrained detector saved as ours; with `data`, settings that say it was trained on that data.yaml."""
    config = ModelConfig(scale="n", num_classes=len(names))
    torch.manual_seed(0)
    state = {"model": Detector(config).state_dict(), "ema": None, "model_config": vars(config).copy(),
             "names": list(names)}
    if data is not None:
        state["settings"] = {"train": {"data": str(data)}, "data": {"imgsz": 64}}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, state)
    return path


def _findings(path: Path) -> list[dict]:
    return json.loads(path.read_text())["findings"]


def test_model_audit_predicts_like_doctor_predict_and_finds_the_same(make_dataset, tmp_path):
    data = make_dataset({"train": TRAIN, "val": VAL}, names=list(NAMES))
    weights = _checkpoint(tmp_path / "elsewhere" / "model.pt")  # records no training data: not in-sample
    before = tree_hashes(data.parent)
    kept = tmp_path / "kept"
    result = doctor("audit", data, "--model", weights, "--imgsz", 64, "--device", "cpu", "--predictions-out", kept,
                    "--json", tmp_path / "model.json", "--no-html")
    assert result.exit_code in (0, 1), result.output
    assert "in-sample" not in result.output
    for split, images in (("train", TRAIN), ("val", VAL)):
        assert doctor("predict", weights, data, "--split", split, "--conf", 0.001, "--imgsz", 64, "--device", "cpu",
                      "--out", tmp_path / f"p-{split}").exit_code == 0
        by_predict = tree_hashes(tmp_path / f"p-{split}" / "labels")
        assert tree_hashes(kept / split) == by_predict and len(by_predict) == len(images)
    preds = tmp_path / "preds"
    preds.mkdir()
    for split in ("train", "val"):
        (tmp_path / f"p-{split}" / "labels").rename(preds / split)
    again = doctor("audit", data, "--predictions", preds, "--json", tmp_path / "dir.json", "--no-html")
    assert again.exit_code == result.exit_code, again.output
    assert _findings(tmp_path / "model.json") == _findings(tmp_path / "dir.json")
    assert any(finding["check"] in LABEL_ERRORS for finding in _findings(tmp_path / "model.json"))
    record = json.loads((tmp_path / "model.json").read_text())["label_audit"]
    assert record["model"] == str(weights) and record["splits"] == ["train", "val"]
    assert record["files_read"] == len(TRAIN) + len(VAL) and record["in_sample"] == {}
    assert record["predictions"] == str(kept) and record["conf"] == 0.001 and record["imgsz"] == 64
    assert tree_hashes(data.parent) == before  # the dataset is only read


def test_a_model_trained_on_this_train_split_is_called_in_sample(make_dataset, tmp_path):
    data = make_dataset({"train": TRAIN, "val": VAL}, names=list(NAMES))
    run = tmp_path / "runs" / "exp"
    weights = _checkpoint(run / "weights" / "best.pt")
    (run / "args.yaml").write_text(yaml.safe_dump({"train": {"data": "data.yaml"},
                                                   "resolved": {"dataset": str(data)}}))
    result = doctor("audit", data, "--model", weights, "--imgsz", 64, "--device", "cpu", "--json", tmp_path / "a.json",
                    "--no-html")
    assert result.exit_code in (0, 1), result.output
    said = " ".join(result.output.split())
    assert "in-sample predictions: the model was trained on 6 of 6 train images" in said
    assert f"doctor crossval {data} --folds 5" in said
    record = json.loads((tmp_path / "a.json").read_text())["label_audit"]
    assert record["in_sample"] == {"train": {"images": 6, "of": 6}} and "crossval" in record["in_sample_warning"]
    assert record["imgsz"] == 64 and record["predictions"] is None

    # No args.yaml: the checkpoint's own settings say which data.yaml (a copy listing 2 train images, one of them
    # this dataset's val image too), and its training size is the default --imgsz (640 when it records none)
    subset = tmp_path / "subset.yaml"
    subset.write_text(yaml.safe_dump({"train": [str(data.parent / "images/train/t0.jpg"),
                                                str(data.parent / "images/val/v1.jpg")],
                                      "val": str(data.parent / "images/val"), "names": list(NAMES)}))
    moved = _checkpoint(tmp_path / "moved.pt", data=subset)
    result = doctor("audit", data, "--model", moved, "--device", "cpu", "--json", tmp_path / "b.json", "--no-html")
    assert result.exit_code in (0, 1), result.output
    record = json.loads((tmp_path / "b.json").read_text())["label_audit"]
    assert record["in_sample"] == {"train": {"images": 1, "of": 6}, "val": {"images": 1, "of": 3}}
    assert record["imgsz"] == 64


def test_a_bad_model_is_a_one_line_error(make_dataset, tmp_path):
    data = make_dataset({"train": TRAIN, "val": VAL}, names=list(NAMES))
    assert_one_line_error(doctor("audit", data, "--model", tmp_path / "none.pt", "--no-html"),
                          "checkpoint not found", "none.pt")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    assert_one_line_error(doctor("audit", data, "--model", text, "--no-html"),
                          "not a readable dataset-doctor checkpoint", "notes.pt")
    other = _checkpoint(tmp_path / "other.pt", names=("x", "y", "z"))
    assert_one_line_error(doctor("audit", data, "--model", other, "--imgsz", 64, "--device", "cpu", "--no-html"),
                          "classes are not the dataset's", "other.pt")
    good = _checkpoint(tmp_path / "good.pt")
    assert_one_line_error(doctor("audit", data, "--model", good, "--predictions", tmp_path, "--no-html"),
                          "either --predictions DIR or --model WEIGHTS")
    assert_one_line_error(doctor("audit", data, "--conf", 0.01, "--no-html"), "--conf and --device need --model")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x.txt").write_text("")
    assert_one_line_error(doctor("audit", data, "--model", good, "--predictions-out", full, "--no-html"),
                          "exists and is not empty")
    assert_one_line_error(doctor("audit", data, "--model", good, "--predictions-out",
                                 data.parent / "labels" / "train" / "p", "--no-html"), "inside the dataset")
    assert not list((data.parent / "labels" / "train").glob("*p*"))
