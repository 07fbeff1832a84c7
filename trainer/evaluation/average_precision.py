"""Per-class AP (101-point interpolated, COCO), the PR curve at IoU 0.5, and P/R at the best-F1 confidence.

COCOeval.accumulate, per class: concatenate the kept detections of all images (images in id order, each image's
detections by descending score), stable-sort them by descending score, then cumulate true and false positives.
Precision is tp / (tp + fp + eps) and recall tp / (ground-truth boxes); precision is replaced by its envelope
(the maximum precision at any higher recall), then sampled at the 101 recall points 0, 0.01, ..., 1 by
`searchsorted(recall, point, side="left")`; points beyond the last reached recall count as precision 0.
AP is the mean of those 101 samples (COCO 2014 protocol; see Lin et al., "Microsoft COCO", 2014, and the
pycocotools source). A class without ground-truth boxes has no AP (COCO stores -1 and leaves it out of the mean).

Precision and recall are also reported at one operating point per class, the confidence threshold that maximises
F1 = 2PR / (P + R) on the class's IoU-0.5 curve, as YOLO tools report P and R. Only thresholds between distinct
scores are considered (a threshold cannot split detections with equal scores); on a tie in F1 the higher
confidence wins. These use the same detections as AP (top 100 per image and class).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.evaluation.protocol import RECALL_GRID


@dataclass(frozen=True)
class ClassCurves:
    """Per-class results; NaN for classes without ground truth."""

    ap: np.ndarray  # (nc, T): AP at each IoU threshold
    pr_curve: np.ndarray  # (nc, R): interpolated precision at the recall grid, first IoU threshold (0.5)
    precision: np.ndarray  # (nc,): at the best-F1 confidence, first IoU threshold
    recall: np.ndarray  # (nc,)
    f1: np.ndarray  # (nc,)
    confidence: np.ndarray  # (nc,): the best-F1 threshold (NaN when the class has no detections)


def accumulate(classes: np.ndarray, scores: np.ndarray, images: np.ndarray, ranks: np.ndarray, matched: np.ndarray,
               truth_counts: np.ndarray, recall_grid: np.ndarray = RECALL_GRID) -> ClassCurves:
    """Build ClassCurves from the kept detections (one row each) and the ground-truth box count per class."""
    num_classes, num_thresholds = len(truth_counts), matched.shape[1]
    # COCO order within a class: descending score, ties by image order, then by rank inside the image.
    order = np.lexsort((ranks, images, -scores, classes))
    sorted_classes, sorted_scores, sorted_matched = classes[order], scores[order], matched[order]
    bounds = np.searchsorted(sorted_classes, np.arange(num_classes + 1))

    ap = np.full((num_classes, num_thresholds), np.nan)
    pr_curve = np.full((num_classes, len(recall_grid)), np.nan)
    best = np.full((4, num_classes), np.nan)  # precision, recall, f1, confidence
    for class_id in np.flatnonzero(truth_counts > 0):
        low, high = bounds[class_id], bounds[class_id + 1]
        curves = _class_curves(sorted_matched[low:high], int(truth_counts[class_id]), recall_grid)
        ap[class_id] = curves.mean(axis=1)
        pr_curve[class_id] = curves[0]
        best[:, class_id] = _best_f1_point(sorted_matched[low:high, 0], sorted_scores[low:high],
                                           int(truth_counts[class_id]))
    return ClassCurves(ap=ap, pr_curve=pr_curve, precision=best[0], recall=best[1], f1=best[2], confidence=best[3])


def _class_curves(matched: np.ndarray, truth_count: int, recall_grid: np.ndarray) -> np.ndarray:
    """(T, R) interpolated precision of one class's score-sorted detections, exactly as COCOeval.accumulate."""
    num_detections, num_thresholds = matched.shape
    samples = np.zeros((num_thresholds, len(recall_grid)))
    if not num_detections:
        return samples
    true_positives = np.cumsum(matched, axis=0).astype(np.float64)
    false_positives = np.cumsum(~matched, axis=0).astype(np.float64)
    recall = true_positives / truth_count
    precision = true_positives / (false_positives + true_positives + np.spacing(1))
    envelope = np.maximum.accumulate(precision[::-1], axis=0)[::-1]
    for threshold in range(num_thresholds):
        where = np.searchsorted(recall[:, threshold], recall_grid, side="left")
        reached = where < num_detections
        samples[threshold, reached] = envelope[where[reached], threshold]
    return samples


def _best_f1_point(matched: np.ndarray, scores: np.ndarray, truth_count: int) -> tuple[float, float, float, float]:
    """(precision, recall, f1, confidence) at the score threshold maximising F1 (zeros when nothing is detected)."""
    if not len(matched):
        return 0.0, 0.0, 0.0, float("nan")
    cut = np.r_[scores[1:] != scores[:-1], True]  # last detection of each run of equal scores
    true_positives = np.cumsum(matched)[cut].astype(np.float64)
    kept = (np.flatnonzero(cut) + 1).astype(np.float64)  # detections at or above each threshold
    precision, recall = true_positives / kept, true_positives / truth_count
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=precision + recall > 0)
    best = int(np.argmax(f1))  # first maximum: the highest confidence among equals
    return float(precision[best]), float(recall[best]), float(f1[best]), float(scores[cut][best])
