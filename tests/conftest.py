"""Fixtures shared by every test package: an isolated cache, the sample dataset, tiny handmade datasets."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from dataset_doctor.sample.generate import write_sample_dataset
from dataset_doctor.sample.spec import SampleSpec

SMALL_SAMPLE = SampleSpec(train_images=120, val_images=40)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep index caches out of ~/.cache; one cache for the whole session so warm paths get exercised."""
    cache = tmp_path_factory.getbasetemp() / "doctor-cache"
    monkeypatch.setenv("DOCTOR_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(autouse=True)
def isolated_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Default reports (doctor audit writes doctor_reports/ in the working directory) go to a temporary folder."""
    reports = tmp_path / "doctor_reports"
    monkeypatch.setenv("DOCTOR_REPORTS_DIR", str(reports))
    return reports


@pytest.fixture(scope="session")
def sample_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small sample dataset (120 train / 40 val, seed 0) with all the deliberate defects. Read-only!"""
    return write_sample_dataset(tmp_path_factory.mktemp("sample") / "digits", seed=0, spec=SMALL_SAMPLE)


def noise_image(name: str, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """A distinct random image per name (so unrelated test images never look like duplicates)."""
    seed = int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    width, height = size
    small = rng.integers(0, 256, size=(max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


DatasetFactory = Callable[..., Path]


@pytest.fixture
def make_dataset(tmp_path: Path) -> DatasetFactory:
    """Build a tiny YOLO dataset and return its data.yaml.

    make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\\n", "b.jpg": None}, "val": {...}}, names=["cat", "dog"])
    A label of None writes no label file; bytes are written as they are. Images are distinct noise images of
    `size` (or a per-image size given as {"a.jpg": ("label text", (w, h))}).
    """

    def build(splits: dict[str, dict[str, object]], names: list[str] | dict | None = ("a", "b"),
              size: tuple[int, int] = (96, 64), root_name: str = "data", extra_yaml: dict | None = None) -> Path:
        root = tmp_path / root_name
        for split, files in splits.items():
            for file_name, spec in files.items():
                label, image_size = spec if isinstance(spec, tuple) else (spec, size)
                image_path = root / "images" / split / file_name
                image_path.parent.mkdir(parents=True, exist_ok=True)
                extension = image_path.suffix.lower()
                ok, encoded = cv2.imencode(extension if extension in (".jpg", ".png", ".bmp") else ".png",
                                           noise_image(f"{split}/{file_name}", image_size))
                image_path.write_bytes(encoded.tobytes())
                if label is not None:
                    label_path = root / "labels" / split / (image_path.stem + ".txt")
                    label_path.parent.mkdir(parents=True, exist_ok=True)
                    label_path.write_bytes(label if isinstance(label, bytes) else label.encode())
        config: dict[str, object] = {split: f"images/{split}" for split in splits}
        if names is not None:
            config["names"] = list(names) if not isinstance(names, dict) else names
        config.update(extra_yaml or {})
        (root / "data.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        return root / "data.yaml"

    return build


@pytest.fixture(scope="session")
def classify_sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classification sample (folder-per-class, seed 0) with its planted defects. Read-only!"""
    from dataset_doctor.sample.classify import write_classify_sample

    return write_classify_sample(tmp_path_factory.mktemp("classify-sample") / "digits-cls", seed=0)


def write_class_tree(root: Path, files: dict[str, object]) -> Path:
    """A tiny folder-per-class dataset: {"train/cat/a.png": (w, h) | ndarray | bytes}; (w, h) gives a distinct
    noise image of that size (PNG or JPEG by extension). Returns root."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
            continue
        pixels = noise_image(relative, content) if isinstance(content, tuple) else content
        path.write_bytes(cv2.imencode(path.suffix, pixels)[1].tobytes())
    return root
