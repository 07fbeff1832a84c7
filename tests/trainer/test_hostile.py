"""Hostile inputs to the trainer package: each row is a case a hostile user tried, with what they must see.

Rows use tests/hostile.py: the exit code, one line naming the file, no traceback, the source tree unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests import hostile_outputs as outputs
from tests.hostile import HostileCase, run_case
from tests.odd_files import BAD_SHOWN, dataset_with_bad_name, dataset_with_huge_png
from tests.tiny_dataset import write_tiny_dataset
from tests.trainer.runs import write_run_with_checkpoint
from trainer.model.detector import ModelConfig


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

def _resume_a_folder_without_args_yaml(tmp_path: Path) -> tuple[Path, list[str]]:
    """--resume pointed at a folder that is not a run (no args.yaml): was a FileNotFoundError traceback."""
    folder = tmp_path / "not-a-run"
    (folder / "weights").mkdir(parents=True)
    (folder / "weights" / "last.pt").write_bytes(b"x")
    return folder, ["train", "--resume", folder]


def _resume_with_args_yaml_not_a_mapping(tmp_path: Path) -> tuple[Path, list[str]]:
    folder = tmp_path / "odd-run"
    folder.mkdir()
    (folder / "args.yaml").write_text("- just\n- a list\n")
    return folder, ["train", "--resume", folder]


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
    HostileCase("resume-a-folder-without-args-yaml", _resume_a_folder_without_args_yaml, 2,
                ("not-a-run/args.yaml", "not a run directory of doctor train")),
    HostileCase("resume-args-yaml-not-a-mapping", _resume_with_args_yaml_not_a_mapping, 2,
                ("odd-run/args.yaml", "not a mapping of settings")),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_hostile_input(case: HostileCase, tmp_path: Path) -> None:
    run_case(case, tmp_path)
