"""COCO's greedy matching of detections to ground truth, vectorised across images and classes.

pycocotools (COCOeval.evaluateImg) works on one (image, class) at a time: it sorts the detections by score
(stable mergesort on -score, so ties keep their input order), keeps the first `maxDets`, and walks them in that
order; each takes the not-yet-matched ground-truth box of its class with the highest IoU >= the threshold (when
several share that IoU, the last in annotation order wins, because COCO's loop replaces on `>=`). Matching is
done independently at each IoU threshold.

Within one (image, class) the walk is sequential, but different (image, class) groups never interact. So we walk
*ranks*: step r handles the r-th detection of every group at once, with every (detection, ground truth) pair of
the group and all IoU thresholds as array columns. That is at most `max_detections` numpy steps whatever the
number of images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.evaluation.boxes import FlatBoxes, paired_iou
from trainer.evaluation.protocol import IOU_THRESHOLDS, MAX_DETECTIONS, effective_iou_thresholds


@dataclass(frozen=True)
class Matches:
    """The detections that take part in the evaluation and, per IoU threshold, whether each is a true positive."""

    detection: np.ndarray  # int64 (K,): row in the flat predictions
    rank: np.ndarray  # int64 (K,): rank by score within its (image, class), 0 = highest
    matched: np.ndarray  # bool (K, T): true positive at each IoU threshold


def rank_within_groups(group: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows sorted by (group, descending score), ties in input order, and each row's rank within its group."""
    order = np.lexsort((-score, group))  # np.lexsort is stable, like COCO's mergesort
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]]) if len(order) else \
        np.zeros(0, dtype=np.int64)
    lengths = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, lengths)
    return order, rank


def match_detections(ground_truth: FlatBoxes, predictions: FlatBoxes, num_classes: int,
                     max_detections: int = MAX_DETECTIONS, iou_thresholds: np.ndarray = IOU_THRESHOLDS) -> Matches:
    """Keep the top `max_detections` per (image, class) by score and match them as COCOeval does."""
    detection_group = predictions.image * num_classes + predictions.cls
    order, rank = rank_within_groups(detection_group, predictions.score)
    kept = rank < max_detections
    detection, rank = order[kept], rank[kept]
    group = detection_group[detection]

    # Ground truth grouped by (image, class), annotation order kept within a group (COCO visits it that way).
    truth_group = ground_truth.image * num_classes + ground_truth.cls
    truth_order = np.argsort(truth_group, kind="stable")
    sorted_truth_group = truth_group[truth_order]
    first = np.searchsorted(sorted_truth_group, group, side="left")
    counts = np.searchsorted(sorted_truth_group, group, side="right") - first

    # Every (detection, ground truth) pair of the same image and class, detection-major.
    pair_detection = np.repeat(np.arange(len(detection)), counts)
    pair_truth = first[pair_detection] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    iou = paired_iou(predictions.xywh[detection[pair_detection]], ground_truth.xywh[truth_order[pair_truth]])
    thresholds = effective_iou_thresholds(iou_thresholds)
    matched = _greedy_by_rank(pair_detection, pair_truth, iou, rank, len(detection), len(ground_truth), thresholds)
    return Matches(detection=detection, rank=rank, matched=matched)


def _greedy_by_rank(pair_detection: np.ndarray, pair_truth: np.ndarray, iou: np.ndarray, rank: np.ndarray,
                    num_detections: int, num_truths: int, thresholds: np.ndarray) -> np.ndarray:
    """COCO's per-group sequential walk, done rank by rank for all groups and thresholds at once."""
    detection_matched = np.zeros((num_detections, len(thresholds)), dtype=bool)
    truth_taken = np.zeros((num_truths, len(thresholds)), dtype=bool)
    if not len(iou):
        return detection_matched
    # Stable sort by rank: within one rank, each detection's pairs stay together and in annotation order.
    by_rank = np.argsort(rank[pair_detection], kind="stable")
    pair_detection, pair_truth, iou = pair_detection[by_rank], pair_truth[by_rank], iou[by_rank]
    pair_rank = rank[pair_detection]
    bounds = np.searchsorted(pair_rank, np.arange(pair_rank[-1] + 2))
    for low, high in zip(bounds[:-1], bounds[1:]):
        if low == high:
            continue
        detections, truths, ious = pair_detection[low:high], pair_truth[low:high], iou[low:high]
        # One rank holds at most one detection per group, so detections here never compete for a box.
        starts = np.flatnonzero(np.r_[True, detections[1:] != detections[:-1]])
        segment = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(detections)]))
        eligible = (ious[:, None] >= thresholds[None, :]) & ~truth_taken[truths]
        candidate = np.where(eligible, ious[:, None], -1.0)
        best = np.maximum.reduceat(candidate, starts, axis=0)
        is_best = eligible & (candidate == best[segment])
        # The last of equally good boxes wins, as in COCO's loop (it replaces its pick on IoU >= best so far).
        chosen = np.maximum.reduceat(np.where(is_best, np.arange(len(detections))[:, None], -1), starts, axis=0)
        rows, columns = np.nonzero(chosen >= 0)
        pairs = chosen[rows, columns]
        detection_matched[detections[pairs], columns] = True
        truth_taken[truths[pairs], columns] = True
    return detection_matched
