"""Predicting with one of our checkpoints on a set of images: what `doctor predict` and `doctor diagnose --model`
run (one code path, so both write the same detections).

    from trainer.predict import predict_images
    predictions, names = predict_images("best.pt", "data.yaml", split="val", conf=0.001)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from trainer.data.dataset import YoloDataset
from trainer.data.loader import make_eval_loader
from trainer.data.predict_source import image_set_from_source
from trainer.devices import choose_device
from trainer.export.onnx_runtime import baked_nms_warnings, load_detector
from trainer.model.inference import Predictions, predict, write_yolo_predictions


def predict_images(weights: str | Path, source: str | Path, *, split: str = "val", imgsz: int = 640,
                   conf: float = 0.25, iou: float = 0.7, max_det: int = 300, batch: int = 16, device: str = "",
                   limit: int | None = None, seed: int = 0,
                   warn: Callable[[str], None] = print) -> tuple[Predictions, list[str]]:
    """Detections of the checkpoint on every readable image of `source` (an image, a folder, a .txt list or a
    data.yaml's split), and the checkpoint's class names. limit: only that many images, drawn at random
    (seeded, sorted, as the trainer draws its fixed train subset)."""
    choice = choose_device(device)
    model, names = load_detector(weights, choice.device)  # .pt of ours or a doctor export .onnx
    for message in baked_nms_warnings(model, conf, iou, measuring_map=False):  # an --nms export's own thresholds
        warn(message)
    images = image_set_from_source(source, split, warn=warn)
    dataset = YoloDataset(images, imgsz, warn=warn)
    if limit is not None and limit < len(dataset):
        positions = sorted(np.random.default_rng(seed).choice(len(dataset), limit, replace=False).tolist())
        dataset = dataset.view(positions)
    loader = make_eval_loader(dataset, batch, device=choice.device)
    return predict(model, loader, choice.device, conf, iou, max_det, choice.amp_dtype), names


def predict_splits(weights: str | Path, data_yaml: str | Path, splits: list[str], out_dir: Path, *,
                   imgsz: int = 640, conf: float = 0.001, iou: float = 0.7, max_det: int = 300, batch: int = 16,
                   device: str = "", warn: Callable[[str], None] = print) -> list[str]:
    """Every image of each split predicted by `predict_images` (the one inference path) into
    out_dir/<split>/<image stem>.txt, the layout `doctor audit --predictions` reads; returns the model's names."""
    names: list[str] = []
    for split in splits:
        predictions, names = predict_images(weights, data_yaml, split=split, imgsz=imgsz, conf=conf, iou=iou,
                                            max_det=max_det, batch=batch, device=device, warn=warn)
        write_yolo_predictions(out_dir / split, predictions)
    return names
