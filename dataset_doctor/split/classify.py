"""`doctor split` for folder-per-class datasets: stratified by class, duplicates kept together.

Every readable image of every split is pooled; exact and near-duplicate images (near_duplicates.duplicate_groups,
the grouping the detection split uses) form one unit, so no copy of a picture can end up on both sides; units
are placed by the same iterative stratification (stratify.py) with a unit's per-class image counts as its
instance vector, so each class's images follow the ratios. Output: OUT/<split>/<class>/<file> (copied or
linked by output.place_image), written into a staging folder and renamed, with the same refusal rules for the
destination as the detection split (atomic.check_output_folder: never inside or around the source).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from dataset_doctor.atomic import check_output_folder, staged_directory
from dataset_doctor.audit.near_duplicates import NEAR_DUPLICATE_MAX_BITS, duplicate_groups
from dataset_doctor.dataset.classify_index import build_classify_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.split.output import place_image
from dataset_doctor.split.ratios import parse_ratios
from dataset_doctor.split.stratify import iterative_stratification


@dataclass
class ClassifySplitResult:
    out: Path
    splits: list[str]
    names: list[str]
    counts: dict[str, list[int]]  # split -> images per class
    groups_kept_together: int  # duplicate groups of two or more images
    notes: list[str] = field(default_factory=list)


def split_classify_dataset(source: str | Path, out: str | Path, ratios: str | list[float] = "0.8,0.2",
                           seed: int = 0, link: str = "copy", force: bool = False) -> ClassifySplitResult:
    """Split a folder-per-class dataset into OUT/<split>/<class>/; the source is never changed."""
    if link not in ("copy", "hardlink", "symlink"):
        raise DoctorError(f"--link must be copy, hardlink or symlink, got {link!r}")
    wanted = parse_ratios(ratios)
    split_names = [name for name, ratio in wanted.items() if ratio > 0]
    index = build_classify_index(source)
    destination = check_output_folder(out, force=force, source_folders=[index.root])
    images = index.images[index.images["readable"]].reset_index(drop=True)
    if images.empty:
        raise DoctorError("no readable image in a class folder to split", source)
    groups = duplicate_groups(images["content_hash"].tolist(), images["phash"].tolist(), NEAR_DUPLICATE_MAX_BITS)
    _, unit_of = np.unique(groups, return_inverse=True)
    units = int(unit_of.max()) + 1
    counts = sparse.coo_matrix((np.ones(len(images), np.int64), (unit_of, images["class_id"].to_numpy())),
                               shape=(units, index.nc)).tocsr()
    sizes = np.bincount(unit_of, minlength=units)
    split_of_unit = iterative_stratification(counts, [wanted[name] for name in split_names], seed, sizes=sizes)
    split_of = split_of_unit[unit_of]

    taken: set[str] = set()
    with staged_directory(destination, "split") as staging:
        for path, cls, source_split, split in zip(images["path"], images["class"], images["split"].astype(str),
                                                  split_of):
            name = os.path.basename(path)
            relative = f"{split_names[split]}/{cls}/{name}"
            if relative in taken:  # the same file name in two source splits of one class
                relative = f"{split_names[split]}/{cls}/{source_split}_{name}"
            taken.add(relative)
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            place_image(path, target, link)
    per_split = {name: np.bincount(images["class_id"].to_numpy()[split_of == k], minlength=index.nc).tolist()
                 for k, name in enumerate(split_names)}
    notes = []
    skipped = int((~index.images["readable"]).sum())
    if skipped:
        notes.append(f"{skipped} unreadable image(s) left out (see doctor audit)")
    return ClassifySplitResult(destination, split_names, list(index.names), per_split,
                               int((sizes > 1).sum()), notes)
