"""Training a classifier end to end on tiny folder-per-class data: it overfits, writes its run directory, resumes,
and class weights change the loss."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.tiny_dataset import write_class_tree
from trainer.classify_loop import load_classifier, precise_batchnorm, train_classifier
from trainer.config import ClassifyConfig
from trainer.data.classify_dataset import ClassifyAugment, ClassifyDataset
from trainer.model.classifier import Classifier, ClassifierConfig

CLASSES = ("a", "b", "c", "d")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes x 3 images of 64 px: a letter on noise, the same images in val."""
    rng = np.random.default_rng(0)
    files = {}
    for name in CLASSES:
        for i in range(3):
            image = np.full((64, 64, 3), 40, np.uint8)
            cv2.putText(image, name, (14, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (255, 255, 255), 4)
            image = np.clip(image.astype(int) + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
            files[f"train/{name}/{i}.png"] = image
            files[f"val/{name}/{i}.png"] = image
    return write_class_tree(tmp_path_factory.mktemp("tiny-cls") / "data", files)


def _config(root: Path, project: Path, **changes) -> ClassifyConfig:
    settings = {"data": str(root), "imgsz": 64, "batch": 6, "epochs": 12, "optimizer": "SGD", "lr0": 0.01,
                "augment": False, "ema": False, "label_smoothing": 0.0, "warmup_epochs": 0, "project": str(project),
                "exist_ok": True}
    return ClassifyConfig(**{**settings, **changes})


def test_overfits_a_few_images(tiny_root: Path, tmp_path: Path) -> None:
    run = train_classifier(_config(tiny_root, tmp_path), log=lambda *_: None)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "classify" and metrics["classes"] == list(CLASSES)
    assert metrics["train"]["top1"] >= 0.9
    assert metrics["val"]["top5"] == 1.0
    with open(run / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    with open(run / "val_predictions.csv") as handle:
        predictions = list(csv.DictReader(handle))
    assert len(predictions) == 12 and {"image", "true", "class1", "prob1", "class4", "prob4"} <= set(predictions[0])
    model, checkpoint = load_classifier(run / "weights" / "best.pt")
    assert checkpoint["names"] == list(CLASSES) and model.num_classes == 4


def test_resume_continues_to_the_last_epoch(tiny_root: Path, tmp_path: Path) -> None:
    config = _config(tiny_root, tmp_path, epochs=3, augment=True, ema=True)
    run = train_classifier(dataclass_replace(config, epochs=3), log=lambda *_: None)
    state = torch.load(run / "weights" / "last.pt", weights_only=True)
    assert state["epoch"] == 2
    # pretend the run was killed after epoch 2: rewind its checkpoint and resume
    state["epoch"], state["rows"] = 1, state["rows"][:2]
    torch.save(state, run / "weights" / "last.pt")
    messages: list[str] = []
    resumed = train_classifier(config, resume=run, log=messages.append)
    assert resumed == run and any("resuming" in m and "epoch 3/3" in m for m in messages)
    with open(run / "results.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2", "3"]


def dataclass_replace(config: ClassifyConfig, **changes) -> ClassifyConfig:
    import dataclasses

    return dataclasses.replace(config, **changes)


def test_class_weights_are_logged_and_change_the_loss(tmp_path: Path) -> None:
    files = {f"train/common/{i}.png": (64, 64) for i in range(6)}
    files.update({"train/rare/0.png": (64, 64), "val/common/v.png": (64, 64), "val/rare/v.png": (64, 64)})
    root = write_class_tree(tmp_path / "d", files)
    results = {}
    for weights in ("none", "auto"):
        messages: list[str] = []
        run = train_classifier(_config(root, tmp_path / weights, epochs=1, batch=7, class_weights=weights),
                               log=messages.append)
        with open(run / "results.csv") as handle:
            results[weights] = float(next(csv.DictReader(handle))["train_loss"])
        assert f"class weights ({'on' if weights == 'auto' else 'off'}, inverse)" in messages[0]
        assert json.loads((run / "metrics.json").read_text())["class_weights"]["on"] is (weights == "auto")
    assert results["none"] != pytest.approx(results["auto"], rel=1e-3)


def test_precise_batchnorm_recomputes_statistics() -> None:
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(num_classes=3))
    images = torch.rand(8, 3, 32, 32) * 0.2 + 0.7

    class Batches(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int):
            return images[i], 0

    stem = model.backbone[0].bn
    precise_batchnorm(model, Batches(), batch=4, batches=2, device=torch.device("cpu"))
    conv = model.backbone[0].conv(images)
    assert torch.allclose(stem.running_mean, conv.mean(dim=(0, 2, 3)), atol=1e-4)
    assert stem.momentum == 0.1 and model.training


def test_train_augment_is_seeded_by_the_draw(tiny_root: Path) -> None:
    from trainer.data.sampler import SampleKey

    paths = sorted(str(p) for p in (tiny_root / "train").rglob("*.png"))
    dataset = ClassifyDataset(paths, [0] * len(paths), ClassifyAugment(48, train=True), seed=1)
    first, second = dataset[SampleKey(0, 0, 5)][0], dataset[SampleKey(0, 0, 5)][0]
    assert first.shape == (3, 48, 48) and torch.equal(first, second)
    assert not torch.equal(first, dataset[SampleKey(0, 0, 6)][0])
    plain = ClassifyDataset(paths, [0] * len(paths), ClassifyAugment(48))
    assert plain[0][0].shape == (3, 48, 48)
