"""The dataset index: the one in-memory model of a dataset that audit, rebalance, weights and the trainer share.

Three pandas tables:
- `images`: one row per (split, image) with sizes, readability and hashes;
- `boxes`: one row per parsed label line (polygons converted), raw values, usable or not;
- `problems`: what scanning met (unreadable images, bad lines, missing/empty/orphan labels, polygons), as
  findings in the audit's format.
Whether a box is usable depends on `nc` and the out-of-bounds tolerance, so it is computed on request
(`usable_boxes`) rather than stored.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dataset_doctor.box_rules import OUT_OF_BOUNDS_TOLERANCE, box_error_checks
from dataset_doctor.datayaml import (
    DatasetConfig,
    is_image_file,
    label_path_text,
    list_split_image_files,
    load_data_yaml,
)
from dataset_doctor.file_scan import MISSING, FileScan, scan_files
from dataset_doctor.findings import CHECKS, FINDING_COLUMNS
from dataset_doctor.index_cache import cache_file_for, load_scan, save_scan

IMAGE_COLUMNS = ["image_id", "split", "image", "label", "path", "label_path", "label_exists", "width", "height",
                 "readable", "image_error", "file_bytes", "content_hash", "phash", "format"]
BOX_TABLE_COLUMNS = ["image_id", "split", "image", "line", "cls", "cx", "cy", "w", "h", "polygon"]
_NOT_LABEL_FILES = {"classes.txt", "labels.txt", "notes.txt", "readme.txt"}


@dataclass
class DatasetIndex:
    """Tables describing every image and box of a dataset, plus what went wrong reading them."""

    config: DatasetConfig
    images: pd.DataFrame
    boxes: pd.DataFrame
    problems: pd.DataFrame  # findings (FINDING_COLUMNS) met while scanning
    files_read: int = 0  # how many files were read rather than taken from the cache

    @property
    def names(self) -> tuple[str, ...]:
        return self.config.names

    @property
    def nc(self) -> int:
        return self.config.nc

    @property
    def root(self) -> Path:
        return self.config.root

    @property
    def splits(self) -> list[str]:
        return list(self.config.splits)

    def images_in(self, split: str) -> pd.DataFrame:
        return self.images[self.images["split"] == split]

    def boxes_in(self, split: str) -> pd.DataFrame:
        return self.boxes[self.boxes["split"] == split]

    def box_errors(self, tolerance: float = OUT_OF_BOUNDS_TOLERANCE) -> pd.Series:
        """Per box, the error check it fails ('' if usable as a box); see box_rules."""
        return box_error_checks(self.boxes, self.nc, tolerance)

    def usable_boxes(self, split: str | None = None, tolerance: float = OUT_OF_BOUNDS_TOLERANCE) -> pd.DataFrame:
        """Boxes fit for training: no error-level finding on the line, on a readable image."""
        readable = self.images["readable"].to_numpy()[self.boxes["image_id"].to_numpy()]
        mask = (self.box_errors(tolerance) == "").to_numpy() & readable
        if split is not None:
            mask &= (self.boxes["split"] == split).to_numpy()
        return self.boxes[mask]

    def instances(self, split: str, tolerance: float = OUT_OF_BOUNDS_TOLERANCE) -> np.ndarray:
        """Usable box count per class in one split (length nc)."""
        classes = self.usable_boxes(split, tolerance)["cls"].to_numpy()
        return np.bincount(classes, minlength=self.nc)[: self.nc] if self.nc else np.zeros(0, dtype=np.int64)

    def image_path(self, image_id: int) -> Path:
        return Path(self.images.at[image_id, "path"])


def build_index(data_yaml: str | Path | DatasetConfig, *, workers: int | None = None, use_cache: bool = True,
                progress: bool = True) -> DatasetIndex:
    """Read a dataset into a DatasetIndex, scanning files in parallel and reusing the cache where valid."""
    config = data_yaml if isinstance(data_yaml, DatasetConfig) else load_data_yaml(data_yaml)
    listing = [(split, path) for split in config.splits for path in list_split_image_files(config, split)]
    pairs = [(path, label_path_text(path)) for _, path in listing]

    cache_file = cache_file_for(config.yaml_path)
    previous = load_scan(cache_file) if use_cache else None
    scan, files_read = scan_files(pairs, previous, workers=workers, progress=progress)
    if use_cache and (files_read or previous is None or len(previous.files) != len(scan.files)):
        save_scan(cache_file, scan)
    return _assemble(config, listing, pairs, scan, files_read)


def _assemble(config: DatasetConfig, listing: list[tuple[str, str]], pairs: list[tuple[str, str]],
              scan: FileScan, files_read: int) -> DatasetIndex:
    files = scan.files
    file_row = {path: row for row, path in enumerate(files["path"].to_numpy())}
    rows = np.array([file_row[image] for image, _ in pairs], dtype=np.int64)
    per_image = files.iloc[rows].reset_index(drop=True)

    split_type = pd.CategoricalDtype(list(config.splits))
    relative = _relative_to(config.root)
    images = pd.DataFrame({
        "image_id": np.arange(len(listing)),
        "split": pd.Categorical([split for split, _ in listing], dtype=split_type),
        "image": [relative(path) for _, path in listing],
        "label": [relative(label) for _, label in pairs],
        "path": per_image["path"].to_numpy(),
        "label_path": per_image["label_path"].to_numpy(),
        "label_exists": (per_image["label_size"] != MISSING).to_numpy(),
        "width": per_image["width"].to_numpy(),
        "height": per_image["height"].to_numpy(),
        "readable": (per_image["image_error"] == "").to_numpy(),
        "image_error": per_image["image_error"].to_numpy(),
        "file_bytes": per_image["image_size"].to_numpy(),
        "content_hash": per_image["content_hash"].to_numpy(),
        "phash": per_image["phash"].to_numpy(),
        "format": per_image["format"].to_numpy(),
    }, columns=IMAGE_COLUMNS)

    boxes = _boxes_table(scan, rows, images)
    problems = _problem_findings(config, images, per_image, scan, rows, boxes)
    return DatasetIndex(config, images, boxes, problems, files_read)


def _boxes_table(scan: FileScan, rows: np.ndarray, images: pd.DataFrame) -> pd.DataFrame:
    """Expand per-file boxes to per-image rows (an image listed in two splits gets its boxes twice)."""
    counts = np.bincount(scan.boxes[:, 0].astype(np.int64), minlength=len(scan.files))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    per_image = counts[rows]
    image_ids = np.repeat(np.arange(len(rows)), per_image)
    within = np.arange(len(image_ids)) - np.repeat(np.cumsum(per_image) - per_image, per_image)
    values = scan.boxes[starts[rows][image_ids] + within]  # scan.boxes is sorted by file, then line
    return pd.DataFrame({
        "image_id": image_ids,
        "split": pd.Categorical.from_codes(images["split"].cat.codes.to_numpy()[image_ids],
                                           dtype=images["split"].dtype),
        "image": images["image"].to_numpy()[image_ids],
        "line": values[:, 1].astype(np.int32),
        "cls": values[:, 2].astype(np.int64),
        "cx": values[:, 3], "cy": values[:, 4], "w": values[:, 5], "h": values[:, 6],
        "polygon": values[:, 7].astype(bool),
    }, columns=BOX_TABLE_COLUMNS)


def _problem_findings(config: DatasetConfig, images: pd.DataFrame, per_image: pd.DataFrame, scan: FileScan,
                      rows: np.ndarray, boxes: pd.DataFrame) -> pd.DataFrame:
    """Scan problems as findings, built with table operations (this runs on every warm start)."""
    parts = [pd.DataFrame.from_records([f.to_dict() for f in config.problems], columns=FINDING_COLUMNS)]
    split = images["split"].astype(str)

    def per_image_findings(mask: np.ndarray, check: str, message: pd.Series | str, with_label: bool) -> None:
        selected = images[mask]
        parts.append(pd.DataFrame({
            "check": check, "severity": CHECKS[check], "split": split[mask],
            "image": selected["image"], "label": selected["label"] if with_label else None, "line": None,
            "message": message[mask] if isinstance(message, pd.Series) else message,
        }, columns=FINDING_COLUMNS))

    unreadable = ~images["readable"].to_numpy()
    corrupt_message = images["image_error"].copy()
    for split_name, sources in config.splits.items():
        lists = ", ".join(s.name for s in sources if s.suffix.lower() == ".txt")
        if lists:
            missing = (corrupt_message == "file not found") & (split == split_name)
            corrupt_message[missing] = f"file not found (listed in {lists})"
    per_image_findings(unreadable, "corrupt-image", corrupt_message, with_label=False)

    label_error = per_image["label_error"]
    has_label_error = (label_error != "").to_numpy()
    per_image_findings(has_label_error, "malformed-line", label_error, with_label=True)
    no_label = ~images["label_exists"].to_numpy() & ~has_label_error
    per_image_findings(no_label, "missing-label", "no label file: trained as a background image", False)
    empty = images["label_exists"].to_numpy() & ~has_label_error & (per_image["label_lines"] == 0).to_numpy()
    per_image_findings(empty, "empty-label", "empty label file: a background image", True)

    if len(scan.problems):
        image_of_file = pd.DataFrame({"file": rows, "image_id": np.arange(len(rows))})
        joined = scan.problems.merge(image_of_file, on="file").sort_values(["image_id", "line"], kind="stable")
        ids = joined["image_id"].to_numpy()
        parts.append(pd.DataFrame({
            "check": joined["check"].to_numpy(), "severity": joined["check"].map(CHECKS).to_numpy(),
            "split": split.to_numpy()[ids], "image": images["image"].to_numpy()[ids],
            "label": images["label"].to_numpy()[ids],
            "line": joined["line"].where(joined["line"] > 0, None).to_numpy(),
            "message": joined["message"].to_numpy(),
        }, columns=FINDING_COLUMNS))

    if boxes["polygon"].any():
        per_file = boxes.groupby("image_id").agg(polygons=("polygon", "sum"), rows=("polygon", "size"))
        first_polygon = boxes[boxes["polygon"]].groupby("image_id")["line"].min()
        per_file = per_file[per_file["polygons"] > 0].join(first_polygon)
        ids = per_file.index.to_numpy()
        base = {"split": split.to_numpy()[ids], "image": images["image"].to_numpy()[ids],
                "label": images["label"].to_numpy()[ids]}
        parts.append(pd.DataFrame({
            "check": "segment-label", "severity": CHECKS["segment-label"], **base, "line": per_file["line"].to_numpy(),
            "message": [f"{n} polygon(s) converted to boxes" for n in per_file["polygons"]],
        }, columns=FINDING_COLUMNS))
        mixed = (per_file["polygons"] < per_file["rows"]).to_numpy()
        parts.append(pd.DataFrame({
            "check": "mixed-label-types", "severity": CHECKS["mixed-label-types"],
            **{key: value[mixed] for key, value in base.items()}, "line": None,
            "message": [f"{rows - polygons} box(es) and {polygons} polygon(s) in one file"
                        for polygons, rows in zip(per_file["polygons"][mixed], per_file["rows"][mixed])],
        }, columns=FINDING_COLUMNS))

    parts.append(pd.DataFrame.from_records(_orphan_labels(config, images), columns=FINDING_COLUMNS))
    frame = pd.concat([part for part in parts if len(part)], ignore_index=True) if any(len(p) for p in parts) \
        else pd.DataFrame(columns=FINDING_COLUMNS)
    frame = frame.astype({"check": object, "severity": object, "split": object, "image": object,
                          "label": object, "message": object})
    frame["line"] = pd.array(frame["line"].tolist(), dtype="Int64")
    return frame


def _record(check: str, split: str | None, image: str | None, label: str | None, line: int | None,
            message: str) -> tuple:
    return check, CHECKS[check], split, image, label, line, message


def _orphan_labels(config: DatasetConfig, images: pd.DataFrame) -> list[tuple]:
    """Label files in the label folders of the dataset's images that belong to no image of any split."""
    known_labels = set(images["label_path"])
    label_dirs = sorted({path.rpartition(os.sep)[0] for path in known_labels})
    candidates = []
    for directory in label_dirs:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        # Set difference first: in a healthy dataset every .txt is a known label and nothing is left to check.
        unknown = {f"{directory}{os.sep}{name}" for name in names if name.endswith(".txt")} - known_labels
        candidates.extend(sorted(unknown))
    if not candidates:
        return []
    split_lists = {str(s) for sources in config.splits.values() for s in sources}
    image_stems = {path.rpartition(".")[0] for path in images["path"]}  # image paths always have an extension
    relative = _relative_to(config.root)
    records = []
    for path in candidates:
        name = os.path.basename(path)
        if name.lower() in _NOT_LABEL_FILES or path in split_lists or path[: -len(".txt")] in image_stems \
                or is_image_file(name):
            continue
        records.append(_record("orphan-label", None, None, relative(path), None,
                               "label file without an image: its boxes are never used"))
    return records


def _relative_to(root: Path) -> Callable[[str], str]:
    root_text = str(root) + os.sep

    def relative(path: str) -> str:
        return path[len(root_text):].replace(os.sep, "/") if path.startswith(root_text) else path

    return relative
