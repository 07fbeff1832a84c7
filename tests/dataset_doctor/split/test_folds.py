"""plan_folds: K stratified folds of train for `doctor crossval`: disjoint, covering every readable train image
once, duplicates in one fold, every class in every fold, and a one-line error when K cannot be filled."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dataset_doctor.dataset.index import build_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.split.folds import plan_folds

TRAIN = {f"t{i}.jpg": f"{i % 3} 0.5 0.5 0.2 0.2\n" + ("1 0.2 0.2 0.1 0.1\n" if i % 4 == 0 else "")
         for i in range(18)}


def _dataset(make_dataset):
    data = make_dataset({"train": {**TRAIN, "broken.jpg": "0 0.5 0.5 0.2 0.2\n"},
                         "val": {"v.jpg": "0 0.5 0.5 0.2 0.2\n"}}, names=["a", "b", "c"])
    root = data.parent
    (root / "images/train/broken.jpg").write_bytes(b"not an image")
    for copy in ("t1copy.jpg", "t1copy2.jpg"):  # byte-identical copies of t1: one duplicate group of three
        shutil.copy(root / "images/train/t1.jpg", root / "images/train" / copy)
        shutil.copy(root / "labels/train/t1.txt", root / "labels/train" / copy.replace(".jpg", ".txt"))
    return data


@pytest.mark.parametrize("folds", [2, 3])
def test_folds_are_disjoint_cover_train_and_keep_duplicates_together(make_dataset, folds):
    index = build_index(_dataset(make_dataset), use_cache=False)
    plan = plan_folds(index, folds, seed=0)
    readable = index.images[(index.images["split"] == "train") & index.images["readable"]]
    every = [plan.paths(fold) for fold in range(folds)]
    flat = [path for paths in every for path in paths]
    assert sorted(flat) == sorted(readable["path"]) and len(flat) == len(set(flat)) == 20  # broken.jpg left out
    for fold in range(folds):
        assert set(plan.paths_outside(fold)) == set(flat) - set(plan.paths(fold))
    fold_of = plan.assignment()
    copies = [path for path in flat if "/t1" in path and ("copy" in path or path.endswith("/t1.jpg"))]
    assert len(copies) == 3 and len({fold_of[path] for path in copies}) == 1
    sizes = sorted(len(paths) for paths in every)
    assert sizes[-1] - sizes[0] <= 3  # about 1/K each (the group of three moves as one)
    labels = dict(zip(readable["path"], readable["label_path"]))
    for paths in every:  # stratified: each class in each fold
        classes = {line.split()[0] for path in paths for line in Path(labels[path]).read_text().splitlines()}
        assert classes == {"0", "1", "2"}
    assert plan_folds(index, folds, seed=0).assignment() == fold_of  # seeded


def test_more_folds_than_groups_is_a_one_line_error(make_dataset):
    index = build_index(make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n", "b.jpg": "1 0.5 0.5 0.2 0.2\n"},
                                      "val": {"v.jpg": "0 0.5 0.5 0.2 0.2\n"}}), use_cache=False)
    with pytest.raises(DoctorError, match="2 readable train image.*cannot fill 3 folds: use fewer --folds"):
        plan_folds(index, 3)
    with pytest.raises(DoctorError, match="--folds must be at least 2"):
        plan_folds(index, 1)
