"""run_classify_audit: the audit of a folder-per-class dataset, as the same AuditResult detection audits give.

The scan (dataset/classify_index.py) already found corrupt images, non-image files and images outside class
folders. This adds the checks that need the tables as a whole, reusing the detection checks where the question
is the same:
- unused-class / missing-in-val: a class folder with no readable image in train (present only in val or test),
  or with train images and none in val;
- class-imbalance / few-instances: on images per class (an image is one instance of its class);
- duplicate-image / split-leak: checks_images.duplicate_image_pairs unchanged (content hash and pHash groups);
  a duplicate filed under another class says so, since then one of the two labels is wrong;
- tiny-image: a short side under `tiny_image_px`;
- color-mode-mix: images whose colour mode differs from the one most readable images of their split have;
- size-shift: per class, the KS test of checks_shift on image area (train vs val), same guards as scale-shift.

Boxes do not exist here: box_geometry and box_stats are empty tables, and each image counts as one instance in
split_summary and class_counts, so the terminal summary, JSON and report read the result unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dataset_doctor.audit.checks_classes import CLASS_COUNT_COLUMNS, CLASSIFY_WORDING, TRAIN, class_findings
from dataset_doctor.audit.checks_images import duplicate_image_findings, duplicate_image_pairs
from dataset_doctor.audit.checks_shift import scale_shift_table
from dataset_doctor.audit.finding_table import concat_findings, finding_rows
from dataset_doctor.audit.options import AuditOptions
from dataset_doctor.audit.result import AuditResult
from dataset_doctor.audit.runner import SPLIT_SUMMARY_COLUMNS, _ordered
from dataset_doctor.dataset.classify_index import TASK_CLASSIFY, ClassifyIndex
from dataset_doctor.gc_pause import gc_paused
from dataset_doctor.weights import compute_class_weights

_COLOR_WORDS = {"gray": "grayscale", "gray-alpha": "grayscale with alpha", "rgb": "RGB", "rgba": "RGBA",
                "palette": "palette", "cmyk": "CMYK"}


def run_classify_audit(index: ClassifyIndex, options: AuditOptions | None = None) -> AuditResult:
    """Audit an indexed classification dataset. Reads nothing from disk."""
    options = options or AuditOptions()
    with gc_paused():
        return _run(index, options)


def _run(index: ClassifyIndex, options: AuditOptions) -> AuditResult:
    images, names, splits = index.images, list(index.names), index.splits
    readable = images[images["readable"]]
    parts = [index.problems[~index.problems["check"].isin(options.ignore)]]

    counts = class_image_counts(images, splits, names)
    parts.append(_class_findings(counts, names, options))
    pairs = duplicate_image_pairs(images, options)
    parts.append(_with_class_conflicts(duplicate_image_findings(pairs, options), pairs, images))
    if options.runs("tiny-image"):
        parts.append(tiny_image_findings(readable, options))
    if options.runs("color-mode-mix"):
        parts.append(color_mode_findings(readable))
    geometry = pd.DataFrame({"split": readable["split"].astype(str).to_numpy(),
                             "cls": readable["class_id"].to_numpy(),
                             "area_imgsz": (readable["width"] * readable["height"]).to_numpy(dtype=float)})
    shift = scale_shift_table(geometry, names, options)
    if options.runs("size-shift"):
        parts.append(size_shift_findings(shift))

    train = counts.loc[counts["split"] == TRAIN, "instances"].to_numpy()
    return AuditResult(
        dataset=index.source, root=str(index.root), classes=names, splits=splits, options=options,
        findings=_ordered(concat_findings(parts), splits), split_summary=_split_summary(images, splits),
        class_counts=counts, class_weights=compute_class_weights(train, names),
        box_geometry=pd.DataFrame(columns=["split", "cls"]), box_stats=pd.DataFrame(columns=["class_id"]),
        duplicate_pairs=pairs, scale_shift=shift, files_read=index.files_read, task=TASK_CLASSIFY,
    )


def class_image_counts(images: pd.DataFrame, splits: list[str], names: list[str]) -> pd.DataFrame:
    """CLASS_COUNT_COLUMNS per split and class: readable images (as both `images` and `instances`), share."""
    nc = len(names)
    rows = images[images["readable"]]
    slot = rows["split"].cat.codes.to_numpy(dtype=np.int64) * nc + rows["class_id"].to_numpy(dtype=np.int64)
    counts = np.bincount(slot, minlength=len(splits) * nc)
    totals = np.repeat(counts.reshape(len(splits), nc).sum(axis=1), nc)
    return pd.DataFrame({"split": np.repeat(splits, nc), "class_id": np.tile(np.arange(nc), len(splits)),
                         "class": np.tile(np.asarray(names, dtype=object), len(splits)), "images": counts,
                         "instances": counts, "share": counts / np.maximum(totals, 1)}, columns=CLASS_COUNT_COLUMNS)


def _class_findings(counts: pd.DataFrame, names: list[str], options: AuditOptions) -> pd.DataFrame:
    """The detection audit's class checks, counted in images and spoken of as accuracy."""
    return class_findings(counts, names, options, CLASSIFY_WORDING)


