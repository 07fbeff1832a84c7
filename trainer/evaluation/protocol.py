"""The constants of the COCO bbox evaluation protocol, built exactly as pycocotools builds them.

pycocotools makes its thresholds with `np.linspace` (not `np.arange`, whose points drift above the true values),
and compares recalls against them with `searchsorted`; using the very same arrays keeps our numbers identical.
"""

from __future__ import annotations

import numpy as np

# IoU thresholds 0.50:0.05:0.95 (COCOeval Params.setDetParams).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
# The 101 recall points at which interpolated precision is sampled (0, 0.01, ..., 1).
RECALL_GRID = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)
# COCO's largest maxDets: at most this many detections per image *and class* take part (pycocotools truncates
# each (image, category) list after sorting it by score).
MAX_DETECTIONS = 100
# pycocotools caps a threshold just below 1 so that IoU 1.0 still has to clear something.
_IOU_CAP = 1 - 1e-10


def effective_iou_thresholds(thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """The thresholds as COCOeval applies them: `min(t, 1 - 1e-10)`, a match needs IoU >= that."""
    return np.minimum(np.asarray(thresholds, dtype=np.float64), _IOU_CAP)
