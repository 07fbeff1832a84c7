"""Which train images and label lines a rebalanced dataset is built from, read off the dataset index.

box_rules and the index decide what is an error, as everywhere else: a label line with an error-level finding is
never counted and never written into a new image; an image that cannot be decoded, or whose label file cannot
be read as a whole, is left out of the output entirely (a half-read label would teach missing objects as
background). Both are listed so the user can fix them at the source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dataset_doctor.dataset.box_rules import OUT_OF_BOUNDS_TOLERANCE, box_error_message
from dataset_doctor.dataset.datayaml import DatasetConfig
from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.errors import DoctorError
from dataset_doctor.findings import CHECKS, ERROR, FINDING_COLUMNS

SOURCE_COLUMNS = ["image_id", "image", "label", "path", "label_path", "label_exists", "clean_label"]
SOURCE_BOX_COLUMNS = ["position", "line", "cls", "cx", "cy", "w", "h"]


@dataclass(frozen=True)
class TrainSources:
    """The usable train images (one row each, in index order), their usable boxes, and what was left out."""

    config: DatasetConfig
    images: pd.DataFrame  # SOURCE_COLUMNS; clean_label: the label file has no error line and can be linked as is
    boxes: pd.DataFrame  # SOURCE_BOX_COLUMNS; `position` is the row in `images`
    dropped_lines: pd.DataFrame  # FINDING_COLUMNS: error lines in the labels of kept images (not copied)
    excluded_images: pd.DataFrame  # FINDING_COLUMNS: train images left out of the output, one finding each

    @property
    def names(self) -> tuple[str, ...]:
        return self.config.names

    def count_matrix(self) -> np.ndarray:
        """Usable instances per image (rows, in `images` order) and class (columns)."""
        counts = np.zeros((len(self.images), len(self.names)), dtype=np.int64)
        np.add.at(counts, (self.boxes["position"].to_numpy(), self.boxes["cls"].to_numpy()), 1)
        return counts


def collect_train_sources(index: DatasetIndex, tolerance: float = OUT_OF_BOUNDS_TOLERANCE) -> TrainSources:
    """The train split as material for rebalancing. Raises DoctorError when names are broken or nothing is left."""
    index.config.require_valid_names()
    train = index.images_in("train")
    errors = index.problems[(index.problems["split"] == "train") & (index.problems["severity"] == ERROR)]
    whole_file = errors[errors["line"].isna()]

    unusable = ~train["readable"] | train["image"].isin(whole_file["image"])
    excluded = whole_file[whole_file["image"].isin(train["image"][unusable])]
    excluded = excluded.drop_duplicates("image").reset_index(drop=True)
    # An image listed twice in train is one file: it is written (and counted) once.
    kept = train[~unusable].drop_duplicates("path")
    if kept.empty:
        raise DoctorError("no usable train image: every train image is corrupt or has an unreadable label file",
                          index.config.yaml_path)

    dropped = _dropped_lines(index, errors, set(kept["image"]), tolerance)
    position_of = pd.Series(np.arange(len(kept)), index=kept["image_id"].to_numpy())
    usable = index.usable_boxes("train", tolerance)
    usable = usable[usable["image_id"].isin(position_of.index)]
    boxes = pd.DataFrame({
        "position": position_of[usable["image_id"].to_numpy()].to_numpy(),
        "line": usable["line"].to_numpy(), "cls": usable["cls"].to_numpy(),
        "cx": usable["cx"].to_numpy(), "cy": usable["cy"].to_numpy(),
        "w": usable["w"].to_numpy(), "h": usable["h"].to_numpy(),
    }, columns=SOURCE_BOX_COLUMNS)

    images = kept[["image_id", "image", "label", "path", "label_path", "label_exists"]].reset_index(drop=True)
    images["clean_label"] = ~images["image"].isin(dropped["image"])
    return TrainSources(index.config, images[SOURCE_COLUMNS], boxes, dropped, excluded)


def _dropped_lines(index: DatasetIndex, errors: pd.DataFrame, kept_images: set[str],
                   tolerance: float) -> pd.DataFrame:
    """Error-level label lines of kept train images: unparsable lines from the scan, plus box_rules errors."""
    parsed_errors = errors[errors["line"].notna() & errors["image"].isin(kept_images)]
    checks = index.box_errors(tolerance)
    bad = index.boxes[(checks != "").to_numpy() & (index.boxes["split"] == "train").to_numpy()]
    bad = bad[bad["image"].isin(kept_images)]
    label_of = index.images.set_index("image_id")["label"]
    box_findings = pd.DataFrame({
        "check": checks[bad.index].to_numpy(),
        "severity": [CHECKS[c] for c in checks[bad.index]],
        "split": "train", "image": bad["image"].to_numpy(),
        "label": label_of[bad["image_id"].to_numpy()].to_numpy(),
        "line": bad["line"].to_numpy(),
        "message": [box_error_message(check, row, index.nc) for check, row in zip(checks[bad.index],
                                                                                  bad.itertuples())],
    }, columns=FINDING_COLUMNS)
    frames = [frame for frame in (parsed_errors, box_findings) if len(frame)]
    if not frames:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    dropped = pd.concat(frames, ignore_index=True).drop_duplicates(["image", "line"])
    return dropped.sort_values(["image", "line"], kind="stable").reset_index(drop=True)
