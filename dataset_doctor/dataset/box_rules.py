"""Which boxes are unusable for training, vectorised: the error-level box checks of design.md section 2; and
the one numpy IoU (`paired_iou`).

One definition shared by the audit (to report them), and by weights, rebalance and the trainer (to skip
them), so a box the audit calls an error is never counted or trained on anywhere. `paired_iou` serves the
audit's duplicate-box check, the sample generator and the evaluation (pycocotools' definition); the torch IoU
of the loss and NMS is trainer/model/boxes.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

OUT_OF_BOUNDS_TOLERANCE = 0.01  # fraction of the image side a box may overhang before it is an error


def box_error_checks(boxes: pd.DataFrame, nc: int, tolerance: float = OUT_OF_BOUNDS_TOLERANCE) -> pd.Series:
    """Per box: the id of the first error check it fails ('' if none), in design.md's order."""
    cls = boxes["cls"].to_numpy()
    cx, cy, w, h = (boxes[c].to_numpy() for c in ("cx", "cy", "w", "h"))
    checks = np.full(len(boxes), "", dtype=object)
    out_of_bounds = ((cx - w / 2 < -tolerance) | (cx + w / 2 > 1 + tolerance)
                     | (cy - h / 2 < -tolerance) | (cy + h / 2 > 1 + tolerance))
    degenerate = (w <= 0) | (h <= 0)
    bad_class = (cls < 0) | (cls >= nc)
    # Assign in reverse priority so the most specific reason wins.
    checks[out_of_bounds] = "out-of-bounds"
    checks[degenerate] = "degenerate-box"
    checks[bad_class] = "class-out-of-range"
    return pd.Series(checks, index=boxes.index, name="error")


def box_error_message(check: str, row: pd.Series, nc: int) -> str:
    """A one-line explanation of why one box failed `check`."""
    if check == "class-out-of-range":
        return f"class {int(row.cls)} is outside 0..{nc - 1}" if nc else f"class {int(row.cls)}: no names defined"
    if check == "degenerate-box":
        return f"zero or negative size (w={row.w:g}, h={row.h:g})"
    if check == "out-of-bounds":
        x1, y1, x2, y2 = row.cx - row.w / 2, row.cy - row.h / 2, row.cx + row.w / 2, row.cy + row.h / 2
        return f"box extends outside the image (x1={x1:.3f} y1={y1:.3f} x2={x2:.3f} y2={y2:.3f})"
    raise ValueError(check)


def paired_iou(first: np.ndarray, second: np.ndarray, first_area: np.ndarray | None = None,
               second_area: np.ndarray | None = None) -> np.ndarray:
    """IoU of first[i] with second[i] for (..., 4) x1 y1 x2 y2 arrays (broadcast), as pycocotools' `bbIou`.

    Boxes that only touch (overlap width or height <= 0) have IoU 0; union = area1 + area2 - intersection.
    The areas default to (x2 - x1) * (y2 - y1); a caller holding w * h passes it, so the result is exactly
    what w * h gives (pycocotools computes its areas that way).
    """
    overlap_w = np.minimum(first[..., 2], second[..., 2]) - np.maximum(first[..., 0], second[..., 0])
    overlap_h = np.minimum(first[..., 3], second[..., 3]) - np.maximum(first[..., 1], second[..., 1])
    if first_area is None:
        first_area = (first[..., 2] - first[..., 0]) * (first[..., 3] - first[..., 1])
    if second_area is None:
        second_area = (second[..., 2] - second[..., 0]) * (second[..., 3] - second[..., 1])
    overlaps = (overlap_w > 0) & (overlap_h > 0)
    intersection = np.where(overlaps, overlap_w * overlap_h, 0.0)
    union = first_area + second_area - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=overlaps)
