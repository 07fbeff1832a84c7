"""The commands on folder-per-class datasets: doctor sample --task classify, doctor audit (task detected)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from typer.testing import CliRunner

from dataset_doctor.cli import app
from tests.tiny_dataset import write_class_tree

runner = CliRunner()


def test_demo_classify_runs_sample_audit_weights_train(tmp_path: Path) -> None:
    """doctor demo --task classify: the sample, its audit (JSON, HTML), weights, a classifier and its report."""
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--task", "classify", "--out", str(out), "--epochs", "1", "--imgsz", "32"])
    assert result.exit_code == 0, result.output
    sample = out / "sample-classify"
    assert (sample / "train" / "zero").is_dir() and (sample / "manifest.json").is_file()
    assert "task: classify (detected" in result.output
    data = json.loads((out / "reports" / "audit.json").read_text())
    assert data["task"] == "classify" and data["summary"]["error"] == 1  # the planted corrupt JPEG
    page = (out / "reports" / "audit.html").read_text()
    assert "Image sizes" in page and "three_leak.jpg" in page and "image classification" in page
    assert json.loads((out / "reports" / "class_weights.json").read_text())["instances"][-1] == 61
    assert (out / "runs" / "demo-classify" / "report.html").is_file()
    assert "caching 292 images in RAM" in result.output  # 183 train + 109 val readable images, decoded once
    ignored = runner.invoke(app, ["audit", str(sample), "--no-html", "--ignore", "corrupt-image"])
    assert ignored.exit_code == 0, ignored.output
    written = runner.invoke(app, ["sample", str(tmp_path / "again"), "--task", "classify", "--seed", "1"])
    assert written.exit_code == 0 and (tmp_path / "again" / "val" / "zero").is_dir()


def test_audit_task_option(tmp_path: Path) -> None:
    root = write_class_tree(tmp_path / "d", {"train/a/x.png": (32, 32), "val/a/y.png": (32, 32)})
    clean = runner.invoke(app, ["audit", str(root), "--no-html", "--task", "classify", "--min-instances", "1"])
    assert clean.exit_code == 0 and "task: classify (--task)" in clean.output
    detect = runner.invoke(app, ["audit", str(tmp_path / "nothing"), "--no-html", "--task", "classify"])
    assert detect.exit_code == 2 and "folder-per-class" in detect.output
    refused = runner.invoke(app, ["audit", str(root), "--no-html", "--predictions", str(tmp_path)])
    assert refused.exit_code == 2 and "detection datasets only" in refused.output


def test_sample_unknown_task(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sample", str(tmp_path / "x"), "--task", "segment"])
    assert result.exit_code == 2 and "--task" in result.output


def test_weights_on_a_classification_dataset(tmp_path: Path) -> None:
    from sklearn.utils.class_weight import compute_class_weight

    files = {f"train/a/{i}.png": (32, 32) for i in range(6)}
    files.update({f"train/b/{i}.png": (32, 32) for i in range(2)})
    files["train/b/broken.png"] = b"\x89PNG\r\n\x1a\nnot really"
    files["val/a/v.png"] = (32, 32)
    root = write_class_tree(tmp_path / "d", files)
    result = runner.invoke(app, ["weights", str(root), "--json", str(tmp_path / "w.json")])
    assert result.exit_code == 0, result.output
    assert "task: classify" in result.output and "1 unreadable train image(s) are not counted" in result.output
    data = json.loads((tmp_path / "w.json").read_text())
    labels = [0] * 6 + [1] * 2
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=np.array(labels))
    assert data["classes"] == ["a", "b"] and data["instances"] == [6, 2]
    assert np.allclose(data["weights"], expected * 8 / (expected * [6, 2]).sum())


def test_audit_and_weights_leave_the_dataset_unchanged(classify_sample_root: Path, tmp_path: Path) -> None:
    from tests.hostile import tree_digest

    before = tree_digest(classify_sample_root)
    runner.invoke(app, ["audit", str(classify_sample_root), "--json", str(tmp_path / "a.json"), "--no-html"])
    runner.invoke(app, ["weights", str(classify_sample_root)])
    assert tree_digest(classify_sample_root) == before


def test_train_val_predict_a_classifier(tmp_path: Path) -> None:
    files = {f"train/{name}/{i}.png": (64, 64) for name in ("cat", "dog") for i in range(4)}
    files.update({f"val/{name}/{i}.png": (64, 64) for name in ("cat", "dog") for i in range(2)})
    root = write_class_tree(tmp_path / "d", files)
    trained = runner.invoke(app, ["train", str(root), "--epochs", "1", "--imgsz", "64", "--batch", "4",
                                  "--project", str(tmp_path / "runs"), "--device", "cpu", "--workers", "0",
                                  "--cache", "ram", "--randaugment", "2", "--randaugment-magnitude", "5",
                                  "--crop-scale", "0.5"])
    assert trained.exit_code == 0, trained.output
    run = tmp_path / "runs" / "exp"
    args = yaml.safe_load((run / "args.yaml").read_text())
    assert (args["cache"], args["randaugment"], args["randaugment_magnitude"], args["amp"]) == ("ram", 2, 5, True)
    assert args["crop_scale"] == 0.5
    assert "caching 12 images in RAM" in trained.output
    assert "task: classify (detected" in trained.output and (run / "report.html").is_file()
    page = (run / "report.html").read_text()
    assert "Most confident wrong val predictions" in page and "class weights on" in page
    val = runner.invoke(app, ["val", str(run / "weights" / "best.pt"), str(root), "--json", str(tmp_path / "v.json")])
    assert val.exit_code == 0, val.output
    metrics = json.loads((tmp_path / "v.json").read_text())
    assert metrics["samples"] == 4 and [c["class"] for c in metrics["per_class"]] == ["cat", "dog"]
    predicted = runner.invoke(app, ["predict", str(run / "weights" / "best.pt"), str(root / "val"),
                                    "--out", str(tmp_path / "pred"), "--top-k", "2"])
    assert predicted.exit_code == 0, predicted.output
    lines = (tmp_path / "pred" / "predictions.csv").read_text().splitlines()
    assert lines[0] == "image,class1,prob1,class2,prob2" and len(lines) == 5
    resumed = runner.invoke(app, ["train", "--resume", str(run)])
    assert resumed.exit_code == 0, resumed.output  # already complete: nothing left to train, report rewritten


def test_randaugment_is_refused_for_a_detection_dataset(make_dataset) -> None:
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": {"b.jpg": "0 0.5 0.5 0.2 0.2\n"}})
    result = runner.invoke(app, ["train", str(data_yaml), "--randaugment", "2", "--epochs", "1"])
    assert result.exit_code == 2 and "--randaugment is a classifier option" in result.output
    result = runner.invoke(app, ["train", str(data_yaml), "--crop-scale", "0.5", "--epochs", "1"])
    assert result.exit_code == 2 and "--crop-scale is a classifier option" in result.output
