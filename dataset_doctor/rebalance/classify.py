"""`doctor rebalance` for folder-per-class datasets: augmented copies of rare-class train images up to a target.

Each train class with fewer readable images than `target` gets new images, made from its own images in turn
(round robin, so every source image is copied about equally often) by the same mild, box-aware augmentation the
detection rebalance uses (augment.build_pipeline / augment_copy, with no boxes), at most `max_copies` new images
per source image. Everything else is copied as it is: val and test untouched, so their accuracy still measures
the real distribution. Output OUT/<split>/<class>/, written staged (atomic.staged_directory) after the same
destination checks (atomic.check_output_folder: never inside or around the source); rebalance_manifest.csv
lists every new image with its source and the transforms applied. Deterministic for a seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dataset_doctor.atomic import check_output_folder, csv_text, staged_directory
from dataset_doctor.dataset.classify_index import build_classify_index
from dataset_doctor.dataset.images import read_image_file
from dataset_doctor.errors import DoctorError
from dataset_doctor.rebalance import DEFAULT_MAX_COPIES
from dataset_doctor.rebalance.augment import augment_copy, build_pipeline
from dataset_doctor.split.output import place_image

MANIFEST = "rebalance_manifest.csv"


@dataclass
class ClassifyRebalanceResult:
    out: Path  # the written dataset (for a plan: the source root)
    names: list[str]
    before: list[int]  # readable train images per class
    after: list[int]
    written: int  # new images


def new_images_per_class(before: list[int], target: int, max_copies: int) -> list[int]:
    """How many augmented copies each class gets: up to `target`, at most `max_copies` per source image."""
    if target < 1:
        raise DoctorError("--target must be at least 1")
    return [min(max(target - count, 0), count * max_copies) for count in before]


def plan_classify(source: str | Path, target: int,
                  max_copies: int = DEFAULT_MAX_COPIES) -> ClassifyRebalanceResult:
    """What `rebalance_classify` would write, counted and nothing written (`doctor rebalance --dry-run`)."""
    index = build_classify_index(source)
    before = [int(count) for count in index.counts("train")]
    need = new_images_per_class(before, target, max_copies)
    return ClassifyRebalanceResult(index.root, list(index.names), before,
                                   [b + n for b, n in zip(before, need)], sum(need))


def rebalance_classify(source: str | Path, out: str | Path, target: int, seed: int = 0, flip: bool = True,
                       max_copies: int = DEFAULT_MAX_COPIES, force: bool = False) -> ClassifyRebalanceResult:
    if target < 1:
        raise DoctorError("--target must be at least 1")
    index = build_classify_index(source)
    destination = check_output_folder(out, force=force, source_folders=[index.root])
    images = index.images[index.images["readable"]].reset_index(drop=True)
    before = index.counts("train")
    needs = new_images_per_class([int(count) for count in before], target, max_copies)
    pipeline = build_pipeline(flip=flip)
    rows = []
    with staged_directory(destination, "rebalance") as staging:
        for path, relative in zip(images["path"], images["image"]):
            split_folder, rest = relative.split(os.sep, 1)
            canonical = next(s for s, folder in index.split_folders.items() if folder == split_folder)
            target_path = staging / canonical / rest
            target_path.parent.mkdir(parents=True, exist_ok=True)
            place_image(path, target_path, "copy")
        train = images[images["split"] == "train"]
        for cls, name in enumerate(index.names):
            sources = train[train["class_id"] == cls]
            count = len(sources)
            for number in range(needs[cls]):
                source_path = sources["path"].iloc[number % count]
                pixels = read_image_file(source_path)
                if pixels is None:
                    raise DoctorError("image can no longer be decoded (changed since the scan?)", source_path)
                copy = augment_copy(pipeline, pixels, np.zeros((0, 4)), np.zeros(0, np.int64),
                                    seed=int(np.random.SeedSequence([seed, cls, number]).generate_state(1)[0]))
                stem = Path(source_path).stem
                new = Path("train") / name / f"{stem}_aug{number // count}.jpg"
                (staging / new).write_bytes(cv2.imencode(".jpg", copy.image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1])
                rows.append([str(new), os.path.relpath(source_path, index.root), copy.transform])
        (staging / MANIFEST).write_text(csv_text(["image", "source", "transform"], rows), encoding="utf-8")
    after = [int(b) + sum(1 for row in rows if Path(row[0]).parts[1] == name)
             for b, name in zip(before, index.names)]
    return ClassifyRebalanceResult(destination, list(index.names), [int(b) for b in before], after, len(rows))
