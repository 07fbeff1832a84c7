"""run_audit: every check of design.md section 2 over a dataset index, as one AuditResult.

The index already holds what scanning the files found (corrupt images, unparsable lines, missing / empty /
orphan labels, polygons, names problems). This adds the checks that need the parsed tables as a whole, all as
table operations so an audit from a warm cache takes a fraction of a second for 10k images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dataset_doctor.audit.box_stats import box_stats_table, judged_boxes
from dataset_doctor.audit.checks_boxes import (
    box_error_findings,
    duplicate_box_findings,
    extreme_aspect_findings,
    tiny_box_findings,
)
from dataset_doctor.audit.checks_classes import TRAIN, class_counts_table, class_findings, split_instances
from dataset_doctor.audit.checks_images import duplicate_image_findings, duplicate_image_pairs, huge_image_findings
from dataset_doctor.audit.checks_predictions import AuditPredictions, label_error_findings, label_suspects
from dataset_doctor.audit.checks_shift import scale_shift_findings, scale_shift_table
from dataset_doctor.audit.finding_table import concat_findings
from dataset_doctor.audit.options import AuditOptions
from dataset_doctor.audit.rebalanced import RebalanceOrigin, rebalance_table
from dataset_doctor.audit.result import AuditResult
from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.findings import CHECKS
from dataset_doctor.gc_pause import gc_paused
from dataset_doctor.weights import compute_class_weights

SPLIT_SUMMARY_COLUMNS = ["split", "images", "readable", "backgrounds", "label_files", "boxes", "instances",
                         "unusable_boxes"]


def run_audit(index: DatasetIndex, options: AuditOptions | None = None,
              predictions: AuditPredictions | None = None, origin: RebalanceOrigin | None = None) -> AuditResult:
    """Audit an indexed dataset. Reads nothing from disk: everything comes from the index, the label-error
    checks from `predictions` (checks_predictions.read_audit_predictions) and, for a `doctor rebalance` output,
    its rebalance.json from `origin` (rebalanced.read_rebalance_origin), when given."""
    with gc_paused():
        return _run_audit(index, options or AuditOptions(), predictions, origin)


def _run_audit(index: DatasetIndex, options: AuditOptions, predictions: AuditPredictions | None,
               origin: RebalanceOrigin | None = None) -> AuditResult:
    images, boxes, names, splits = index.images, index.boxes, list(index.names), index.splits
    errors, usable, geometry = judged_boxes(index, options)
    valid = errors == ""
    labels = images["label"].to_numpy()

    parts = [index.problems[~index.problems["check"].isin(options.ignore)]]
    parts.append(box_error_findings(boxes[~valid], labels, errors[~valid], index.nc, options))
    if options.runs("duplicate-box"):
        parts.append(duplicate_box_findings(boxes[valid], labels, options))
    if options.runs("tiny-box"):
        parts.append(tiny_box_findings(geometry, labels, options))
    if options.runs("extreme-aspect"):
        parts.append(extreme_aspect_findings(geometry, labels, options))

    class_counts = class_counts_table(usable, splits, names)
    parts.append(class_findings(class_counts, names, options))
    pairs = duplicate_image_pairs(images, options)
    parts.append(duplicate_image_findings(pairs, options))
    if options.runs("huge-image"):
        parts.append(huge_image_findings(images, options))
    shift = scale_shift_table(geometry, names, options, train_sources=None if origin is None else origin.before)
    if options.runs("scale-shift"):
        parts.append(scale_shift_findings(shift, options))
    suspects = label_suspects(index, usable, predictions) if predictions is not None else None
    if suspects is not None:
        parts.append(label_error_findings(suspects, options))

    return AuditResult(
        dataset=str(index.config.yaml_path), root=str(index.root), classes=names, splits=splits, options=options,
        findings=_ordered(concat_findings(parts), splits),
        split_summary=_split_summary(images, boxes, usable, splits),
        class_counts=class_counts,
        class_weights=compute_class_weights(split_instances(class_counts, TRAIN), names),
        box_geometry=geometry, box_stats=box_stats_table(geometry, splits, names), duplicate_pairs=pairs,
        scale_shift=shift, files_read=index.files_read, label_suspects=suspects,
        rebalance=None if origin is None else rebalance_table(origin, names, split_instances(class_counts, TRAIN)),
        rebalance_method=None if origin is None else origin.method,
    )


def _split_summary(images: pd.DataFrame, boxes: pd.DataFrame, usable: pd.DataFrame, splits: list[str]) -> pd.DataFrame:
    count = len(splits)
    image_split = images["split"].cat.codes.to_numpy()
    has_usable = np.zeros(len(images), dtype=bool)
    has_usable[usable["image_id"].to_numpy()] = True
    readable = images["readable"].to_numpy()

    def per_split(codes: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(codes if mask is None else codes[mask], minlength=count)

    box_counts = per_split(boxes["split"].cat.codes.to_numpy())
    instances = per_split(usable["split"].cat.codes.to_numpy())
    return pd.DataFrame({
        "split": splits, "images": per_split(image_split), "readable": per_split(image_split, readable),
        "backgrounds": per_split(image_split, readable & ~has_usable),
        "label_files": per_split(image_split, images["label_exists"].to_numpy()),
        "boxes": box_counts, "instances": instances, "unusable_boxes": box_counts - instances,
    }, columns=SPLIT_SUMMARY_COLUMNS)


def _ordered(findings: pd.DataFrame, splits: list[str]) -> pd.DataFrame:
    """Checks in design.md order, then split order, file and line."""
    check_rank = {check: rank for rank, check in enumerate(CHECKS)}
    split_rank = {split: rank for rank, split in enumerate(splits)}
    keys = [findings["line"].fillna(0).to_numpy(dtype=np.int64)]
    for column in ("label", "image"):
        keys.append(pd.factorize(findings[column].fillna("").to_numpy(dtype=object), sort=True)[0])
    keys.append(findings["split"].map(split_rank).fillna(len(splits)).to_numpy())
    keys.append(findings["check"].map(check_rank).to_numpy())
    return findings.iloc[np.lexsort(keys)].reset_index(drop=True)
