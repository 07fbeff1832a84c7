"""Which labels are probably wrong, judged against a detector's predictions: the matching engine.

Four kinds of suspect, each a row with a score in [0, 1] (higher = more likely a real error):

| check          | the signal                                                                                   |
|----------------|----------------------------------------------------------------------------------------------|
| missing-box    | a confident prediction overlapping no label of any class (IoU < missing_iou): nobody boxed it |
| wrong-class    | a label whose confident same-place predictions (IoU >= match_iou) all say another class       |
| mislocated-box | a label whose best confident same-class prediction overlaps it only partly                   |
| spurious-box   | a label with no prediction of any class, even at low confidence, anywhere near it             |

Why per-class confidence thresholds: detectors are less sure of rare classes, so one global threshold either
drowns the rare classes (too high: none of their predictions counts) or floods the common ones (too low).
The threshold of a class is read off the predictions themselves: for each label, the best confidence of a
same-class prediction on it (IoU >= match_iou); a low quantile of those is "how confident the model is when it
is right about this class". Overrides exist for users who know better.

Why a calibrated confidence: raw confidences of two classes are not comparable, and scores of four kinds end up
in one ranked list (what a person reads first). `calibrated(conf, thr)` maps the class threshold to 0.5, 0 to
0 and 1 to 1 (piecewise linear), and every score is built from it.

Duplicate predictions (NMS leftovers, or one object predicted as two classes) would turn one unlabelled object
into several missing-box rows: a prediction with a more confident prediction at IoU >= cluster_iou (any class)
in its image is only a duplicate and never a missing-box.

Everything is flat arrays with an image key: all label x prediction pairs of many images at once (groups of
whole images of about MAX_PAIRS pairs, so crowded datasets stay within memory), so 5,000 images of 30
predictions cost a few numpy passes rather than 5,000 Python iterations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dataset_doctor.dataset.box_rules import paired_iou  # the project's one numpy IoU (corners)

LABEL_ERROR_CHECKS = ("missing-box", "wrong-class", "mislocated-box", "spurious-box")
RESULT_COLUMNS = ["check", "image", "label_row", "prediction_row", "cls", "suggested_class", "score", "cx", "cy",
                  "w", "h", "iou", "confidence", "threshold", "own_confidence", "class_recall"]
_MIN_LABELS_FOR_QUANTILE = 5  # a class with fewer confident matches takes the pooled threshold
_FALLBACK_THRESHOLD = 0.25  # when no label of any class is matched (a model that found nothing)
MAX_PAIRS = 4_000_000  # label x prediction pairs held at once (a few hundred MB of temporaries)


@dataclass(frozen=True)
class LabelErrorOptions:
    """How the predictions are read against the labels. Defaults suit predictions made at conf 0.001-0.05."""

    match_iou: float = 0.5  # a prediction and a label are the same object at this IoU
    missing_iou: float = 0.3  # missing-box: a prediction overlapping every label less than this is unlabelled
    mislocated_min_iou: float = 0.2  # mislocated-box: below this, a prediction is another object, not this one
    near_iou: float = 0.1  # spurious-box: predictions overlapping a label at least this much are "near" it
    cluster_iou: float = 0.5  # duplicates: a prediction under a more confident one at this IoU is the same object
    quantile: float = 0.2  # per-class threshold: this quantile of the labels' best same-class confidences
    floor: float = 0.1  # per-class threshold: never below this
    ceiling: float = 0.9  # per-class threshold: never above this
    spurious_fraction: float = 0.5  # spurious-box: nothing nearby above this fraction of the class threshold
    confidence: float | None = None  # override: one threshold for every class
    class_confidence: Mapping[int, float] = field(default_factory=dict)  # override per class id (wins)

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_confidence", dict(self.class_confidence))
        checks = [
            (0 < self.match_iou <= 1, "match_iou must be in (0, 1]"),
            (0 < self.missing_iou <= self.match_iou, "missing_iou must be in (0, match_iou]"),
            (0 < self.mislocated_min_iou < self.match_iou, "mislocated_min_iou must be in (0, match_iou)"),
            (0 < self.near_iou <= self.mislocated_min_iou, "near_iou must be in (0, mislocated_min_iou]"),
            (0 < self.cluster_iou <= 1, "cluster_iou must be in (0, 1]"),
            (0 <= self.quantile <= 1, "quantile must be in [0, 1]"),
            (0 < self.floor <= self.ceiling < 1, "need 0 < floor <= ceiling < 1"),
            (0 < self.spurious_fraction <= 1, "spurious_fraction must be in (0, 1]"),
            (self.confidence is None or 0 < self.confidence < 1, "--confidence must be in (0, 1)"),
            (all(0 < value < 1 for value in self.class_confidence.values()),
             "--class-confidence thresholds must be in (0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                from dataset_doctor.errors import DoctorError

                raise DoctorError(message)


@dataclass(frozen=True)
class LabelErrors:
    """What the engine found: one row per suspect (RESULT_COLUMNS), plus the per-class statistics it used."""

    suspects: pd.DataFrame  # check, image key, label_row / prediction_row (-1: none), cls (-1: none), ...
    thresholds: np.ndarray  # (nc,) the confidence each class's predictions need to count as confident
    class_recall: np.ndarray  # (nc,) share of labels of the class with a confident same-class prediction on them


def calibrated(confidence: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """Confidence mapped so a class's threshold is 0.5 (0 -> 0, 1 -> 1, linear on either side)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    threshold = np.asarray(threshold, dtype=np.float64)
    below = 0.5 * confidence / threshold
    above = 0.5 + 0.5 * (confidence - threshold) / (1.0 - threshold)
    return np.clip(np.where(confidence < threshold, below, above), 0.0, 1.0)


