"""Builders for the output-safety rows of the hostile tables (issue 16 items 1, 2, 6, 10), shared by
tests/dataset_doctor/test_hostile.py and tests/trainer/test_hostile.py.

Each builder writes a small world under tmp_path (a dataset, and the folder the hostile user points an output
at) and returns (the tree that must stay unchanged, the command line).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import pytest

from dataset_doctor.atomic import staged_directory
from tests.tiny_dataset import noise_image, write_dataset


def chmod_denies_writing() -> bool:
    """Whether a 0o555 folder stops this process: not for root (CAP_DAC_OVERRIDE), whom tests often run as."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "read-only"
        folder.mkdir(mode=0o555)
        try:
            (folder / "probe").mkdir()
        except PermissionError:
            return True
        finally:
            folder.chmod(0o755)
        return False


CHMOD_DENIES = chmod_denies_writing()


def write_image(path: Path, label: str | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".jpg", noise_image(str(path), (64, 48)))
    path.write_bytes(encoded.tobytes())
    if label is not None:
        label_path = Path(str(path).replace(f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}")).with_suffix(".txt")
        label_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.write_text(label)


def tiny_dataset(root: Path, val_list_folder: Path | None = None) -> Path:
    """Three train images of two classes and one val image; with `val_list_folder`, val is a val.txt listing
    absolute paths of two images kept in that folder (outside the dataset). Returns the data.yaml."""
    train = {"a.jpg": "0 0.5 0.5 0.3 0.3\n", "b.jpg": "1 0.4 0.4 0.2 0.2\n",
             "c.jpg": "0 0.3 0.3 0.2 0.2\n1 0.7 0.7 0.2 0.2\n"}
    if val_list_folder is None:
        return write_dataset(root, {"train": train, "val": {"v.jpg": "0 0.5 0.5 0.4 0.4\n"}}, names=["cat", "dog"],
                             size=(64, 48))
    listed = [val_list_folder / "images" / f"e{i}.jpg" for i in (1, 2)]
    for position, image in enumerate(listed):
        write_image(image, f"{position} 0.5 0.5 0.3 0.3\n")
    (root / "val.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "val.txt").write_text("".join(f"{image}\n" for image in listed))
    return write_dataset(root, {"train": train}, names=["cat", "dog"], size=(64, 48), extra_yaml={"val": "val.txt"})


def listed_elsewhere(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(world, data.yaml, E): the issue's repro, val: val.txt listing the images of folder E."""
    world = tmp_path / "world"
    elsewhere = world / "E"
    return world, tiny_dataset(world / "data", val_list_folder=elsewhere), elsewhere


def under_a_file(tmp_path: Path) -> tuple[Path, Path]:
    """(data.yaml, an output path below a regular file): creating it fails with ENOTDIR, as root too."""
    data_yaml = tiny_dataset(tmp_path / "data")
    (tmp_path / "a-file").write_text("not a folder")
    return data_yaml, tmp_path / "a-file" / "out"


def read_only_folder(tmp_path: Path) -> Path:
    """A 0o555 folder (permission denied); skips as root, whom chmod denies nothing."""
    if not CHMOD_DENIES:
        pytest.skip("root writes into a 0o555 folder anyway (the under-a-file rows run instead)")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def ours_that_the_source_links_into(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(world, data.yaml, E): E is an earlier output of ours (marked), and a train image of the source is a
    symlink into it (as a rebalance --link symlink output is): --force on E would delete the image's data."""
    world = tmp_path / "world"
    elsewhere = world / "E"
    with staged_directory(elsewhere, "fix") as staging:
        write_image(staging / "images" / "train" / "linked.jpg", None)
    data_yaml = tiny_dataset(world / "data")
    (world / "data" / "images" / "train" / "linked.jpg").symlink_to(elsewhere / "images" / "train" / "linked.jpg")
    (world / "data" / "labels" / "train" / "linked.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    return world, data_yaml, elsewhere
