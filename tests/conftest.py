"""Fixtures shared by every test package: an isolated cache, the sample dataset, tiny handmade datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dataset_doctor.sample.generate import write_sample_dataset
from dataset_doctor.sample.spec import SampleSpec
from tests.tiny_dataset import write_dataset

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
        return write_dataset(tmp_path / root_name, splits, names=names, size=size, extra_yaml=extra_yaml)

    return build


@pytest.fixture(scope="session")
def classify_sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The classification sample (folder-per-class, seed 0) with its planted defects. Read-only!"""
    from dataset_doctor.sample.classify import write_classify_sample

    return write_classify_sample(tmp_path_factory.mktemp("classify-sample") / "digits-cls", seed=0)
