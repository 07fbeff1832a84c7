"""Box geometry in torch: format conversions, anchor grids, distance encoding, IoU and Complete IoU.

Conventions used across `trainer/`: `xyxy` = (x1, y1, x2, y2) corners, `cxcywh` = (centre x, centre y, width,
height); the last dimension holds the 4 numbers and every function broadcasts over the leading dimensions, so
the same code serves pairwise matrices (`a[:, None]` vs `b[None]`), batched assigner tensors and flat lists of
matched pairs without Python loops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    centre, size = boxes[..., :2], boxes[..., 2:4]
    return torch.cat((centre - size / 2, centre + size / 2), dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    top_left, bottom_right = boxes[..., :2], boxes[..., 2:4]
    return torch.cat(((top_left + bottom_right) / 2, bottom_right - top_left), dim=-1)


def anchor_grid(feature_shapes: Sequence[tuple[int, int]], strides: Sequence[int],
                device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Anchor points of every feature-map cell, levels concatenated in order, row-major within a level.

    Returns `points` (A, 2) as (x, y) in grid units of their own level (cell centre: index + 0.5) and `stride`
    (A, 1), so `points * stride` are the centres in input pixels. Built from the feature shapes, so any input
    size that is a multiple of the largest stride works (square, rectangular, multi-scale).
    """
    points, point_strides = [], []
    for (height, width), stride in zip(feature_shapes, strides):
        ys = torch.arange(height, device=device, dtype=dtype) + 0.5
        xs = torch.arange(width, device=device, dtype=dtype) + 0.5
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x, grid_y), dim=-1).reshape(-1, 2))
        point_strides.append(torch.full((height * width, 1), float(stride), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(point_strides)


def distances_to_boxes(points: Tensor, distances: Tensor) -> Tensor:
    """(left, top, right, bottom) distances from anchor points -> xyxy boxes (same units as the inputs)."""
    return torch.cat((points - distances[..., :2], points + distances[..., 2:4]), dim=-1)


def boxes_to_distances(points: Tensor, boxes: Tensor) -> Tensor:
    """xyxy boxes -> (left, top, right, bottom) distances from anchor points, the inverse of distances_to_boxes."""
    return torch.cat((points - boxes[..., :2], boxes[..., 2:4] - points), dim=-1)


def intersection_and_union(a: Tensor, b: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Intersection and union (+ eps) of xyxy boxes, broadcast: what IoU, CIoU and NMS are made of."""
    width_a, height_a = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1]
    width_b, height_b = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    overlap_w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    overlap_h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    intersection = overlap_w * overlap_h
    union = width_a * height_a + width_b * height_b - intersection + eps
    return intersection, union


def iou(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """Intersection over union of xyxy boxes, broadcast over leading dimensions: shape (...,)."""
    intersection, union = intersection_and_union(a, b, eps)
    return intersection / union


def pairwise_iou(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """IoU matrix (N, M) between N and M xyxy boxes."""
    return iou(a[:, None, :], b[None, :, :], eps)


def complete_iou(a: Tensor, b: Tensor, eps: float = 1e-7) -> Tensor:
    """Complete IoU (Zheng et al., "Distance-IoU Loss", AAAI 2020) of xyxy boxes, broadcast: shape (...,).

    CIoU = IoU - rho^2 / c^2 - alpha * v, in [-1.5, 1]; the loss is 1 - CIoU. It is symmetric in its arguments.
    """
    intersection, union = intersection_and_union(a, b, eps)
    overlap = intersection / union
    # Distance term: rho^2 is the squared distance between the two box centres, c^2 the squared diagonal of the
    # smallest box enclosing both. It keeps a gradient when the boxes do not overlap (where IoU is flat at 0)
    # and pulls the centres together directly, which the paper shows converges faster than GIoU.
    enclosing_w = torch.maximum(a[..., 2], b[..., 2]) - torch.minimum(a[..., 0], b[..., 0])
    enclosing_h = torch.maximum(a[..., 3], b[..., 3]) - torch.minimum(a[..., 1], b[..., 1])
    diagonal_sq = enclosing_w**2 + enclosing_h**2 + eps
    centre_dx = (a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2]) / 2
    centre_dy = (a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3]) / 2
    centre_distance_sq = centre_dx**2 + centre_dy**2
    # Aspect-ratio term: v measures how different the two width/height ratios are (0 when equal, at most 1),
    # via the difference of their arctangents scaled by 4 / pi^2.
    width_a, height_a = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1] + eps
    width_b, height_b = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1] + eps
    aspect_gap = (4 / math.pi**2) * (torch.atan(width_a / height_a) - torch.atan(width_b / height_b)) ** 2
    # alpha is the paper's trade-off weight v / ((1 - IoU) + v): aspect ratio only matters once the boxes overlap
    # well. The paper treats it as a weight, not something to optimise, so no gradient flows through it.
    with torch.no_grad():
        aspect_weight = aspect_gap / (aspect_gap - overlap + (1 + eps))
    return overlap - centre_distance_sq / diagonal_sq - aspect_weight * aspect_gap
