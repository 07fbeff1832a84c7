"""pycocotools as the trusted reference for mAP: one place that feeds it plain COCO dicts and runs its bbox
evaluation, quietly (it prints its summary table to stdout)."""

from __future__ import annotations

import contextlib
import io

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def coco_bbox_evaluation(images: list[dict], annotations: list[dict], detections: list[dict],
                         num_classes: int) -> COCOeval:
    """The finished COCOeval (evaluate, accumulate, summarize) of detections against annotations; category ids
    are class + 1, as COCO counts from 1. `detections` must not be empty: pycocotools cannot load that."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(detections), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation
