"""Per-image box lists flattened into one table, and the IoU exactly as pycocotools computes it.

The public evaluation API takes one array per image (what NMS returns); everything inside works on flat arrays
with an image column, so 5,000 images cost a handful of numpy calls rather than 5,000 Python iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataset_doctor.dataset.box_rules import paired_iou as box_iou


@dataclass(frozen=True)
class FlatBoxes:
    """Boxes of many images, one row each. Order within an image is kept: it breaks ties as COCO does."""

    image: np.ndarray  # int64 (N,): position of the image in the evaluation order
    cls: np.ndarray  # int64 (N,)
    xywh: np.ndarray  # float64 (N, 4): left, top, width, height in pixels (COCO's bbox layout)
    score: np.ndarray  # float64 (N,): confidence (1 for ground truth)

    def __len__(self) -> int:
        return len(self.cls)


def flatten_ground_truth(per_image: Sequence[Any], num_classes: int) -> FlatBoxes:
    """Ground truth given per image as (m, 5) arrays [x1, y1, x2, y2, class] in pixels."""
    return _flatten(per_image, num_classes, width=5, score_column=None, class_column=4, what="ground truth")


def flatten_predictions(per_image: Sequence[Any], num_classes: int) -> FlatBoxes:
    """Predictions given per image as (n, 6) arrays [x1, y1, x2, y2, score, class] in pixels (NMS output)."""
    return _flatten(per_image, num_classes, width=6, score_column=4, class_column=5, what="predictions")


def _as_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor, possibly on the GPU; torch is not imported here
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def _flatten(per_image: Sequence[Any], num_classes: int, width: int, score_column: int | None, class_column: int,
             what: str) -> FlatBoxes:
    arrays = [_as_numpy(boxes) for boxes in per_image]
    arrays = [array.reshape(0, width) if array.size == 0 else array for array in arrays]  # [] or (0,) means none
    for position, array in enumerate(arrays):
        if array.ndim != 2 or array.shape[1] != width:
            raise ValueError(f"{what} of image {position}: expected shape (n, {width}), got {array.shape}")
    counts = np.array([len(array) for array in arrays], dtype=np.int64)
    table = np.concatenate(arrays) if arrays else np.zeros((0, width))
    if not np.isfinite(table).all():
        raise ValueError(f"{what}: values must be finite")
    classes = table[:, class_column]
    if len(classes) and (not np.array_equal(classes, np.round(classes)) or classes.min() < 0
                         or classes.max() >= num_classes):
        raise ValueError(f"{what}: class ids must be integers in [0, {num_classes})")
    x1, y1, x2, y2 = table[:, 0], table[:, 1], table[:, 2], table[:, 3]
    return FlatBoxes(
        image=np.repeat(np.arange(len(arrays), dtype=np.int64), counts),
        cls=classes.astype(np.int64),
        xywh=np.column_stack([x1, y1, x2 - x1, y2 - y1]),
        score=table[:, score_column] if score_column is not None else np.ones(len(table)),
    )


def paired_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU of first[i] with second[i] for (P, 4) xywh arrays, as pycocotools' `bbIou` (maskApi.c) computes it.

    Pixel boxes are taken as given (no +1 on sides), and boxes that only touch (overlap width or height <= 0)
    have IoU 0; union = area1 + area2 - intersection with area = w * h (box_rules.paired_iou, on corners).
    """
    return box_iou(_corners(first), _corners(second), first[:, 2] * first[:, 3], second[:, 2] * second[:, 3])


def _corners(xywh: np.ndarray) -> np.ndarray:
    return np.stack([xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]], axis=-1)
