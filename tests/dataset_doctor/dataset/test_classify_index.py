"""The folder-per-class layout: task detection, class names, the image index and what does not fit the layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset_doctor.dataset.classify_index import build_classify_index, detect_task, header_color_mode
from dataset_doctor.errors import DoctorError
from tests.tiny_dataset import write_class_tree


def test_detects_classify_layout_and_detection_layout(tmp_path: Path, make_dataset) -> None:
    root = write_class_tree(tmp_path / "cls", {"train/cat/a.png": (32, 32), "val/cat/b.png": (32, 32)})
    task, why = detect_task(root)
    assert task == "classify" and "detected" in why
    detection = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n"}, "val": {"b.jpg": None}})
    assert detect_task(detection)[0] == "detect"
    assert detect_task(detection.parent)[0] == "detect"
    assert detect_task(root, "detect") == ("detect", "task: detect (--task)")
    with pytest.raises(DoctorError, match="folder-per-class"):
        detect_task(detection.parent, "classify")
    with pytest.raises(DoctorError, match="--task"):
        detect_task(root, "segment")


def test_data_yaml_of_a_classification_dataset(tmp_path: Path) -> None:
    root = write_class_tree(tmp_path / "cls", {"train/cat/a.png": (32, 32)})
    (root / "data.yaml").write_text("names: [cat]\n")
    assert detect_task(root / "data.yaml")[0] == "classify"
    (tmp_path / "elsewhere.yaml").write_text(f"path: {root.name}\n")
    assert build_classify_index(tmp_path / "elsewhere.yaml").root == root


def test_names_sorted_union_valid_folder_and_ids(tmp_path: Path) -> None:
    root = write_class_tree(tmp_path / "cls", {
        "train/dog/a.png": (32, 32), "train/cat/b.png": (32, 32), "train/cat/c.png": (40, 32),
        "valid/cat/d.png": (32, 32), "valid/emu/e.png": (32, 32), "test/dog/f.png": (32, 32)})
    index = build_classify_index(root)
    assert index.names == ("cat", "dog", "emu")
    assert index.splits == ["train", "val", "test"] and index.split_folders["val"] == "valid"
    assert index.counts("train").tolist() == [2, 1, 0]
    assert index.counts("val").tolist() == [1, 0, 1]
    row = index.images.set_index("image").loc["valid/emu/e.png"]
    assert (row["class_id"], row["class"], row["split"]) == (2, "emu", "val")
    assert index.images.set_index("image").loc["train/cat/c.png", "width"] == 40
    assert index.problems.empty


def test_layout_problems(tmp_path: Path) -> None:
    good = cv2.imencode(".jpg", np.full((32, 32, 3), 90, np.uint8))[1].tobytes()
    root = write_class_tree(tmp_path / "cls", {
        "train/cat/a.png": (32, 32), "train/stray.png": (32, 32), "train/cat/sub/n.png": (32, 32),
        "train/cat/notes.txt": b"hello", "train/cat/cut.jpg": good[: len(good) // 2],
        "train/cat/.hidden.png": b"x", "val/cat/b.png": (32, 32)})
    index = build_classify_index(root)
    found = {(row.check, row.image) for row in index.problems.itertuples()}
    assert found == {("misplaced-image", "train/stray.png"), ("misplaced-image", "train/cat/sub/n.png"),
                     ("non-image-file", "train/cat/notes.txt"), ("corrupt-image", "train/cat/cut.jpg")}
    # the nested image is trained as its outer class (ImageFolder walks subfolders); the stray one never
    images = set(index.images["image"])
    assert "train/cat/sub/n.png" in images and "train/stray.png" not in images
    assert index.counts("train").tolist() == [2]  # a.png and the nested one; the cut JPEG is unreadable


def test_not_a_classification_dataset(tmp_path: Path) -> None:
    with pytest.raises(DoctorError, match="folder-per-class"):
        build_classify_index(tmp_path)


@pytest.mark.parametrize(("extension", "pixels", "mode"), [
    (".png", np.zeros((8, 8), np.uint8), "gray"), (".png", np.zeros((8, 8, 3), np.uint8), "rgb"),
    (".png", np.zeros((8, 8, 4), np.uint8), "rgba"), (".jpg", np.zeros((8, 8), np.uint8), "gray"),
    (".jpg", np.zeros((8, 8, 3), np.uint8), "rgb")])
def test_header_color_mode(extension: str, pixels: np.ndarray, mode: str) -> None:
    assert header_color_mode(cv2.imencode(extension, pixels)[1].tobytes()) == mode


def test_header_color_mode_unknown() -> None:
    assert header_color_mode(b"GIF89a....") == "unknown"


@pytest.mark.parametrize("text", ["train: [unclosed\n", "a: &a [*a, *a]\n", "- just\n- a list\n", "path: 5\n"])
def test_a_broken_yaml_is_left_to_the_detection_path(tmp_path: Path, text: str) -> None:
    (tmp_path / "data.yaml").write_text(text)
    assert detect_task(tmp_path / "data.yaml")[0] == "detect"
