"""Folder-per-class classification datasets (ImageNet / YOLOv5-cls layout) -> an index of images per split and class.

The layout: `ROOT/train/<class>/*.jpg`, `ROOT/val/<class>/*.jpg` (`valid/` accepted, as Ultralytics does),
`ROOT/test/<class>/...` optional. Class names are the class folder names of all splits, sorted (the order
torchvision's ImageFolder and YOLOv5-cls give them); class ids follow that order. Taking the union of the
splits, not train's folders alone, keeps a class that only val has addressable, so the audit can report it.

Every file is read once, by bytes, through images.probe_image_bytes (the same decode, content hash and pHash as
the detection index, so duplicates and train/val leaks use the same near-duplicate search). The colour mode
(gray, RGB, RGBA, palette, CMYK) comes from the same bytes' header, without a second decode.

What does not fit the layout is reported, not silently dropped:
- corrupt-image: a file with an image extension that does not decode (error: training loses it);
- non-image-file: a file without an image extension inside a split (ImageFolder skips it);
- misplaced-image: an image at the root of a split (no class folder: training never sees it) or in a folder
  nested below a class folder (ImageFolder walks it and trains it as that class, which is rarely meant).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dataset_doctor.dataset.datayaml import IMAGE_EXTENSIONS, safe_load_bounded
from dataset_doctor.dataset.images import probe_image_bytes
from dataset_doctor.dataset.index import BOX_TABLE_COLUMNS, IMAGE_COLUMNS
from dataset_doctor.errors import DoctorError
from dataset_doctor.findings import display_name, findings_frame

TASK_CLASSIFY, TASK_DETECT = "classify", "detect"
TASKS = (TASK_CLASSIFY, TASK_DETECT)
# canonical split -> folder names accepted for it, first match wins
SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {"train": ("train",), "val": ("val", "valid"), "test": ("test",)}
CLASSIFY_IMAGE_COLUMNS = [*IMAGE_COLUMNS, "class_id", "class", "color"]
_YAML_NAMES = ("data.yaml", "data.yml")
_DETECT_MARKERS = ("images", "labels")  # a split folder holding these is the detection layout


@dataclass
class ClassifyIndex:
    """Every image of a folder-per-class dataset, plus what did not fit the layout.

    images: CLASSIFY_IMAGE_COLUMNS, one row per image inside a class folder (readable or not), ids in split order;
    `image` is the path relative to ROOT (as findings name it), `class_id` indexes `names`, `color` is the colour
    mode from the file header (gray, gray-alpha, rgb, rgba, palette, cmyk, unknown). boxes is empty (kept so the
    report pieces written for detection can take this index too). problems: findings met while scanning.
    """

    root: Path
    names: tuple[str, ...]
    splits: list[str]
    split_folders: dict[str, str]  # canonical split -> the folder it was read from (val may be 'valid')
    images: pd.DataFrame
    problems: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    boxes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BOX_TABLE_COLUMNS))
    files_read: int = 0

    @property
    def nc(self) -> int:
        return len(self.names)

    @property
    def source(self) -> str:
        """The dataset as the user named it in reports (the root folder)."""
        return str(self.root)

    def counts(self, split: str) -> np.ndarray:
        """Readable images per class in one split (zeros for a split the dataset lacks)."""
        images = self.images
        rows = images[(images["split"] == split) & images["readable"]]
        return np.bincount(rows["class_id"].to_numpy(dtype=np.int64), minlength=self.nc)


def classify_root(path: str | Path) -> Path | None:
    """The dataset root when `path` (a folder or its data.yaml) has the folder-per-class layout, else None.

    Folder-per-class: ROOT/train holds at least one folder and no images/ or labels/ folder (those mean the
    YOLO detection layout, ROOT/train/images).
    """
    path = Path(path).expanduser()
    root = _yaml_root(path) if path.is_file() else path
    if root is None or not root.is_dir():
        return None
    train = root / "train"
    if not train.is_dir():
        return None
    try:
        entries = list(os.scandir(train))
    except OSError:
        return None
    folders = [entry.name for entry in entries if _is_dir(entry)]
    if not folders or any(marker in folders for marker in _DETECT_MARKERS):
        return None
    return root


def detect_task(path: str | Path, task: str | None = None) -> tuple[str, str]:
    """(task, why): the task a command should run for `path`, and a sentence saying how it was chosen.

    `task` (the --task option) overrides the layout; `classify` on a folder without the layout is an error.
    """
    if task is not None and task not in TASKS:
        raise DoctorError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    root = classify_root(path)
    if task == TASK_DETECT:
        return TASK_DETECT, "task: detect (--task)"
    if task == TASK_CLASSIFY:
        if root is None:
            raise DoctorError("--task classify needs the folder-per-class layout ROOT/train/<class>/*.jpg "
                              "(and ROOT/val/<class>/...)", path)
        return TASK_CLASSIFY, "task: classify (--task)"
    if root is not None:
        return TASK_CLASSIFY, f"task: classify (detected: class folders in {display_name(str(root / 'train'))})"
    return TASK_DETECT, "task: detect (detected: no class folders under train/)"


def build_classify_index(path: str | Path, workers: int | None = None) -> ClassifyIndex:
    """Scan a folder-per-class dataset (ROOT or its data.yaml). Reads every file once; changes nothing."""
    root = classify_root(path)
    if root is None:
        raise DoctorError("not a folder-per-class dataset: expected ROOT/train/<class>/*.jpg", path)
    split_folders = {}
    for split, candidates in SPLIT_FOLDERS.items():
        found = next((name for name in candidates if (root / name).is_dir()), None)
        if found is not None:
            split_folders[split] = found
    splits = list(split_folders)
    notes = []
    if "val" not in split_folders:
        notes.append("no val/ (or valid/) folder: nothing to measure a classifier on")

    files: list[tuple[str, str, str | None, bool]] = []  # split, absolute path, class folder, nested
    problems: list[dict] = []
    class_names: set[str] = set()
    for split in splits:
        folder = root / split_folders[split]
        for entry in _sorted_entries(folder):
            if _is_dir(entry):
                class_names.add(entry.name)
                for file_path, nested in _walk_class(Path(entry.path)):
                    files.append((split, file_path, entry.name, nested))
            elif entry.is_file() and not entry.name.startswith("."):
                files.append((split, entry.path, None, False))
    names = tuple(sorted(class_names))
    class_ids = {name: k for k, name in enumerate(names)}

    images_to_probe = []
    for split, file_path, cls, nested in files:
        relative = os.path.relpath(file_path, root)
        if not _has_image_extension(file_path):
            problems.append(_problem("non-image-file", split, relative,
                                     "not an image file (no image extension): training skips it"))
            continue
        if cls is None:
            problems.append(_problem("misplaced-image", split, relative,
                                     f"image at the root of {split_folders[split]}/, outside any class folder: "
                                     "training never sees it; move it into its class folder"))
            continue
        if nested:
            problems.append(_problem("misplaced-image", split, relative,
                                     f"image in a folder nested inside class '{cls}': trained as '{cls}'; "
                                     "flatten the folder or make it a class of its own"))
        images_to_probe.append((split, relative, file_path, class_ids[cls]))

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        probes = list(pool.map(_probe, [item[2] for item in images_to_probe]))
    rows = []
    for image_id, ((split, relative, file_path, cls), (probe, color)) in enumerate(zip(images_to_probe, probes)):
        if probe.error is not None:
            problems.append(_problem("corrupt-image", split, relative, f"cannot be used: {probe.error}"))
        rows.append((image_id, split, relative, None, file_path, None, False, probe.width, probe.height,
                     probe.error is None, probe.error or "", probe.file_bytes, probe.content_hash, probe.phash,
                     probe.format, cls, names[cls], color))
    images = pd.DataFrame(rows, columns=CLASSIFY_IMAGE_COLUMNS)
    images["split"] = pd.Categorical(images["split"], categories=splits)
    images = images.astype({"image_id": np.int64, "width": np.int64, "height": np.int64, "readable": bool,
                            "file_bytes": np.int64, "class_id": np.int64, "label_exists": bool})
    return ClassifyIndex(root=root, names=names, splits=splits, split_folders=split_folders, images=images,
                         problems=findings_frame(problems), notes=notes, files_read=len(images_to_probe))


def header_color_mode(data: bytes) -> str:
    """The colour mode a file's header declares: gray, gray-alpha, rgb, rgba, palette, cmyk or unknown.

    PNG: the IHDR colour type (byte 25). JPEG: the number of components of the frame header (1 gray, 3 YCbCr,
    4 CMYK / YCCK). Other formats: unknown (not counted in the colour-mode mix).
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 25:
        return {0: "gray", 2: "rgb", 3: "palette", 4: "gray-alpha", 6: "rgba"}.get(data[25], "unknown")
    if data.startswith(b"\xff\xd8"):
        position = 2
        while position + 9 < len(data):
            if data[position] != 0xFF:
                position += 1
                continue
            marker = data[position + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                position += 1 if marker == 0xFF else 2
                continue
            length = int.from_bytes(data[position + 2:position + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return {1: "gray", 3: "rgb", 4: "cmyk"}.get(data[position + 9], "unknown")
            position += 2 + length
    return "unknown"


def _probe(path: str):
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        from dataset_doctor.dataset.images import ImageProbe

        return ImageProbe(0, 0, 0, "", "", "unknown", f"cannot read: {error.strerror or error}"), "unknown"
    return probe_image_bytes(data), header_color_mode(data)


def _problem(check: str, split: str, image: str, message: str) -> dict:
    from dataset_doctor.findings import CHECKS

    return {"check": check, "severity": CHECKS[check], "split": split, "image": image, "label": None,
            "line": None, "message": message}


def _walk_class(folder: Path) -> list[tuple[str, bool]]:
    """Every file below a class folder (not following links to folders already under it), nested or not."""
    found = []
    for directory, subdirs, filenames in os.walk(folder):
        subdirs[:] = sorted(name for name in subdirs if not name.startswith("."))
        nested = Path(directory) != folder
        found.extend((os.path.join(directory, name), nested) for name in sorted(filenames)
                     if not name.startswith("."))
    return found


def _sorted_entries(folder: Path) -> list[os.DirEntry]:
    try:
        return sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        raise DoctorError(f"cannot list the folder: {error.strerror or error}", folder) from None


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir() and not entry.name.startswith(".")
    except OSError:
        return False


def _has_image_extension(path: str) -> bool:
    return path.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS if "." in os.path.basename(path) else False


def _yaml_root(path: Path) -> Path | None:
    """The root a classification data.yaml names (its `path`, relative to the file) or the file's folder."""
    if path.name not in _YAML_NAMES and path.suffix.lower() not in (".yaml", ".yml"):
        return None
    try:
        data = safe_load_bounded(path.read_text(encoding="utf-8", errors="replace"), path)
    except (OSError, DoctorError, yaml.YAMLError, RecursionError):  # the detection path reports a bad file
        return None
    base = data.get("path") if isinstance(data, dict) else None
    if isinstance(base, str) and base:
        candidate = Path(base).expanduser()
        return candidate if candidate.is_absolute() else path.parent / candidate
    return path.parent