def _with_class_conflicts(findings: pd.DataFrame, pairs: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Duplicate findings whose match is filed under another class say so: one of the two labels is wrong."""
    if findings.empty or pairs.empty:
        return findings
    cls = images["class"].to_numpy(dtype=object)
    other = {(split, image): (cls[a], cls[b]) for split, image, a, b in
             zip(pairs["split_b"], pairs["image_b"], pairs["image_id_a"], pairs["image_id_b"])}
    messages = []
    for split, image, message in zip(findings["split"], findings["image"], findings["message"]):
        classes = other.get((split, image))
        if classes is not None and classes[0] != classes[1]:
            message = f"{message}; filed as '{classes[1]}' here and '{classes[0]}' there: one label is wrong"
        messages.append(message)
    findings = findings.copy()
    findings["message"] = messages
    return findings


def tiny_image_findings(readable: pd.DataFrame, options: AuditOptions) -> pd.DataFrame:
    short = np.minimum(readable["width"].to_numpy(), readable["height"].to_numpy())
    tiny = readable[short < options.tiny_image_px]
    return finding_rows("tiny-image", split=tiny["split"].astype(str).to_numpy(), image=tiny["image"].to_numpy(),
                        message=[f"{w}x{h} px, under {options.tiny_image_px} px on the short side "
                                 f"(--tiny-image-px): upscaled to --imgsz {options.imgsz} it is mostly blur"
                                 for w, h in zip(tiny["width"], tiny["height"])])


def color_mode_findings(readable: pd.DataFrame) -> pd.DataFrame:
    """One finding per image whose header's colour mode is not its split's most common (unknown modes aside)."""
    parts = []
    for split, rows in readable.groupby("split", observed=True, sort=False):
        known = rows[rows["color"] != "unknown"]
        modes = known["color"].value_counts()
        if len(modes) < 2:
            continue
        usual = str(modes.index[0])
        odd = known[known["color"] != usual]
        parts.append(finding_rows("color-mode-mix", split=str(split), image=odd["image"].to_numpy(), message=[
            f"{_COLOR_WORDS.get(mode, mode)} image among {int(modes.iloc[0])} {_COLOR_WORDS.get(usual, usual)} "
            f"ones of {split}" for mode in odd["color"]]))
    return concat_findings(parts)


def size_shift_findings(table: pd.DataFrame) -> pd.DataFrame:
    flagged = table[table["flagged"]]
    return finding_rows("size-shift", split="val", message=[
        f"class '{row['class']}': median image side in val is {row['side_ratio']:.2f}x train's "
        f"({row['val_median_side']:.0f} vs {row['train_median_side']:.0f} px; KS D={row['statistic']:.2f}, "
        f"p={row['p_value']:.1e}, {row['train_instances']} train / {row['val_instances']} val images)"
        for _, row in flagged.iterrows()])


def _split_summary(images: pd.DataFrame, splits: list[str]) -> pd.DataFrame:
    codes = images["split"].cat.codes.to_numpy()
    listed = np.bincount(codes, minlength=len(splits))
    readable = np.bincount(codes[images["readable"].to_numpy()], minlength=len(splits))
    zeros = np.zeros(len(splits), np.int64)
    return pd.DataFrame({"split": splits, "images": listed, "readable": readable, "backgrounds": zeros,
                         "label_files": zeros, "boxes": listed, "instances": readable,
                         "unusable_boxes": listed - readable}, columns=SPLIT_SUMMARY_COLUMNS)
