"""K folds of one split for cross-validation (`doctor crossval`): the same stratification and duplicate groups as
`doctor split`, so each fold holds about 1/K of every class and a near-duplicate never sits on both sides of a
fold boundary (a model that saw an image's copy would predict it in-sample).

Only readable images are placed (an unreadable one can be neither trained on nor predicted), each file once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.errors import DoctorError
from dataset_doctor.split.plan import instance_counts, stratify_groups

FOLD_COLUMNS = ["image_id", "image", "path", "group", "fold"]


@dataclass(frozen=True)
class FoldPlan:
    """`images` has FOLD_COLUMNS, one row per image file of the split; fold is 0..folds-1."""

    split: str
    folds: int
    seed: int
    images: pd.DataFrame

    def paths(self, fold: int) -> list[str]:
        """The image files of one fold, in index order."""
        return self.images.loc[self.images["fold"] == fold, "path"].tolist()

    def paths_outside(self, fold: int) -> list[str]:
        """The image files of every other fold: what the model held out on `fold` trains on."""
        return self.images.loc[self.images["fold"] != fold, "path"].tolist()

    def assignment(self) -> dict[str, int]:
        """{image path: fold}: what a resumed cross-validation compares to know its folds are unchanged."""
        return dict(zip(self.images["path"], self.images["fold"].astype(int)))


def plan_folds(index: DatasetIndex, folds: int, seed: int = 0, split: str = "train") -> FoldPlan:
    """Split `split`'s readable images into `folds` stratified folds, duplicate groups kept in one fold."""
    if folds < 2:
        raise DoctorError(f"--folds must be at least 2, got {folds}")
    if split not in index.splits:
        raise DoctorError(f"no '{split}' split to cross-validate", index.config.yaml_path)
    images = index.images[(index.images["split"] == split).to_numpy() & index.images["readable"].to_numpy()]
    images = images.drop_duplicates("path")
    images = images[images["path"].map(os.path.isfile).to_numpy()].reset_index(drop=True)
    counts = instance_counts(index, images)
    group, fold = stratify_groups(images, counts, [1 / folds] * folds, seed)
    plan = images[["image_id", "image", "path"]].copy()
    plan["group"] = group
    plan["fold"] = fold.astype(np.int64)
    sizes = np.bincount(plan["fold"].to_numpy(), minlength=folds)
    if (sizes == 0).any():
        raise DoctorError(f"{len(plan)} readable {split} image(s) in {plan['group'].nunique()} group(s) of "
                          f"(near-)duplicates cannot fill {folds} folds: use fewer --folds",
                          index.config.yaml_path)
    return FoldPlan(split, folds, seed, plan[FOLD_COLUMNS])