def find_label_errors(label_image: np.ndarray, labels: np.ndarray, prediction_image: np.ndarray,
                      predictions: np.ndarray, num_classes: int,
                      options: LabelErrorOptions | None = None) -> LabelErrors:
    """Suspects among `labels` (N, 5) [class, cx, cy, w, h] given `predictions` (M, 6) [class, cx, cy, w, h,
    confidence], all normalized; `label_image` / `prediction_image` are integer image keys (which rows share an
    image). Rows refer back by position (label_row, prediction_row)."""
    options = options or LabelErrorOptions()
    labels = np.asarray(labels, dtype=np.float64).reshape(-1, 5)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1, 6)
    label_image = np.asarray(label_image, dtype=np.int64)
    prediction_image = np.asarray(prediction_image, dtype=np.int64)
    label_cls = labels[:, 0].astype(np.int64)
    # Crowded images (150 objects, 300 predictions each) make billions of pairs: images go in chunks of about
    # MAX_PAIRS pairs, so memory stays bounded whatever the dataset.
    chunks = image_chunks(label_image, prediction_image, MAX_PAIRS)

    # 1. The thresholds need every image: a first pass for each label's best same-class confidence on it.
    own_best = np.zeros(len(labels))
    for label_rows, prediction_rows in chunks:
        own_best[label_rows] = _own_best(labels[label_rows], label_image[label_rows], predictions[prediction_rows],
                                         prediction_image[prediction_rows], options)
    thresholds = class_thresholds(own_best, label_cls, num_classes, options)
    detected = own_best >= thresholds[label_cls]
    hits = np.bincount(label_cls[detected], minlength=num_classes)[:num_classes]
    totals = np.bincount(label_cls, minlength=num_classes)[:num_classes]
    class_recall = (hits + 0.5) / (totals + 1.0)  # smoothed: a class with 2 labels is not "always found"

    # 2. The suspects, chunk by chunk, with rows mapped back to the caller's positions.
    parts = [_rows("missing-box", *([np.zeros(0)] * 12))]  # an empty, well-typed table when nothing is found
    for label_rows, prediction_rows in chunks:
        found = _suspects(labels[label_rows], label_image[label_rows], predictions[prediction_rows],
                          prediction_image[prediction_rows], own_best[label_rows], thresholds, class_recall, options)
        found["label_row"] = _take(label_rows, found["label_row"].to_numpy(), -1)
        found["prediction_row"] = _take(prediction_rows, found["prediction_row"].to_numpy(), -1)
        parts.append(found)
    suspects = pd.concat(parts, ignore_index=True)
    suspects = suspects.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    return LabelErrors(suspects=suspects, thresholds=thresholds, class_recall=class_recall)


