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

from dataset_doctor.errors import DoctorError
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


def _results_without_time(run: Path) -> list[dict]:
    with open(run / "results.csv") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def test_cache_ram_and_amp_do_not_change_a_cpu_run(tiny_root: Path, tmp_path: Path) -> None:
    """--cache ram decodes once and then serves the same bases: the same batches, so the same run; --amp is the
    detector's CUDA-only autocast, a no-op on CPU (float32 numbers unchanged, no grad scaler)."""
    runs, logs = {}, {}
    for name, cache, amp in (("plain", "none", False), ("cached", "ram", True)):
        logs[name] = []
        runs[name] = train_classifier(_config(tiny_root, tmp_path, name=name, epochs=2, augment=True, cache=cache,
                                              amp=amp), log=logs[name].append)
    assert _results_without_time(runs["plain"]) == _results_without_time(runs["cached"])
    caching = [m for m in logs["cached"] if "caching" in m]
    assert len(caching) == 1 and caching[0].startswith("caching 24 images in RAM")  # train + val (12 + 12)
    assert not any("caching" in m or "mixed precision" in m for m in logs["plain"])
    assert not any("mixed precision" in m for m in logs["cached"])
    state = torch.load(runs["cached"] / "weights" / "last.pt", weights_only=True)
    assert state["config"]["cache"] == "ram" and state["scaler"] == {}  # a disabled GradScaler has no state


def test_cached_bases_are_the_decoded_ones_and_large_images_shrink(tmp_path: Path, monkeypatch) -> None:
    import trainer.data.dataset as detector_data
    from trainer.data.classify_dataset import base_cache_bytes, fill_base_cache, load_base
    from trainer.data.sampler import SampleKey

    root = write_class_tree(tmp_path / "d", {"train/a/big.png": (200, 140), "train/a/small.jpg": (40, 50)})
    paths = [str(root / "train/a/big.png"), str(root / "train/a/small.jpg")]
    sizes = np.array([[200, 140], [40, 50]])
    assert load_base(paths[0], 32).shape == (64, 91, 3)  # short side 140 > 2 x 32: shrunk to 64
    assert load_base(paths[1], 32).shape == (50, 40, 3)  # small: as decoded
    assert base_cache_bytes(sizes, 32) == 64 * 91 * 3 + 50 * 40 * 3
    messages: list[str] = []
    cache = fill_base_cache(paths + paths[:1], np.concatenate([sizes, sizes[:1]]), 32, log=messages.append)
    assert sorted(cache) == sorted(paths) and messages == ["caching 2 images in RAM: about 0.0 MiB"]
    for train in (True, False):
        augment = ClassifyAugment(32, train=train, randaugment=2)
        cached, plain = (ClassifyDataset(paths, [0, 0], augment, seed=3, cache=c) for c in (cache, None))
        for key in ([SampleKey(i, 1, 7 + i) for i in range(2)] if train else [0, 1]):
            assert torch.equal(cached[key][0], plain[key][0])
    monkeypatch.setattr(detector_data, "available_memory_bytes", lambda: 1000)
    messages.clear()
    assert fill_base_cache(paths, sizes, 32, log=messages.append) is None
    assert "more than 80% of the 0.0 GiB available: not caching" in messages[0]


def test_randaugment_adds_seeded_ops_to_training_only(tiny_root: Path) -> None:
    from trainer.data.classify_dataset import randaugment_ops
    from trainer.data.sampler import SampleKey

    paths = sorted(str(p) for p in (tiny_root / "train").rglob("*.png"))
    base = ClassifyDataset(paths, [0] * len(paths), ClassifyAugment(48, train=True), seed=1)
    strong = ClassifyDataset(paths, [0] * len(paths), ClassifyAugment(48, train=True, randaugment=3), seed=1)
    keys = [SampleKey(i, 0, i) for i in range(6)]
    changed = [not torch.equal(base[key][0], strong[key][0]) for key in keys]
    assert sum(changed) >= 5  # 3 of 13 ops; only a rare draw of near-identity ops leaves an image as it was
    assert all(torch.equal(strong[key][0], strong[key][0]) for key in keys[:2])  # seeded by the draw
    assert strong[keys[0]][0].shape == (3, 48, 48)
    evaluation = ClassifyAugment(48, randaugment=3)
    assert torch.equal(ClassifyDataset(paths, [0] * 12, evaluation)[0][0],
                       ClassifyDataset(paths, [0] * 12, ClassifyAugment(48))[0][0])
    assert len(randaugment_ops(9)) == 13
    with pytest.raises(DoctorError, match="--randaugment-magnitude"):
        train_classifier(ClassifyConfig(data=str(tiny_root), randaugment_magnitude=11), log=lambda *_: None)


def test_a_gpu_device_without_a_gpu_is_one_line(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    """The classifier chooses its device like the detector (it used torch.device(text): '--device 0' crashed)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DoctorError, match="asks for a GPU"):
        train_classifier(_config(tiny_root, tmp_path, device="0"), log=lambda *_: None)
