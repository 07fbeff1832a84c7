"""Hostile inputs to the trainer package: each row is a case a hostile user tried, with what they must see.

Rows use tests/hostile.py: the exit code, one line naming the file, no traceback, the source tree unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile import HostileCase, run_case
from tests.odd_files import BAD_SHOWN, dataset_with_bad_name, dataset_with_huge_png
from tests.tiny_dataset import write_run_with_checkpoint, write_tiny_dataset
from trainer.model import ModelConfig


def _train(make: Callable[[Path], Path]) -> Callable[[Path], tuple[Path, list[str]]]:
    def build(tmp_path: Path) -> tuple[Path, list[str]]:
        yaml_path = make(tmp_path / "data")
        return yaml_path.parent, ["train", yaml_path, "--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers",
                                  "0", "--device", "cpu", "--project", tmp_path / "runs"]
    return build


def _resume_with_a_100_class_checkpoint(tmp_path: Path) -> tuple[Path, list[str]]:
    """A 2-class run whose weights/last.pt was copied from a 100-class run."""
    data_yaml = write_tiny_dataset(tmp_path / "ds", {"train/a": "0 0.5 0.5 0.2 0.2\n", "val/v": "1 0.5 0.5 0.2 0.2\n"})
    run = write_run_with_checkpoint(tmp_path / "runs/exp", data_yaml, ModelConfig(scale="n", num_classes=100))
    return tmp_path, ["train", "--resume", run]


CASES: list[HostileCase] = [
    # names, links and huge images (issue 16 items 3, 5, 9)
    # the 1 MB PNG of 32000x32000 took 6.5 GB to train on at imgsz 64: now skipped with one warning
    HostileCase("train-huge-png", _train(dataset_with_huge_png), 0,
                ("images/train/huge.png: skipped, 32000x32000 pixels", "--max-pixels")),
    # the bad line makes training warn with the name, in its display form
    HostileCase("train-non-utf8-name",
                _train(lambda root: dataset_with_bad_name(root, b"0 0.5 0.5 0.2 0.2\n7 1 1 1 1\n")), 0,
                (f"labels/train/{BAD_SHOWN}.txt: skipped",)),
    # parsing, cache, resume (issue 16 items 4, 7, 8, 11)
    HostileCase("resume-checkpoint-of-another-class-count", _resume_with_a_100_class_checkpoint, 2,
                ("runs/exp/weights/last.pt", "cannot resume run", "checkpoint has 100 classes, this run 2")),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_input(case: HostileCase, tmp_path: Path) -> None:
    run_case(case, tmp_path)
