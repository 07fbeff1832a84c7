"""Evaluation of detections, the COCO way: one implementation for training, `doctor val` and `doctor evaluate`.

    from trainer.evaluation import evaluate_detections
    result = evaluate_detections(ground_truth, predictions, class_names)   # per-image arrays, pixels
    result.map50_95, result.ap50, result.to_json()

Numbers agree with pycocotools' bbox evaluation (area range all, maxDets 100); tests check it.
"""

from trainer.evaluation.evaluate import evaluate_detections
from trainer.evaluation.protocol import IOU_THRESHOLDS, MAX_DETECTIONS, RECALL_GRID
from trainer.evaluation.result import BACKGROUND, EvaluationResult

__all__ = ["BACKGROUND", "IOU_THRESHOLDS", "MAX_DETECTIONS", "RECALL_GRID", "EvaluationResult",
           "evaluate_detections"]
