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

import hashlib
import itertools
import operator
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dataset_doctor.dataset.box_rules import OUT_OF_BOUNDS_TOLERANCE, box_error_checks
from dataset_doctor.dataset.datayaml import (
    DatasetConfig,
    is_image_file,
    label_paths_text,
    list_split_image_files,
    load_data_yaml,
)
from dataset_doctor.dataset.file_scan import MISSING, FileScan, scan_files
from dataset_doctor.dataset.index_cache import cache_file_for, load_scan, save_scan
from dataset_doctor.findings import CHECKS, FINDING_COLUMNS, display_name, is_undecodable_name
from dataset_doctor.gc_pause import gc_paused

IMAGE_COLUMNS = ["image_id", "split", "image", "label", "path", "label_path", "label_exists", "width", "height",
                 "readable", "image_error", "file_bytes", "content_hash", "phash", "format"]
BOX_TABLE_COLUMNS = ["image_id", "split", "image", "line", "cls", "cx", "cy", "w", "h", "polygon"]
_NOT_LABEL_FILES = {"classes.txt", "labels.txt", "notes.txt", "readme.txt"}
_first, _second = operator.itemgetter(0), operator.itemgetter(1)  # of a (split, path) or (image, label) pair


@dataclass
class DatasetIndex:
    """Tables describing every image and box of a dataset, plus what went wrong reading them."""

    config: DatasetConfig
    images: pd.DataFrame
    boxes: pd.DataFrame
    problems: pd.DataFrame  # findings (FINDING_COLUMNS) met while scanning
    files_read: int = 0  # how many files were read rather than taken from the cache
    # SHA-256 standing for `images` and `boxes` as build_index made them (the cached scan's digest and the image
    # listing), so the audit's result cache need not hash the tables; None when not known. Code that edits those
    # tables must set it to None.
    fingerprint: bytes | None = None

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
    with gc_paused():
        return _build_index(data_yaml, workers, use_cache, progress)


def _build_index(data_yaml: str | Path | DatasetConfig, workers: int | None, use_cache: bool,
                 progress: bool) -> DatasetIndex:
    config = data_yaml if isinstance(data_yaml, DatasetConfig) else load_data_yaml(data_yaml)
    skipped_links: list[tuple[str, str]] = []  # (split, directory link not followed)
    listing = []
    for split in config.splits:
        links: list[str] = []
        listing.extend((split, path) for path in list_split_image_files(config, split, links))
        skipped_links.extend((split, link) for link in links)
    paths = [path for _, path in listing]
    cache_file = cache_file_for(config.yaml_path)
    previous = load_scan(cache_file) if use_cache else None
    pairs = _image_label_pairs(paths, previous)
    scan, files_read = scan_files(pairs, previous, workers=workers, progress=progress)
    if use_cache and scan is not previous:  # scan_files returns `previous` itself when nothing changed
        save_scan(cache_file, scan)
    index = _assemble(config, listing, pairs, scan, files_read, skipped_links)
    if use_cache and scan.digest is not None:
        index.fingerprint = _fingerprint(scan.digest, listing)
    return index


def _image_label_pairs(paths: list[str], previous: FileScan | None) -> list[tuple[str, str]]:
    """(image, label_paths_text of it) for every path. When the cached scan lists exactly these images in this
    order (the usual warm start) its own rows are those pairs: its label paths are not worked out again, and as
    the strings are the cache's own objects, the scan's and the tables' checks that the order is unchanged
    compare them by identity."""
    if previous is not None:
        cached = previous.files["path"].tolist()
        if cached == paths:
            return list(zip(cached, previous.files["label_path"].tolist()))
    return list(zip(paths, label_paths_text(paths)))


def _fingerprint(scan_digest: bytes, listing: list[tuple[str, str]]) -> bytes:
    """What `images` and `boxes` are a function of, besides the config and the code: the scan and the listing."""
    digest = hashlib.sha256(b"index 2\0" + scan_digest)
    # The listing is grouped by split: each split's name, its image count and its paths.
    for split, entries in itertools.groupby(listing, key=_first):
        paths = [path for _, path in entries]
        digest.update(f"\1{split}\0{len(paths)}\0".encode("utf-8", "surrogateescape"))
        digest.update("\0".join(paths).encode("utf-8", "surrogateescape"))
    return digest.digest()


