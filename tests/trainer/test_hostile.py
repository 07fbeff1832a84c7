"""Hostile inputs to the trainer package: each row is a case a hostile user tried, with what they must see.

Rows use tests/hostile.py: the exit code, one line naming the file, no traceback, the source tree unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import hostile_outputs as outputs
from tests.hostile import HostileCase, run_case

# Refusals come before the dataset is scanned: none of these rows trains.
_TINY = ["--epochs", "1", "--batch", "2", "--imgsz", "64", "--workers", "0", "--device", "cpu"]


def _project_inside_train_images(tmp_path: Path) -> tuple[Path, list]:
    data_yaml = outputs.tiny_dataset(tmp_path / "data")
    return data_yaml.parent, ["train", data_yaml, "--project", data_yaml.parent / "images" / "train", *_TINY]


def _project_inside_train_labels(tmp_path: Path) -> tuple[Path, list]:
    data_yaml = outputs.tiny_dataset(tmp_path / "data")
    return data_yaml.parent, ["train", data_yaml, "--project", data_yaml.parent / "labels" / "train" / "runs", *_TINY]


def _project_in_a_folder_val_txt_lists(tmp_path: Path) -> tuple[Path, list]:
    world, data_yaml, elsewhere = outputs.listed_elsewhere(tmp_path)
    return world, ["train", data_yaml, "--project", elsewhere / "images" / "runs", *_TINY]


def _run_dir_is_the_dataset_root(tmp_path: Path) -> tuple[Path, list]:
    data_yaml = outputs.tiny_dataset(tmp_path / "data")
    return data_yaml.parent, ["train", data_yaml, "--project", tmp_path, "--name", "data", "--exist-ok", *_TINY]


def _project_below_a_file(tmp_path: Path) -> tuple[Path, list]:
    data_yaml, out = outputs.under_a_file(tmp_path)
    return tmp_path, ["train", data_yaml, "--project", out, *_TINY]


def _project_in_a_read_only_folder(tmp_path: Path) -> tuple[Path, list]:
    folder = outputs.read_only_folder(tmp_path)
    data_yaml = outputs.tiny_dataset(tmp_path / "data")
    return tmp_path, ["train", data_yaml, "--project", folder / "runs", *_TINY]


_INSIDE = "--project is inside a folder the dataset reads"

CASES: list[HostileCase] = [
    # output safety (issue 16 items 1, 2, 6, 10)
    HostileCase("train-project-inside-the-train-images", _project_inside_train_images, 2,
                (_INSIDE, "images/train)")),
    HostileCase("train-project-inside-the-labels", _project_inside_train_labels, 2, (_INSIDE, "labels/train)")),
    HostileCase("train-project-in-a-folder-val-txt-lists", _project_in_a_folder_val_txt_lists, 2,
                (_INSIDE, "E/images)")),
    HostileCase("train-run-dir-is-the-dataset-root", _run_dir_is_the_dataset_root, 2,
                ("holds a folder the dataset reads",)),
    HostileCase("train-project-below-a-regular-file", _project_below_a_file, 2,
                ("cannot write the output here", "a-file/out")),
    HostileCase("train-project-in-a-read-only-folder", _project_in_a_read_only_folder, 2,
                ("cannot write the output here", "read-only")),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_input(case: HostileCase, tmp_path: Path) -> None:
    run_case(case, tmp_path)
