"""The one entry point of evaluation: ground truth and predictions per image in, EvaluationResult out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trainer.evaluation.average_precision import accumulate
from trainer.evaluation.boxes import flatten_ground_truth, flatten_predictions
from trainer.evaluation.confusion import confusion_matrix
from trainer.evaluation.matching import match_detections
from trainer.evaluation.protocol import MAX_DETECTIONS
from trainer.evaluation.result import EvaluationResult


def evaluate_detections(ground_truth: Sequence[Any], predictions: Sequence[Any], class_names: Sequence[str], *,
                        max_detections: int = MAX_DETECTIONS, confusion_conf: float = 0.25,
                        confusion_iou: float = 0.5) -> EvaluationResult:
    """Evaluate detections with the COCO bbox protocol (pycocotools' numbers, area range all, maxDets 100).

    ground_truth: one (m, 5) array or tensor per image, [x1, y1, x2, y2, class] in pixels.
    predictions: one (n, 6) array or tensor per image, [x1, y1, x2, y2, score, class] in pixels: what
        `trainer.model.nms.non_max_suppression` returns. Same image order as ground_truth; the order decides ties in
        score between images, as image ids do in COCO.
    max_detections: per image and class, only the highest-scoring this many count (COCO: 100).
    confusion_conf, confusion_iou: thresholds of the confusion matrix only.
    """
    if len(ground_truth) != len(predictions):
        raise ValueError(f"{len(ground_truth)} images of ground truth but {len(predictions)} of predictions")
    num_classes = len(class_names)
    truth = flatten_ground_truth(ground_truth, num_classes)
    detections = flatten_predictions(predictions, num_classes)

    matches = match_detections(truth, detections, num_classes, max_detections)
    kept = matches.detection
    instances = np.bincount(truth.cls, minlength=num_classes)
    curves = accumulate(detections.cls[kept], detections.score[kept], detections.image[kept], matches.rank,
                        matches.matched, instances)
    image_class = np.unique(truth.image * num_classes + truth.cls)
    return EvaluationResult(
        class_names=tuple(class_names),
        images=len(ground_truth),
        instances=instances,
        images_with_class=np.bincount(image_class % num_classes, minlength=num_classes) if num_classes else instances,
        predictions=np.bincount(detections.cls, minlength=num_classes),
        ap=curves.ap,
        precision=curves.precision,
        recall=curves.recall,
        f1=curves.f1,
        confidence=curves.confidence,
        pr_curves=curves.pr_curve,
        confusion=confusion_matrix(truth, detections, num_classes, confusion_conf, confusion_iou),
        confusion_conf=confusion_conf,
        confusion_iou=confusion_iou,
    )