def _assemble(config: DatasetConfig, listing: list[tuple[str, str]], pairs: list[tuple[str, str]],
              scan: FileScan, files_read: int, skipped_links: list[tuple[str, str]] = ()) -> DatasetIndex:
    files = scan.files
    images_listed = list(map(_first, pairs))  # (the tables are built on every warm start: no per-row loops)
    labels_listed = list(map(_second, pairs))
    if files["path"].tolist() == images_listed:  # the usual case: one row per listed image, in order
        rows = np.arange(len(pairs), dtype=np.int64)
        per_image = files
    else:
        file_row = {path: row for row, path in enumerate(files["path"].tolist())}
        rows = np.array([file_row[image] for image in images_listed], dtype=np.int64)
        per_image = files.iloc[rows].reset_index(drop=True)

    split_type = pd.CategoricalDtype(list(config.splits))
    images = pd.DataFrame({
        "image_id": np.arange(len(listing)),
        "split": pd.Categorical.from_codes(_split_codes(listing, split_type), dtype=split_type),
        "image": _relative_paths(images_listed, config.root),
        "label": _relative_paths(labels_listed, config.root),
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
    problems = _problem_findings(config, images, per_image, scan, rows, boxes, skipped_links)
    return DatasetIndex(config, images, boxes, problems, files_read)


def _split_codes(listing: list[tuple[str, str]], split_type: pd.CategoricalDtype) -> np.ndarray:
    """Each listed image's split as a category code, a run at a time: the listing holds each split's images
    together."""
    position = {split: code for code, split in enumerate(split_type.categories)}
    runs = [(position[split], sum(1 for _ in run)) for split, run in itertools.groupby(listing, _first)]
    return np.repeat(np.array([code for code, _ in runs], dtype=np.int8),
                     np.array([count for _, count in runs], dtype=np.int64))


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
                      rows: np.ndarray, boxes: pd.DataFrame, skipped_links: list[tuple[str, str]]) -> pd.DataFrame:
    """Scan problems as findings, built column-wise with NumPy and one DataFrame at the end (this runs on every
    warm start)."""
    columns: dict[str, list] = {name: [] for name in FINDING_COLUMNS}

    def add(check: np.ndarray | str, ids: np.ndarray | None, line, message, with_label: bool = True,
            count: int | None = None) -> None:
        """Findings for images `ids` (None: not tied to an image, `count` of them); scalars are broadcast."""
        size = len(ids) if ids is not None else count
        if not size:
            return

        def column(value) -> np.ndarray:
            if isinstance(value, np.ndarray):
                return value.astype(object)
            array = np.empty(size, dtype=object)
            array[:] = [value] * size
            return array

        columns["check"].append(column(check))
        columns["severity"].append(column(CHECKS[check]) if isinstance(check, str)
                                   else np.array([CHECKS[c] for c in check], dtype=object))
        columns["split"].append(split_names[ids] if ids is not None else column(None))
        columns["image"].append(image_names[ids] if ids is not None else column(None))
        columns["label"].append(label_names[ids] if ids is not None and with_label else column(None))
        columns["line"].append(column(line))
        columns["message"].append(column(message))

    split_names = images["split"].astype(str).to_numpy(dtype=object)
    image_names = images["image"].to_numpy(dtype=object)
    label_names = images["label"].to_numpy(dtype=object)

    for finding in config.problems:
        record = finding.to_dict()
        for name in FINDING_COLUMNS:
            columns[name].append(np.array([record[name]], dtype=object))

    unreadable = np.flatnonzero(~images["readable"].to_numpy())
    if len(unreadable):
        corrupt_message = images["image_error"].to_numpy(dtype=object)[unreadable]
        for split_name, sources in config.splits.items():
            lists = ", ".join(s.name for s in sources if s.suffix.lower() == ".txt")
            if lists:
                missing = (corrupt_message == "file not found") & (split_names[unreadable] == split_name)
                corrupt_message[missing] = f"file not found (listed in {lists})"
        add("corrupt-image", unreadable, None, corrupt_message, with_label=False)

    label_error = per_image["label_error"].to_numpy(dtype=object)
    has_label_error = label_error != ""
    label_exists = images["label_exists"].to_numpy()
    errors = np.flatnonzero(has_label_error)
    add("malformed-line", errors, None, label_error[errors])
    add("missing-label", np.flatnonzero(~label_exists & ~has_label_error), None,
        "no label file: trained as a background image", with_label=False)
    add("empty-label", np.flatnonzero(label_exists & ~has_label_error & (per_image["label_lines"].to_numpy() == 0)),
        None, "empty label file: a background image")

    if len(scan.problems):
        # Each problem of a file, once per image listing that file (an image can be in two splits).
        by_file = np.argsort(rows, kind="stable")
        files = scan.problems["file"].to_numpy(dtype=np.int64)
        first = np.searchsorted(rows[by_file], files, side="left")
        listed = np.searchsorted(rows[by_file], files, side="right") - first
        problem = np.repeat(np.arange(len(files)), listed)
        within = np.arange(len(problem)) - np.repeat(np.cumsum(listed) - listed, listed)
        image_ids = by_file[np.repeat(first, listed) + within]
        lines = scan.problems["line"].to_numpy()[problem]
        order = np.lexsort((lines, image_ids))
        problem, image_ids, lines = problem[order], image_ids[order], lines[order]
        add(scan.problems["check"].to_numpy(dtype=object)[problem], image_ids, np.where(lines > 0, lines, None),
            scan.problems["message"].to_numpy(dtype=object)[problem])

    polygon = boxes["polygon"].to_numpy()
    if polygon.any():
        image_ids = boxes["image_id"].to_numpy()
        polygons = np.bincount(image_ids[polygon], minlength=len(images))
        totals = np.bincount(image_ids, minlength=len(images))
        first_line = np.full(len(images), np.iinfo(np.int64).max)
        np.minimum.at(first_line, image_ids[polygon], boxes["line"].to_numpy()[polygon].astype(np.int64))
        ids = np.flatnonzero(polygons)
        add("segment-label", ids, first_line[ids].astype(object),
            np.array([f"{n} polygon(s) converted to boxes" for n in polygons[ids]], dtype=object))
        mixed = ids[polygons[ids] < totals[ids]]
        add("mixed-label-types", mixed, None,
            np.array([f"{total - n} box(es) and {n} polygon(s) in one file"
                      for n, total in zip(polygons[mixed], totals[mixed])], dtype=object))

    # (joined first: an ASCII listing, the usual one, holds no undecodable name and needs no call per name)
    odd_names = np.zeros(0, dtype=np.int64) if "".join(image_names).isascii() else \
        np.flatnonzero([is_undecodable_name(name) for name in image_names])
    add("non-utf8-name", odd_names, None,
        np.array([f"file name is not valid UTF-8: {display_name(name)} (bytes shown as \\u escapes); other tools "
                  "may fail to open it, renaming it to UTF-8 avoids that" for name in image_names[odd_names]],
                 dtype=object), with_label=False)

    relative = _relative_to(config.root)
    for split, link in skipped_links:
        target = os.path.realpath(link)
        record = _record("symlink-loop", split, None, None, None,
                         f"{display_name(relative(link))} links to {display_name(relative(target))}, a directory "
                         "already scanned: not followed, so its images count once")
        for name, value in zip(FINDING_COLUMNS, record):
            columns[name].append(np.array([value], dtype=object))

    for record in _orphan_labels(config, images):
        for name, value in zip(FINDING_COLUMNS, record):
            columns[name].append(np.array([value], dtype=object))

    # dtype=object keeps None as None (pandas would otherwise infer its string dtype, with NaN for None).
    frame = pd.DataFrame({name: pd.Series(np.concatenate(parts) if parts else [], dtype=object)
                          for name, parts in columns.items()}, columns=FINDING_COLUMNS)
    frame["line"] = pd.array(frame["line"].tolist(), dtype="Int64")
    return frame


def _record(check: str, split: str | None, image: str | None, label: str | None, line: int | None,
            message: str) -> tuple:
    return check, CHECKS[check], split, image, label, line, message


def _orphan_labels(config: DatasetConfig, images: pd.DataFrame) -> list[tuple]:
    """Label files in the label folders of the dataset's images that belong to no image of any split."""
    known_names: dict[str, set[str]] = {}  # label folder -> names of the labels expected in it
    for path in images["label_path"].tolist():
        folder, _, name = path.rpartition(os.sep)
        names = known_names.get(folder)
        if names is None:
            names = known_names[folder] = set()
        names.add(name)
    candidates = []
    for folder in sorted(known_names):
        try:
            listed = os.listdir(folder)
        except OSError:
            continue
        # Set difference first: in a healthy dataset every name is a known label and nothing is left to check.
        unknown = set(listed).difference(known_names[folder])
        candidates.extend(sorted(f"{folder}{os.sep}{name}" for name in unknown if name.endswith(".txt")))
    if not candidates:
        return []
    split_lists = {str(s) for sources in config.splits.values() for s in sources}
    image_stems = _image_stems_in(images["path"].tolist(), {path.rpartition(os.sep)[0] for path in candidates})
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


def _image_stems_in(paths: list[str], folders: set[str]) -> set[str]:
    """Paths without their extension (images always have one), of the images under `folders` only: a label
    file is an image's own only when it sits next to it, and testing a prefix is cheaper than cutting every
    path."""
    prefixes = tuple(f"{folder}{os.sep}" for folder in folders)
    return {path.rpartition(".")[0] for path in paths if path.startswith(prefixes)}


def _relative_paths(paths: list[str], root: Path) -> list[str]:
    """_relative_to for a whole column at once (no function call per path)."""
    root_text = str(root) + os.sep
    cut = len(root_text)
    if os.sep == "/":
        return [path[cut:] if path.startswith(root_text) else path for path in paths]
    return [path[cut:].replace(os.sep, "/") if path.startswith(root_text) else path for path in paths]


def _relative_to(root: Path) -> Callable[[str], str]:
    root_text = str(root) + os.sep

    def relative(path: str) -> str:
        return path[len(root_text):].replace(os.sep, "/") if path.startswith(root_text) else path

    return relative
