"""Running a model over a loader: NMS, boxes back in original pixels, and evaluation against the index.

Training (val and the train subset), `doctor val` and `doctor predict` all go through `predict`, so train AP
and val AP are always measured the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dataset_doctor.atomic import atomic_write_text
from dataset_doctor.dataset.index import DatasetIndex
from trainer.core_sharing import CoreSharing
from trainer.devices import autocast
from trainer.evaluation import EvaluationResult, evaluate_detections
from trainer.evaluation.dataset import normalized_to_corners
from trainer.model.nms import non_max_suppression


@dataclass
class Predictions:
    image_ids: np.ndarray  # (images,) image_id in the dataset index (or position in the source), loader order
    paths: list[str]  # image file per image
    sizes: np.ndarray  # (images, 2) original (height, width)
    boxes: list[np.ndarray]  # per image (k, 6) float64 [x1, y1, x2, y2, score, class] in original pixels


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device, conf: float = 0.001, iou: float = 0.7,
            max_det: int = 300, amp_dtype: torch.dtype | None = None) -> Predictions:
    """Detections for every image of an evaluation loader (the model is put in eval mode and left there)."""
    model.eval()
    image_ids: list[int] = []
    per_image: list[np.ndarray] = []
    paths: list[str] = []
    sizes: list[tuple[int, int]] = []
    dataset_paths = loader.dataset.images.paths
    sharing = CoreSharing.for_device(device)  # fewer threads while other programs use the cores
    for batch in loader:
        images = batch.to(device, non_blocking=True).images
        with autocast(device, amp_dtype):
            decoded = model(images)
        detections = non_max_suppression(decoded.float(), conf, iou, max_det, multi_label=True)
        for position, found in enumerate(detections):
            found = found.cpu().double()
            boxes = batch.to_original_pixels(found[:, :4], position).numpy()
            height, width = batch.original_sizes[position].tolist()
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
            per_image.append(np.column_stack([boxes, found[:, 4:6].numpy()]))
            image_ids.append(int(batch.image_ids[position]))
            paths.append(dataset_paths[int(batch.indices[position])])
            sizes.append((height, width))
        sharing.tick()
    sharing.restore()
    return Predictions(np.array(image_ids, dtype=np.int64), paths, np.array(sizes, dtype=np.int64).reshape(-1, 2),
                       per_image)


def ground_truth(index: DatasetIndex, image_ids: np.ndarray) -> list[np.ndarray]:
    """Usable boxes of each image as (m, 5) [x1, y1, x2, y2, class] in pixels, in the order of image_ids."""
    boxes = index.usable_boxes()
    boxes = boxes[boxes["image_id"].isin(image_ids)]
    sizes = index.images.loc[boxes["image_id"], ["width", "height"]].to_numpy(dtype=np.float64)
    corners = normalized_to_corners(boxes[["cx", "cy", "w", "h"]].to_numpy(np.float64), sizes[:, 0], sizes[:, 1])
    pixels = np.column_stack([corners, boxes["cls"].to_numpy(np.float64)])
    grouped = {image_id: pixels[rows] for image_id, rows in boxes.groupby("image_id").indices.items()}
    return [grouped.get(int(image_id), np.zeros((0, 5))) for image_id in image_ids]


def evaluate_model(model: nn.Module, loader: DataLoader, index: DatasetIndex, device: torch.device,
                   conf: float = 0.001, iou: float = 0.7, max_det: int = 300,
                   amp_dtype: torch.dtype | None = None) -> tuple[EvaluationResult, Predictions]:
    predictions = predict(model, loader, device, conf, iou, max_det, amp_dtype)
    result = evaluate_detections(ground_truth(index, predictions.image_ids), predictions.boxes, index.names)
    return result, predictions


def write_yolo_predictions(out_dir: Path, predictions: Predictions) -> list[Path]:
    """One YOLO txt per image, `class cx cy w h confidence` normalized (what `doctor evaluate` reads).

    Images without detections get an empty file, so a missing file always means "not predicted".
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path, (height, width), boxes in zip(predictions.paths, predictions.sizes, predictions.boxes):
        lines = [f"{int(cls)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {(x2 - x1) / width:.6f} "
                 f"{(y2 - y1) / height:.6f} {score:.5f}\n" for x1, y1, x2, y2, score, cls in boxes]
        target = out_dir / (Path(path).stem + ".txt")
        atomic_write_text(target, "".join(lines))
        written.append(target)
    return written