def image_chunks(label_image: np.ndarray, prediction_image: np.ndarray,
                 max_pairs: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(label rows, prediction rows) of groups of whole images holding about max_pairs label x prediction pairs
    each (an image larger than that is a group of its own)."""
    keys = np.union1d(label_image, prediction_image)
    if not len(keys):
        return []
    label_key, prediction_key = np.searchsorted(keys, label_image), np.searchsorted(keys, prediction_image)
    pairs = (np.bincount(label_key, minlength=len(keys)) * np.bincount(prediction_key, minlength=len(keys)))
    chunk_of_key = (np.cumsum(pairs) - pairs) // max(max_pairs, 1)  # by where an image's pairs start
    groups = []
    for rows_key in (label_key, prediction_key):
        chunk = chunk_of_key[rows_key]
        order = np.argsort(chunk, kind="stable")
        bounds = np.searchsorted(chunk[order], np.arange(int(chunk_of_key[-1]) + 2))
        groups.append([order[bounds[k]:bounds[k + 1]] for k in range(len(bounds) - 1)])
    return [(rows, other) for rows, other in zip(*groups) if len(rows) or len(other)]


def _own_best(labels: np.ndarray, label_image: np.ndarray, predictions: np.ndarray, prediction_image: np.ndarray,
              options: LabelErrorOptions) -> np.ndarray:
    """Per label, the best confidence of a same-class prediction on it (IoU >= match_iou), 0 if none."""
    pair_label, pair_prediction = same_image_pairs(label_image, prediction_image)
    same = labels[pair_label, 0] == predictions[pair_prediction, 0]
    pair_label, pair_prediction = pair_label[same], pair_prediction[same]
    matched = box_iou(labels[pair_label, 1:5], predictions[pair_prediction, 1:5]) >= options.match_iou
    return _max_at(len(labels), pair_label[matched], predictions[pair_prediction[matched], 5])


def _suspects(labels: np.ndarray, label_image: np.ndarray, predictions: np.ndarray, prediction_image: np.ndarray,
              own_best: np.ndarray, thresholds: np.ndarray, class_recall: np.ndarray,
              options: LabelErrorOptions) -> pd.DataFrame:
    """The four checks on a group of whole images (rows local to the group)."""
    label_cls = labels[:, 0].astype(np.int64)
    prediction_cls = predictions[:, 0].astype(np.int64)
    confidence = predictions[:, 5]
    n_labels, n_predictions = len(labels), len(predictions)
    label_threshold = thresholds[label_cls]
    prediction_threshold = thresholds[prediction_cls]
    confident = confidence >= prediction_threshold
    calibrated_confidence = calibrated(confidence, prediction_threshold)
    detected = own_best >= label_threshold

    # Every label x prediction pair of one image, with its IoU.
    pair_label, pair_prediction = same_image_pairs(label_image, prediction_image)
    pair_iou = box_iou(labels[pair_label, 1:5], predictions[pair_prediction, 1:5])
    same_class = label_cls[pair_label] == prediction_cls[pair_prediction]
    matched = pair_iou >= options.match_iou
    # A prediction matching a label of its own class is explained by that label, for every other label.
    owns = same_class & matched
    explained = np.zeros(n_predictions, dtype=bool)
    explained[pair_prediction[owns]] = True
    parts: list[pd.DataFrame] = []

    # wrong-class: confident other-class predictions on the label, unexplained by a label of their class, and
    # no confident own-class prediction on it.
    other = matched & ~same_class & confident[pair_prediction] & ~explained[pair_prediction]
    best_other = _argmax_at(n_labels, pair_label[other], calibrated_confidence[pair_prediction[other]])
    other_prediction = _take(pair_prediction[other], best_other, -1)
    wrong = (other_prediction >= 0) & ~detected
    wrong_rows = np.flatnonzero(wrong)
    wrong_predictions = other_prediction[wrong_rows]
    wrong_score = calibrated_confidence[wrong_predictions] - calibrated(own_best[wrong_rows],
                                                                        label_threshold[wrong_rows])
    parts.append(_rows("wrong-class", label_image[wrong_rows], wrong_rows, wrong_predictions,
                       label_cls[wrong_rows], prediction_cls[wrong_predictions], np.clip(wrong_score, 0, 1),
                       predictions[wrong_predictions, 1:5],
                       box_iou(labels[wrong_rows, 1:5], predictions[wrong_predictions, 1:5]),
                       confidence[wrong_predictions], prediction_threshold[wrong_predictions],
                       own_best[wrong_rows], class_recall[label_cls[wrong_rows]]))

    # mislocated-box: the best-overlapping confident same-class prediction overlaps only partly; a prediction
    # that matches another label of the class belongs to that one.
    owned_elsewhere = np.zeros(len(pair_label), dtype=bool)
    if owns.any():
        owner_count = np.bincount(pair_prediction[owns], minlength=n_predictions)
        owned_elsewhere = (owner_count[pair_prediction] - owns.astype(np.int64)) > 0  # by a label, not this one
    partial = (same_class & confident[pair_prediction] & ~owned_elsewhere
               & (pair_iou >= options.mislocated_min_iou))
    best_partial = _argmax_at(n_labels, pair_label[partial], pair_iou[partial])
    partial_prediction = _take(pair_prediction[partial], best_partial, -1)
    partial_iou = _take(pair_iou[partial], best_partial, 0.0)
    mislocated = (partial_prediction >= 0) & (partial_iou < options.match_iou) & ~detected & ~wrong
    moved_rows = np.flatnonzero(mislocated)
    moved_predictions = partial_prediction[moved_rows]
    moved_iou = partial_iou[moved_rows]
    moved_score = calibrated_confidence[moved_predictions] * (1.0 - moved_iou / options.match_iou)
    parts.append(_rows("mislocated-box", label_image[moved_rows], moved_rows, moved_predictions,
                       label_cls[moved_rows], label_cls[moved_rows], moved_score,
                       predictions[moved_predictions, 1:5], moved_iou, confidence[moved_predictions],
                       label_threshold[moved_rows], own_best[moved_rows], class_recall[label_cls[moved_rows]]))

    # spurious-box: nothing of any class near the label above a fraction of its class threshold.
    near = pair_iou >= options.near_iou
    nearby_best = _max_at(n_labels, pair_label[near], confidence[pair_prediction[near]])
    lonely = (nearby_best < options.spurious_fraction * label_threshold) & ~wrong & ~mislocated
    lonely_rows = np.flatnonzero(lonely)
    lonely_score = (1.0 - calibrated(nearby_best[lonely_rows], label_threshold[lonely_rows])) \
        * class_recall[label_cls[lonely_rows]]
    parts.append(_rows("spurious-box", label_image[lonely_rows], lonely_rows, np.full(len(lonely_rows), -1),
                       label_cls[lonely_rows], np.full(len(lonely_rows), -1), lonely_score,
                       labels[lonely_rows, 1:5], np.zeros(len(lonely_rows)), nearby_best[lonely_rows],
                       label_threshold[lonely_rows], own_best[lonely_rows], class_recall[label_cls[lonely_rows]]))

    # missing-box: confident, the best of its cluster, overlapping no label, not a mislocated proposal.
    label_overlap = _max_at(n_predictions, pair_prediction, pair_iou)
    candidate = confident & (label_overlap < options.missing_iou)
    candidate[moved_predictions] = False
    candidate &= ~suppressed_duplicates(prediction_image, predictions, confident, options.cluster_iou)
    new_boxes = np.flatnonzero(candidate)
    parts.append(_rows("missing-box", prediction_image[new_boxes], np.full(len(new_boxes), -1), new_boxes,
                       np.full(len(new_boxes), -1), prediction_cls[new_boxes], calibrated_confidence[new_boxes],
                       predictions[new_boxes, 1:5], label_overlap[new_boxes], confidence[new_boxes],
                       prediction_threshold[new_boxes], np.zeros(len(new_boxes)),
                       class_recall[prediction_cls[new_boxes]]))
    return pd.concat(parts, ignore_index=True)


def class_thresholds(own_best: np.ndarray, label_cls: np.ndarray, num_classes: int,
                     options: LabelErrorOptions) -> np.ndarray:
    """(nc,) confidence thresholds: the overrides, else a quantile of the labels' best same-class confidences
    (labels the model found at all), clipped to [floor, ceiling]; classes with too few such labels take the
    quantile of all classes pooled."""
    found = own_best > 0
    pooled = (float(np.quantile(own_best[found], options.quantile)) if found.sum() >= _MIN_LABELS_FOR_QUANTILE
              else _FALLBACK_THRESHOLD)
    thresholds = np.full(num_classes, pooled, dtype=np.float64)
    if found.any():
        order = np.lexsort((own_best[found], label_cls[found]))
        classes, values = label_cls[found][order], own_best[found][order]
        starts = np.searchsorted(classes, np.arange(num_classes), side="left")
        ends = np.searchsorted(classes, np.arange(num_classes), side="right")
        for cls in np.flatnonzero(ends - starts >= _MIN_LABELS_FOR_QUANTILE):  # one quantile per class: nc steps
            thresholds[cls] = np.quantile(values[starts[cls]:ends[cls]], options.quantile)
    thresholds = np.clip(thresholds, options.floor, options.ceiling)
    if options.confidence is not None:
        thresholds[:] = options.confidence
    for cls, value in options.class_confidence.items():
        if 0 <= cls < num_classes:
            thresholds[cls] = value
    return thresholds


def same_image_pairs(first_image: np.ndarray, second_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j) with first_image[i] == second_image[j], as two index arrays, without a Python loop."""
    first_order = np.argsort(first_image, kind="stable")
    second_order = np.argsort(second_image, kind="stable")
    keys = np.union1d(first_image, second_image)
    first_sorted, second_sorted = first_image[first_order], second_image[second_order]
    first_start = np.searchsorted(first_sorted, keys, side="left")
    first_count = np.searchsorted(first_sorted, keys, side="right") - first_start
    second_start = np.searchsorted(second_sorted, keys, side="left")
    second_count = np.searchsorted(second_sorted, keys, side="right") - second_start
    pair_count = first_count * second_count
    total = int(pair_count.sum())
    group = np.repeat(np.arange(len(keys)), pair_count)
    offset = np.arange(total) - np.repeat(np.cumsum(pair_count) - pair_count, pair_count)
    width = second_count[group]
    first = first_order[first_start[group] + offset // np.maximum(width, 1)]
    second = second_order[second_start[group] + offset % np.maximum(width, 1)]
    return first.astype(np.int64), second.astype(np.int64)


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of first[i] with second[i], both (P, 4) normalized [cx, cy, w, h] (via box_rules' IoU on corners)."""
    def corners(boxes: np.ndarray) -> np.ndarray:
        half = boxes[:, 2:4] / 2
        return np.concatenate([boxes[:, 0:2] - half, boxes[:, 0:2] + half], axis=1)

    first, second = first.reshape(-1, 4), second.reshape(-1, 4)
    return paired_iou(corners(first), corners(second), first[:, 2] * first[:, 3], second[:, 2] * second[:, 3])


def suppressed_duplicates(image: np.ndarray, predictions: np.ndarray, considered: np.ndarray,
                          cluster_iou: float) -> np.ndarray:
    """(M,) True for a considered prediction with a more confident considered prediction of its image (any
    class) at IoU >= cluster_iou: one object predicted twice. Ties go to the earlier row."""
    suppressed = np.zeros(len(predictions), dtype=bool)
    rows = np.flatnonzero(considered)
    if len(rows) < 2:
        return suppressed
    first, second = same_image_pairs(image[rows], image[rows])
    first, second = rows[first], rows[second]
    confidence = predictions[:, 5]
    stronger = (confidence[second] > confidence[first]) | ((confidence[second] == confidence[first])
                                                          & (second < first))
    first, second = first[stronger], second[stronger]
    overlap = box_iou(predictions[first, 1:5], predictions[second, 1:5]) >= cluster_iou
    suppressed[first[overlap]] = True
    return suppressed


def _max_at(size: int, index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per position 0..size-1, the largest value given for it (0 where none)."""
    result = np.zeros(size, dtype=np.float64)
    np.maximum.at(result, index, values)
    return result


def _argmax_at(size: int, index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per position 0..size-1, the position in `index` of its largest value (-1 where none)."""
    result = np.full(size, -1, dtype=np.int64)
    if not len(index):
        return result
    order = np.lexsort((-values, index))  # by position, then best first
    first = np.r_[True, index[order][1:] != index[order][:-1]]
    result[index[order][first]] = order[first]
    return result


def _take(values: np.ndarray, positions: np.ndarray, missing: float) -> np.ndarray:
    """values[positions], with `missing` where the position is -1."""
    result = np.full(len(positions), missing, dtype=values.dtype)
    found = positions >= 0
    result[found] = values[positions[found]]
    return result


def _rows(check: str, image, label_row, prediction_row, cls, suggested_class, score, box, iou, confidence,
          threshold, own_confidence, class_recall) -> pd.DataFrame:
    box = np.asarray(box, dtype=np.float64).reshape(-1, 4)
    return pd.DataFrame({
        "check": [check] * len(box), "image": np.asarray(image, dtype=np.int64),
        "label_row": np.asarray(label_row, dtype=np.int64), "prediction_row": np.asarray(prediction_row, np.int64),
        "cls": np.asarray(cls, dtype=np.int64), "suggested_class": np.asarray(suggested_class, dtype=np.int64),
        "score": np.asarray(score, dtype=np.float64), "cx": box[:, 0], "cy": box[:, 1], "w": box[:, 2],
        "h": box[:, 3], "iou": np.asarray(iou, dtype=np.float64), "confidence": np.asarray(confidence, np.float64),
        "threshold": np.asarray(threshold, dtype=np.float64),
        "own_confidence": np.asarray(own_confidence, dtype=np.float64),
        "class_recall": np.asarray(class_recall, dtype=np.float64),
    }, columns=RESULT_COLUMNS)
