"""Class-level checks on usable instance counts: unused-class, missing-in-val, class-imbalance, few-instances.

All counts are of usable boxes (no error on the line, on a readable image), the boxes training will see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dataset_doctor.audit.finding_table import concat_findings, finding_rows
from dataset_doctor.audit.options import AuditOptions

TRAIN, VAL = "train", "val"
CLASS_COUNT_COLUMNS = ["split", "class_id", "class", "images", "instances", "share"]


def class_counts_table(usable: pd.DataFrame, splits: list[str], names: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """Per split and class: images holding the class, usable instances, and the class's share of the split's
    instances."""
    nc, slots = len(names), len(splits) * len(names)
    split_codes = pd.Categorical(usable["split"], categories=splits).codes.astype(np.int64)
    cls = usable["cls"].to_numpy().astype(np.int64)
    slot = split_codes * nc + cls
    instances = np.bincount(slot, minlength=slots)
    # An image id belongs to one split, so (image, class) pairs identify "images holding the class".
    _, first = np.unique(usable["image_id"].to_numpy().astype(np.int64) * max(nc, 1) + cls, return_index=True)
    images = np.bincount(slot[first], minlength=slots)
    totals = np.repeat(instances.reshape(len(splits), nc).sum(axis=1), nc)
    share = instances / np.maximum(totals, 1)
    return pd.DataFrame({
        "split": np.repeat(splits, nc), "class_id": np.tile(np.arange(nc), len(splits)),
        "class": np.tile(np.asarray(names, dtype=object), len(splits)),
        "images": images, "instances": instances, "share": share,
    }, columns=CLASS_COUNT_COLUMNS)


def split_instances(counts: pd.DataFrame, split: str) -> np.ndarray:
    return counts.loc[counts["split"] == split, "instances"].to_numpy()


@dataclass(frozen=True)
class ClassWording:
    """How the class checks speak of a dataset: boxes ("instances", AP) or classified images (accuracy)."""

    unit: str = "instances"  # what is counted per class
    unused: str = "has no usable instance in train"  # why a class cannot be learnt
    metric: str = "AP"  # what a rare class makes weak and unmeasurable


DETECTION_WORDING = ClassWording()
CLASSIFY_WORDING = ClassWording("images", "has a folder but no readable train image", "accuracy")


def class_findings(counts: pd.DataFrame, names: list[str] | tuple[str, ...], options: AuditOptions,
                   wording: ClassWording = DETECTION_WORDING) -> pd.DataFrame:
    """unused-class, missing-in-val, class-imbalance and few-instances from per-split class counts (boxes for
    detection, images for classification: audit/classify.py passes CLASSIFY_WORDING)."""
    train = split_instances(counts, TRAIN)
    val = split_instances(counts, VAL)
    unit, metric = wording.unit, wording.metric
    parts = []
    if options.runs("unused-class"):
        unused = np.flatnonzero(train == 0)
        parts.append(finding_rows("unused-class", split=TRAIN, message=[
            f"class '{names[k]}' (id {k}) {wording.unused}: the model cannot learn it" for k in unused]))
    if options.runs("missing-in-val") and len(val):
        missing = np.flatnonzero((train > 0) & (val == 0))
        measured = "val AP" if metric == "AP" else metric
        parts.append(finding_rows("missing-in-val", split=VAL, message=[
            f"class '{names[k]}' has {train[k]} train {unit} and none in val: its {measured} cannot be measured"
            for k in missing]))
    present = np.flatnonzero(train > 0)
    if options.runs("class-imbalance") and len(present) >= 2:
        most = present[np.argmax(train[present])]
        least = present[np.argmin(train[present])]
        ratio = train[most] / train[least]
        if ratio > options.imbalance_ratio:
            parts.append(finding_rows("class-imbalance", split=TRAIN, message=[
                f"most frequent class '{names[most]}' has {train[most]} train {unit}, least frequent "
                f"'{names[least]}' {train[least]}: {ratio:.1f}x (above {options.imbalance_ratio:g}x); "
                "see doctor weights / doctor rebalance"]))
    if options.runs("few-instances"):
        few = np.flatnonzero((train > 0) & (train < options.min_instances))
        parts.append(finding_rows("few-instances", split=TRAIN, message=[
            f"class '{names[k]}' has {train[k]} train {unit} (fewer than {options.min_instances}): "
            f"expect a weak, unstable {metric} for it" for k in few]))
    return concat_findings(parts)
