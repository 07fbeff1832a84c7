"""What an evaluation produces, and its machine-readable forms (design.md section 3, run directory files)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.evaluation.protocol import IOU_THRESHOLDS, RECALL_GRID

BACKGROUND = "background"


@dataclass(frozen=True)
class EvaluationResult:
    """COCO-protocol metrics of one set of predictions on one split, per class and overall.

    Per-class values are NaN for classes without ground-truth boxes: their AP cannot be measured, and they are
    left out of every mean (as COCO does). Precision and recall are taken at each class's best-F1 confidence.
    """

    class_names: tuple[str, ...]
    images: int  # images evaluated
    instances: np.ndarray  # (nc,) ground-truth boxes per class
    images_with_class: np.ndarray  # (nc,) images holding at least one ground-truth box of the class
    predictions: np.ndarray  # (nc,) predictions per class, all of them (before the per-image cap)
    ap: np.ndarray  # (nc, T) AP at each of IOU_THRESHOLDS
    precision: np.ndarray  # (nc,) at the best-F1 confidence, IoU 0.5
    recall: np.ndarray  # (nc,)
    f1: np.ndarray  # (nc,)
    confidence: np.ndarray  # (nc,) the best-F1 confidence threshold
    pr_curves: np.ndarray  # (nc, 101) interpolated precision at RECALL_GRID, IoU 0.5
    confusion: np.ndarray  # (nc + 1, nc + 1) [predicted, true], background last
    confusion_conf: float  # confidence threshold of the confusion matrix
    confusion_iou: float  # IoU threshold of the confusion matrix

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def measurable(self) -> np.ndarray:
        """Classes with ground truth in this split: the only ones with an AP."""
        return self.instances > 0

    @property
    def ap50(self) -> np.ndarray:
        return self.ap[:, 0]

    @property
    def ap50_95(self) -> np.ndarray:
        return self.ap.mean(axis=1)

    @property
    def map50(self) -> float:
        return _mean_of_measurable(self.ap50, self.measurable)

    @property
    def map50_95(self) -> float:
        return _mean_of_measurable(self.ap50_95, self.measurable)

    @property
    def mean_precision(self) -> float:
        return _mean_of_measurable(self.precision, self.measurable)

    @property
    def mean_recall(self) -> float:
        return _mean_of_measurable(self.recall, self.measurable)

    @property
    def iou_thresholds(self) -> np.ndarray:
        return IOU_THRESHOLDS

    @property
    def recall_grid(self) -> np.ndarray:
        return RECALL_GRID

    @property
    def confusion_labels(self) -> tuple[str, ...]:
        """Row and column labels of `confusion`."""
        return (*self.class_names, BACKGROUND)

    def to_json(self) -> dict[str, Any]:
        """The `doctor evaluate --json` document (design.md section 3); null where a class has no ground truth."""
        return {
            "map50": _number(self.map50),
            "map50_95": _number(self.map50_95),
            "per_class": [{key: row[key] for key in ("class", "instances", "precision", "recall", "ap50", "ap50_95")}
                          for row in self.per_class_rows()],
        }

    def per_class_rows(self) -> list[dict[str, Any]]:
        """One dict per class in class order: per_class.csv's columns (without `split`), None where undefined."""
        return [{
            "class_id": class_id,
            "class": name,
            "images": int(self.images_with_class[class_id]),
            "instances": int(self.instances[class_id]),
            "precision": _number(self.precision[class_id]),
            "recall": _number(self.recall[class_id]),
            "ap50": _number(self.ap50[class_id]),
            "ap50_95": _number(self.ap50_95[class_id]),
        } for class_id, name in enumerate(self.class_names)]

    def pr_curves_json(self) -> dict[str, Any]:
        """The run directory's pr_curves.json: recall grid and, per measurable class, precision at IoU 0.5."""
        return {"recall": [float(value) for value in RECALL_GRID],
                "precision": {name: [float(value) for value in self.pr_curves[class_id]]
                              for class_id, name in enumerate(self.class_names) if self.measurable[class_id]}}


def _mean_of_measurable(values: np.ndarray, measurable: np.ndarray) -> float:
    return float(values[measurable].mean()) if measurable.any() else float("nan")


def _number(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
