"""Evaluation on a dataset split: ground truth from the dataset index, predictions from files or a model.

Ground truth is every usable box of the split (the audit's definition: no error-level finding, on a readable
image), converted from normalized centre/size to pixel corners with the image's own width and height, because
pycocotools measures IoU in pixels. Unreadable images are left out (their size, and so their boxes, are unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.dataset.predictions import CLS, CONFIDENCE, CX, H, read_prediction_dir
from dataset_doctor.errors import DoctorError
from trainer.evaluation.evaluate import evaluate_detections
from trainer.evaluation.result import EvaluationResult


@dataclass(frozen=True)
class SplitGroundTruth:
    """The images of one split that can be evaluated, and their boxes in pixels."""

    split: str
    images: pd.DataFrame  # image_id (row in index.images), image (path relative to the root), stem, width, height
    boxes: list[np.ndarray]  # per image: (m, 5) [x1, y1, x2, y2, class] in pixels
    unreadable: int  # images of the split left out because they cannot be decoded


@dataclass(frozen=True)
class PredictionEvaluation:
    """`doctor evaluate`'s outcome: the metrics and what reading the prediction files met."""

    result: EvaluationResult
    ground_truth: SplitGroundTruth
    files_read: int  # prediction files matched to an image
    unmatched_files: list[str]  # prediction files named after no image of the split (ignored)


def split_ground_truth(index: DatasetIndex, split: str) -> SplitGroundTruth:
    """Usable boxes of `split` per readable image, in pixels. An image listed twice is evaluated once."""
    if split not in index.splits:
        raise DoctorError(f"no '{split}' split (this dataset has {', '.join(index.splits)})",
                          index.config.yaml_path)
    index.config.require_valid_names()
    listed = index.images_in(split)
    readable = listed[listed["readable"].to_numpy()]
    images = readable.drop_duplicates("path")
    stems = pd.Series([Path(path).stem for path in images["path"]], index=images.index)
    shared = stems.duplicated(keep=False)
    if shared.any():
        name = stems[shared].iloc[0]
        first, second = images.loc[stems.index[stems == name][:2], "image"]
        raise DoctorError(f"images '{first}' and '{second}' share the name '{name}': prediction files "
                          "are matched to images by name, so names must be unique within a split",
                          index.config.yaml_path)
    images = pd.DataFrame({"image_id": images["image_id"].to_numpy(), "image": images["image"].to_numpy(),
                           "stem": stems.to_numpy(), "width": images["width"].to_numpy(),
                           "height": images["height"].to_numpy()})

    position = np.full(len(index.images), -1, dtype=np.int64)
    position[images["image_id"].to_numpy()] = np.arange(len(images))
    boxes = index.usable_boxes(split)
    where = position[boxes["image_id"].to_numpy()]
    boxes = boxes[where >= 0]
    where = where[where >= 0]
    width, height = images["width"].to_numpy()[where], images["height"].to_numpy()[where]
    corners = normalized_to_corners(boxes[["cx", "cy", "w", "h"]].to_numpy(np.float64), width, height)
    table = np.column_stack([corners, boxes["cls"].to_numpy(np.float64)])
    return SplitGroundTruth(split=split, images=images, boxes=_split_by_image(table, where, len(images)),
                            unreadable=int((~listed["readable"]).sum()))


def evaluate_prediction_dir(index: DatasetIndex, split: str, directory: str | Path,
                            only_predicted: bool = False) -> PredictionEvaluation:
    """Evaluate YOLO txt predictions (one `<image stem>.txt` per image) against a split's ground truth.

    only_predicted: evaluate only the images that have a prediction file (a subset of the split was predicted,
    as `doctor diagnose --train-predictions` allows); otherwise an image without a file has no detections.
    """
    truth = split_ground_truth(index, split)
    if only_predicted:
        present = {path.stem for path in Path(directory).glob("*.txt") if path.is_file()}
        keep = truth.images["stem"].isin(present).to_numpy()
        if present and keep.any():
            truth = SplitGroundTruth(split=split, images=truth.images[keep].reset_index(drop=True),
                                     boxes=[b for b, k in zip(truth.boxes, keep) if k], unreadable=truth.unreadable)
    files = read_prediction_dir(directory, truth.images["stem"].tolist(), index.nc)
    widths, heights = truth.images["width"].to_numpy(), truth.images["height"].to_numpy()
    predictions = [
        np.column_stack([normalized_to_corners(rows[:, CX:H + 1], widths[i], heights[i]), rows[:, CONFIDENCE],
                         rows[:, CLS]])
        for i, rows in enumerate(files.per_image)
    ]
    result = evaluate_detections(truth.boxes, predictions, index.names)
    return PredictionEvaluation(result=result, ground_truth=truth, files_read=files.files_read,
                                unmatched_files=files.unmatched)


def normalized_to_corners(boxes: np.ndarray, width: np.ndarray | float, height: np.ndarray | float) -> np.ndarray:
    """(n, 4) normalized cx, cy, w, h -> (n, 4) pixel x1, y1, x2, y2."""
    width, height = np.asarray(width, dtype=np.float64), np.asarray(height, dtype=np.float64)
    half_w, half_h = boxes[:, 2] / 2, boxes[:, 3] / 2
    return np.column_stack([(boxes[:, 0] - half_w) * width, (boxes[:, 1] - half_h) * height,
                            (boxes[:, 0] + half_w) * width, (boxes[:, 1] + half_h) * height])


def _split_by_image(table: np.ndarray, image: np.ndarray, num_images: int) -> list[np.ndarray]:
    order = np.argsort(image, kind="stable")  # file order kept within an image
    counts = np.bincount(image, minlength=num_images)
    return np.split(table[order], np.cumsum(counts)[:-1]) if num_images else []
