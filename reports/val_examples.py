"""The val images the model gets most wrong, with ground truth and predictions drawn.

Score of an image (higher = worse), at the thresholds of the run's confusion matrix (confidence > 0.25, IoU
0.5, the same one-to-one greedy pairing, `pair_detections`):
    missed boxes (ground truth without a paired detection)
  + false alarms (confident detections paired with no ground-truth box)
  + wrong classes (paired, but the detection's class is not the box's).
So a score counts the boxes a person would have to correct by hand; images tie-break on more missed boxes
first (a miss is usually what hurts), then by name, so the order is stable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.dataset.predictions import CLS, CONFIDENCE, CX, H, read_prediction_dir
from reports.thumbnails import GROUND_TRUTH, HIGHLIGHT, PREDICTION, DrawnBox, draw_boxes, load_thumbnail, placeholder
from trainer.evaluation.boxes import flatten_ground_truth, flatten_predictions
from trainer.evaluation.confusion import pair_detections
from trainer.evaluation.dataset import normalized_to_corners, split_ground_truth

CONFIDENCE_THRESHOLD = 0.25  # the confusion matrix's (evaluate_detections' default confusion_conf)
IOU_THRESHOLD = 0.5  # the confusion matrix's (evaluate_detections' default confusion_iou)
WRONG = (255, 0, 200)  # BGR magenta: a false alarm or a detection of the wrong class


@dataclass(frozen=True)
class ImageErrors:
    """One val image: its boxes in pixels with what went wrong with each."""

    image: str  # path relative to the dataset root
    path: str  # absolute path
    width: int
    height: int
    truth: np.ndarray  # (m, 5) [x1, y1, x2, y2, class]
    truth_missed: np.ndarray  # (m,) bool
    detections: np.ndarray  # (n, 6) [x1, y1, x2, y2, score, class], confident ones only
    detection_paired_class: np.ndarray  # (n,) class of the paired ground-truth box, -1 for a false alarm

    @property
    def missed(self) -> int:
        return int(self.truth_missed.sum())

    @property
    def false_alarms(self) -> int:
        return int((self.detection_paired_class < 0).sum())

    @property
    def wrong_class(self) -> int:
        paired = self.detection_paired_class >= 0
        return int((self.detection_paired_class[paired] != self.detections[paired, 5]).sum())

    @property
    def score(self) -> int:
        return self.missed + self.false_alarms + self.wrong_class

    def caption(self) -> str:
        return (f"{self.image}: {self.missed} missed, {self.false_alarms} false alarms, {self.wrong_class} wrong "
                f"class ({len(self.truth)} boxes)")


def score_val_images(index: DatasetIndex, predictions_dir: Path) -> list[ImageErrors]:
    """Every readable val image with its errors, worst first (see the module docstring)."""
    truth = split_ground_truth(index, "val")
    files = read_prediction_dir(predictions_dir, truth.images["stem"].tolist(), index.nc)
    widths, heights = truth.images["width"].to_numpy(), truth.images["height"].to_numpy()
    predictions = [np.column_stack([normalized_to_corners(rows[:, CX:H + 1], widths[i], heights[i]),
                                    rows[:, CONFIDENCE], rows[:, CLS]])
                   for i, rows in enumerate(files.per_image)]
    flat_truth = flatten_ground_truth(truth.boxes, index.nc)
    flat_predictions = flatten_predictions(predictions, index.nc)
    detection, truth_row = pair_detections(flat_truth, flat_predictions, CONFIDENCE_THRESHOLD, IOU_THRESHOLD)

    missed = np.ones(len(flat_truth), dtype=bool)
    missed[truth_row[truth_row >= 0]] = False
    paired_class = np.where(truth_row >= 0, flat_truth.cls[np.maximum(truth_row, 0)], -1)
    # Both flat tables list images in order, so each image's rows are one slice of them.
    positions = np.arange(len(truth.boxes) + 1)
    truth_start = np.searchsorted(flat_truth.image, positions)
    prediction_start = np.searchsorted(flat_predictions.image, positions)
    detection_start = np.searchsorted(flat_predictions.image[detection], positions)
    paths = index.images["path"].to_numpy()
    scored = []
    for position, row in enumerate(truth.images.itertuples(index=False)):
        mine = slice(detection_start[position], detection_start[position + 1])
        scored.append(ImageErrors(
            image=str(row.image), path=str(paths[row.image_id]), width=int(row.width), height=int(row.height),
            truth=truth.boxes[position], truth_missed=missed[truth_start[position]:truth_start[position + 1]],
            detections=predictions[position][detection[mine] - prediction_start[position]],
            detection_paired_class=paired_class[mine]))
    return sorted(scored, key=lambda e: (-e.score, -e.missed, e.image))


def draw_image_errors(errors: ImageErrors, names: Sequence[str], max_side: int = 480) -> np.ndarray:
    """The image with ground truth (green, red when missed) and detections (blue, magenta when wrong) drawn."""
    image = load_thumbnail(errors.path, max_side)
    if image is None:
        return placeholder("image not readable")
    boxes = []
    for (x1, y1, x2, y2, cls), was_missed in zip(errors.truth, errors.truth_missed):
        label = f"missed {_name(names, cls)}" if was_missed else ""
        boxes.append(_box(x1, y1, x2, y2, errors, label, HIGHLIGHT if was_missed else GROUND_TRUTH,
                          2 if was_missed else 1))
    for (x1, y1, x2, y2, score, cls), paired in zip(errors.detections, errors.detection_paired_class):
        if paired < 0:
            label, colour = f"false {_name(names, cls)} {score:.2f}", WRONG
        elif paired != cls:
            label, colour = f"{_name(names, cls)} {score:.2f} (is {_name(names, paired)})", WRONG
        else:
            label, colour = f"{_name(names, cls)} {score:.2f}", PREDICTION
        boxes.append(_box(x1, y1, x2, y2, errors, label, colour, 1))
    return draw_boxes(image, boxes)


def _box(x1: float, y1: float, x2: float, y2: float, errors: ImageErrors, label: str, colour: tuple[int, int, int],
         thickness: int) -> DrawnBox:
    width, height = max(errors.width, 1), max(errors.height, 1)
    return DrawnBox((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height, label,
                    colour, thickness)


def _name(names: Sequence[str], cls: float) -> str:
    index = int(cls)
    return names[index] if 0 <= index < len(names) else str(index)
