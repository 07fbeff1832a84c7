"""Classifier checkpoints export like detectors: onnxruntime's probabilities equal torch's softmax, metadata
round-trips, and `doctor val` / `doctor predict` on the .onnx give the checkpoint's top-1 / top-5 and top-k CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from dataset_doctor.cli import app
from tests.tiny_dataset import write_class_tree
from trainer.classify_loop import load_classifier, train_classifier
from trainer.config import ClassifyConfig

onnxruntime = pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxruntime) is not installed")
pytest.importorskip("onnx", reason="the export extra (onnx, onnxruntime) is not installed")

from trainer.export.onnx_export import ExportOptions, export_onnx  # noqa: E402
from trainer.export.onnx_runtime import OnnxClassifier, OnnxDetector, onnx_task  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()
CLASSES = ("ant", "bee", "cat", "dog", "eel", "fox")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """6 classes x 3 images of 64 px (a letter on noise), other noise in val: a model that is right on some."""
    rng = np.random.default_rng(0)
    files = {}
    for name in CLASSES:
        for i in range(3):
            for split in ("train", "val"):
                image = np.full((64, 64, 3), 40, np.uint8)
                cv2.putText(image, name[0], (14, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 4)
                image = np.clip(image.astype(int) + rng.integers(-60, 60, image.shape), 0, 255).astype(np.uint8)
                files[f"{split}/{name}/{i}.png"] = image
    return write_class_tree(tmp_path_factory.mktemp("cls") / "letters", files)


@pytest.fixture(scope="module")
def classifier(tiny_root, tmp_path_factory) -> Path:
    """best.pt of a 3-epoch n classifier at imgsz 64 with an EMA."""
    config = ClassifyConfig(data=str(tiny_root), imgsz=64, batch=6, epochs=3, optimizer="SGD", lr0=0.01,
                            augment=False, ema=True, warmup_epochs=0, project=str(tmp_path_factory.mktemp("runs")),
                            exist_ok=True)
    return train_classifier(config, log=lambda *_: None) / "weights" / "best.pt"


def session(path: Path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("dynamic", [False, True])
def test_probabilities_equal_torch(classifier, tmp_path, dynamic) -> None:
    out = tmp_path / "cls.onnx"
    export_onnx(classifier, out, ExportOptions(dynamic=dynamic))  # imgsz 0: the training size, 64
    model, _ = load_classifier(classifier)  # unfused: fusing must not change the answer
    shapes = [(1, 64, 64)] + ([(3, 64, 64), (2, 96, 64)] if dynamic else [])
    for batch, height, width in shapes:
        x = np.random.default_rng(batch + height).random((batch, 3, height, width), dtype=np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).softmax(dim=1).numpy()
        got = session(out).run(None, {"images": x})[0]
        assert got.shape == expected.shape == (batch, len(CLASSES))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
        np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-5)
    if not dynamic:
        with pytest.raises(Exception, match="images"):
            session(out).run(None, {"images": np.zeros((2, 3, 64, 64), np.float32)})


def test_metadata_round_trips(classifier, tiny_root, tmp_path) -> None:
    written = export_onnx(classifier, tmp_path / "cls.onnx", ExportOptions(imgsz=96))
    meta = session(tmp_path / "cls.onnx").get_modelmeta().custom_metadata_map
    assert meta == written
    assert meta["task"] == "classify" and json.loads(meta["names"]) == list(CLASSES)
    assert json.loads(meta["imgsz"]) == [96, 96] and meta["scale"] == "n" and meta["data"] == tiny_root.name
    assert meta["version"] == "0.1.0" and json.loads(meta["ema"]) is True and json.loads(meta["nms"]) is False
    assert meta["layout"].startswith("probabilities")
    assert [o.name for o in session(tmp_path / "cls.onnx").get_outputs()] == ["probabilities"]
    assert onnx_task(tmp_path / "cls.onnx") == "classify"
    loaded = OnnxClassifier(tmp_path / "cls.onnx")
    assert loaded.names == list(CLASSES) and loaded.imgsz == 96
    with pytest.raises(Exception, match="classify model, not a detect one"):
        OnnxDetector(tmp_path / "cls.onnx")


def test_nms_is_refused_for_a_classifier_in_one_line(classifier, tmp_path) -> None:
    result = runner.invoke(app, ["export", str(classifier), "--nms", "--out", str(tmp_path / "c.onnx")])
    assert result.exit_code == 2 and "--nms is for detectors" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "c.onnx").exists()


def test_val_and_predict_on_the_onnx_give_the_checkpoints_numbers(classifier, tiny_root, tmp_path) -> None:
    for name, extra in (("static.onnx", []), ("dynamic.onnx", ["--dynamic"])):
        result = runner.invoke(app, ["export", str(classifier), "--out", str(tmp_path / name), *extra])
        assert result.exit_code == 0 and "classify" in result.output, result.output
    metrics = []
    for weights in (classifier, tmp_path / "static.onnx", tmp_path / "dynamic.onnx"):
        json_file = tmp_path / f"{weights.name}.json"
        result = runner.invoke(app, ["val", str(weights), str(tiny_root), "--batch", "4", "--device", "cpu",
                                     "--json", str(json_file)])
        assert result.exit_code == 0, result.output
        metrics.append(json.loads(json_file.read_text()))
    reference, *onnx_runs = metrics
    assert reference["samples"] == 18 and 0 < reference["top1"] < 1  # a model neither perfect nor useless
    for got in onnx_runs:
        assert abs(got["top1"] - reference["top1"]) <= 1e-3 and abs(got["top5"] - reference["top5"]) <= 1e-3
        assert got["confusion"] == reference["confusion"]
        for mine, theirs in zip(got["per_class"], reference["per_class"]):
            for key in ("precision", "recall", "accuracy"):
                assert abs(mine[key] - theirs[key]) <= 1e-3

    tables = []
    for weights, out in ((classifier, "torch"), (tmp_path / "static.onnx", "onnx")):
        result = runner.invoke(app, ["predict", str(weights), str(tiny_root / "val"), "--top-k", "3",
                                     "--device", "cpu", "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
        with open(tmp_path / out / "predictions.csv") as handle:
            tables.append(list(csv.DictReader(handle)))
    expected, got = tables
    assert len(expected) == len(got) == 18 and list(got[0]) == ["image", "class1", "prob1", "class2", "prob2",
                                                                "class3", "prob3"]
    for mine, theirs in zip(got, expected):
        assert mine["image"] == theirs["image"] and mine["class1"] == theirs["class1"]
        for rank in (1, 2, 3):
            assert abs(float(mine[f"prob{rank}"]) - float(theirs[f"prob{rank}"])) <= 2e-4
