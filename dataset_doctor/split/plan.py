"""From a dataset index to a split plan: every image file, the duplicate group it belongs to and its new split.

All splits of the source are pooled. An image listed twice (in two splits, or twice in a .txt list) is one
file and is placed once; a listed image whose file does not exist is left out (and reported). Exact and
near-duplicate images (content hash, perceptual hash; transitive) form one unit that lands in one split with
the summed class counts of its members: otherwise a resized copy of a train image in val rewards memorisation
and inflates val mAP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from dataset_doctor.audit.near_duplicates import duplicate_groups
from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.split.stratify import iterative_stratification

PLAN_COLUMNS = ["image_id", "source_split", "image", "path", "label", "label_path", "label_exists", "readable",
                "image_error", "group", "split"]


@dataclass
class SplitPlan:
    """Where each image goes. `images` has PLAN_COLUMNS, one row per image file; `counts` its usable instances."""

    index: DatasetIndex
    ratios: dict[str, float]
    seed: int
    images: pd.DataFrame
    counts: sparse.csr_matrix  # (images, classes) usable boxes per image and class
    not_found: list[str] = field(default_factory=list)  # listed (in a .txt list) but missing: not placed

    @property
    def split_names(self) -> list[str]:
        return list(self.ratios)

    def instances(self, split: str) -> np.ndarray:
        mask = (self.images["split"] == split).to_numpy()
        return np.asarray(self.counts[mask].sum(axis=0), dtype=np.int64).ravel()


def plan_split(index: DatasetIndex, ratios: dict[str, float], seed: int = 0) -> SplitPlan:
    """Assign every image of the pooled dataset to a split of `ratios` ({"train": 0.8, "val": 0.2, ...})."""
    images = index.images.drop_duplicates("path")
    exists = images["path"].map(os.path.isfile).to_numpy()
    not_found = images.loc[~exists, "image"].tolist()
    images = images[exists].reset_index(drop=True)
    counts = instance_counts(index, images)
    unit_of_image, split_of_image = stratify_groups(images, counts, list(ratios.values()), seed)

    plan = images.rename(columns={"split": "source_split"})
    plan["source_split"] = plan["source_split"].astype(str)
    plan["group"] = unit_of_image
    plan["split"] = np.array(list(ratios), dtype=object)[split_of_image]
    return SplitPlan(index, dict(ratios), seed, plan[PLAN_COLUMNS].reset_index(drop=True), counts, not_found)


def stratify_groups(images: pd.DataFrame, counts: sparse.csr_matrix, ratios: list[float],
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate group of each image, position in `ratios` of each image): exact and near-duplicate images
    (content_hash / phash columns) form one unit with their summed class counts, stratified as one. Shared by
    `doctor split` and `doctor crossval`'s folds (split.folds)."""
    groups = duplicate_groups(images["content_hash"].tolist(), images["phash"].tolist())
    _, unit_of_image = np.unique(groups, return_inverse=True)
    units = int(unit_of_image.max(initial=-1)) + 1
    # (units, images) membership times (images, classes) counts: the summed class counts of each group
    membership = sparse.csr_matrix((np.ones(len(images)), (unit_of_image, np.arange(len(images)))),
                                   shape=(units, len(images)))
    unit_counts = (membership @ counts).astype(np.int64)
    sizes = np.bincount(unit_of_image, minlength=units)
    unit_split = iterative_stratification(unit_counts, ratios, seed, sizes)
    return unit_of_image, unit_split[unit_of_image]


def instance_counts(index: DatasetIndex, images: pd.DataFrame) -> sparse.csr_matrix:
    """Usable boxes (the same rule as audit and training) per kept image and class."""
    boxes = index.usable_boxes()
    row_of_image = pd.Series(np.arange(len(images)), index=images["image_id"].to_numpy())
    boxes = boxes[boxes["image_id"].isin(row_of_image.index)]
    rows = row_of_image.loc[boxes["image_id"].to_numpy()].to_numpy()
    matrix = sparse.coo_matrix((np.ones(len(rows), dtype=np.int64), (rows, boxes["cls"].to_numpy())),
                               shape=(len(images), index.nc))
    return matrix.tocsr()  # duplicate (row, class) entries are summed
