"""Resolving `--class-weights auto|none|FILE.json` into the weight vector the loss uses."""

from __future__ import annotations

import json
from pathlib import Path

from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.errors import DoctorError
from dataset_doctor.weights import ClassWeights, class_weights_for_index


def resolve_class_weights(source: str, index: DatasetIndex, method: str, max_ratio: float | None) -> ClassWeights:
    """`auto`: `doctor weights` on the train split; `none`: all 1; else a `doctor weights --json` file."""
    if source == "auto":
        return class_weights_for_index(index, method=method, max_ratio=max_ratio)
    instances = index.instances("train")
    names = list(index.names)
    if source == "none":
        return ClassWeights(names, instances.tolist(), [1.0] * len(names), "none")
    path = Path(source)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DoctorError("class weights file not found (use auto, none or a JSON file)", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DoctorError(f"not a class weights JSON file: {error}", path) from None
    weights = payload.get("weights") if isinstance(payload, dict) else None
    classes = payload.get("classes") if isinstance(payload, dict) else None
    if not isinstance(weights, list) or not all(isinstance(w, int | float) and w >= 0 for w in weights):
        raise DoctorError("expected {\"classes\": [...], \"weights\": [non-negative numbers]}", path)
    if classes is not None and list(classes) != names:
        raise DoctorError(f"its classes {classes} are not the dataset's {names}", path)
    if len(weights) != len(names):
        raise DoctorError(f"{len(weights)} weights for {len(names)} classes", path)
    return ClassWeights(names, instances.tolist(), [float(w) for w in weights], f"file:{path.name}")
