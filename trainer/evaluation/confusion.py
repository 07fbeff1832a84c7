"""Detection confusion matrix with a background row and column.

At one confidence threshold and one IoU threshold, detections (score > conf) and ground-truth boxes of the same
image are paired one to one, class-agnostically, greedily by descending IoU (pairs need IoU >= the threshold):
the most overlapping pair is taken first, so a box labelled as the wrong class shows up as a confusion between
the two classes rather than as a miss plus a false positive. Unpaired detections land in the background column
(false alarms), unpaired ground truth in the background row (misses).

Layout as in the run directory's confusion_matrix.csv: rows = predicted class, columns = true class, index nc is
background; cell [background, background] stays 0.
"""

from __future__ import annotations

import numpy as np

from trainer.evaluation.boxes import FlatBoxes, paired_iou


def confusion_matrix(ground_truth: FlatBoxes, predictions: FlatBoxes, num_classes: int, conf_threshold: float = 0.25,
                     iou_threshold: float = 0.5) -> np.ndarray:
    """(nc + 1, nc + 1) int64 counts: [predicted class, true class], background last."""
    detection, truth_of_detection = pair_detections(ground_truth, predictions, conf_threshold, iou_threshold)
    background = num_classes
    predicted = predictions.cls[detection]
    paired = truth_of_detection >= 0
    truth_paired = np.zeros(len(ground_truth), dtype=bool)
    truth_paired[truth_of_detection[paired]] = True

    rows = np.concatenate([predicted, np.full(int((~truth_paired).sum()), background)])
    truth_class = np.full(len(detection), background, dtype=np.int64)
    truth_class[paired] = ground_truth.cls[truth_of_detection[paired]]
    columns = np.concatenate([truth_class, ground_truth.cls[~truth_paired]])
    size = num_classes + 1
    return np.bincount(rows * size + columns, minlength=size * size).reshape(size, size)


def pair_detections(ground_truth: FlatBoxes, predictions: FlatBoxes, conf_threshold: float = 0.25,
                    iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The confusion matrix's pairing, per box: the detections above conf_threshold (rows of `predictions`) and,
    for each, the ground-truth row it is paired with (-1: a false alarm). Reports use it to say which boxes of
    an image were missed, wrongly classified or false alarms, consistently with the matrix."""
    detection = np.flatnonzero(predictions.score > conf_threshold)
    return detection, _greedy_pairs(ground_truth, predictions, detection, iou_threshold)


def _greedy_pairs(ground_truth: FlatBoxes, predictions: FlatBoxes, detection: np.ndarray,
                  iou_threshold: float) -> np.ndarray:
    """For each selected detection, the ground-truth row it is paired with (-1: none).

    Greedy matching by descending IoU equals repeatedly taking every pair that is the best remaining pair of both
    its detection and its box (such a pair is never blocked by a better one), then dropping pairs that touch a
    taken detection or box; each round takes at least the best remaining pair, and rounds are array operations.
    """
    truth_of_detection = np.full(len(detection), -1, dtype=np.int64)
    truth_order = np.argsort(ground_truth.image, kind="stable")
    sorted_images = ground_truth.image[truth_order]
    detection_images = predictions.image[detection]
    first = np.searchsorted(sorted_images, detection_images, side="left")
    counts = np.searchsorted(sorted_images, detection_images, side="right") - first
    pair_detection = np.repeat(np.arange(len(detection)), counts)
    pair_truth = truth_order[first[pair_detection] + np.arange(counts.sum())
                             - np.repeat(np.cumsum(counts) - counts, counts)]
    iou = paired_iou(predictions.xywh[detection[pair_detection]], ground_truth.xywh[pair_truth])
    close = iou >= iou_threshold
    pair_detection, pair_truth, iou = pair_detection[close], pair_truth[close], iou[close]
    priority = np.lexsort((pair_truth, pair_detection, -iou))  # best first; ties by detection, then box order
    pair_detection, pair_truth = pair_detection[priority], pair_truth[priority]

    while len(pair_detection):
        best_for_detection = np.zeros(len(pair_detection), dtype=bool)
        best_for_detection[np.unique(pair_detection, return_index=True)[1]] = True
        best_for_truth = np.zeros(len(pair_detection), dtype=bool)
        best_for_truth[np.unique(pair_truth, return_index=True)[1]] = True
        take = best_for_detection & best_for_truth
        truth_of_detection[pair_detection[take]] = pair_truth[take]
        detection_taken = np.zeros(len(detection), dtype=bool)
        detection_taken[pair_detection[take]] = True
        truth_taken = np.zeros(len(ground_truth), dtype=bool)
        truth_taken[pair_truth[take]] = True
        remaining = ~detection_taken[pair_detection] & ~truth_taken[pair_truth]
        pair_detection, pair_truth = pair_detection[remaining], pair_truth[remaining]
    return truth_of_detection
