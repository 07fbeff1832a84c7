"""Per-class loss weights from train instance counts: the one function behind `doctor weights`, the audit's
suggested weights and `doctor train --class-weights auto`; and the weights JSON file, written here
(`doctor weights --json`) and read here (`doctor train --class-weights FILE.json`).

Methods (all rescaled so the instance-weighted mean weight is 1, which keeps the classification loss on the
same scale as unweighted training; for `inverse` that rescaling is the identity):
- inverse:   n_total / (n_classes * n_c), scikit-learn's compute_class_weight("balanced");
- sqrt:      the square root of inverse, a milder correction;
- effective: (1 - beta) / (1 - beta ** n_c), the effective number of samples (Cui et al., CVPR 2019).
A cap keeps the largest/smallest ratio at most `max_ratio`, so a class with 3 boxes cannot dominate the loss.
Classes without a train instance get weight 1 and a warning (nothing to learn from, nothing to weight).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dataset_doctor.atomic import atomic_write_text
from dataset_doctor.errors import DoctorError

if TYPE_CHECKING:
    import numpy as np

    from dataset_doctor.dataset.index import DatasetIndex

METHODS = ("inverse", "sqrt", "effective")
DEFAULT_METHOD = "inverse"
DEFAULT_MAX_RATIO = 50.0
DEFAULT_BETA = 0.999


@dataclass(frozen=True)
class ClassWeights:
    classes: list[str]
    instances: list[int]
    weights: list[float]
    method: str
    warnings: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict:
        """The design.md section 3 shape of `doctor weights --json`."""
        return {"classes": self.classes, "instances": self.instances, "weights": self.weights, "method": self.method}


def compute_class_weights(instances: np.ndarray | list[int], classes: list[str] | tuple[str, ...] | None = None,
                          method: str = DEFAULT_METHOD, max_ratio: float | None = DEFAULT_MAX_RATIO,
                          beta: float = DEFAULT_BETA) -> ClassWeights:
    """Weights for classes with the given instance counts (index = class id)."""
    import numpy as np  # here, not at the top: the CLI imports this module's defaults and must start fast

    counts = np.asarray(instances, dtype=np.int64)
    names = list(classes) if classes is not None else [str(i) for i in range(len(counts))]
    if len(names) != len(counts):
        raise ValueError(f"{len(names)} class names for {len(counts)} counts")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0 < beta < 1:
        raise ValueError("beta must be in (0, 1)")
    if max_ratio is not None and max_ratio < 1:
        raise ValueError("max_ratio must be at least 1")

    weights = np.ones(len(counts), dtype=np.float64)
    present = np.flatnonzero(counts > 0)
    warnings = [f"class '{names[i]}' has no train instance: weight 1" for i in np.flatnonzero(counts == 0)]
    if len(present):
        n = counts[present]
        if method in ("inverse", "sqrt"):
            from sklearn.utils.class_weight import compute_class_weight  # loads in ~1 s: only when used

            labels = np.repeat(present, n)
            raw = compute_class_weight("balanced", classes=present, y=labels)
            raw = np.sqrt(raw) if method == "sqrt" else raw
        else:
            raw = (1.0 - beta) / (1.0 - np.power(beta, n.astype(np.float64)))
        if max_ratio is not None and raw.max() > raw.min() * max_ratio:
            raw = np.minimum(raw, raw.min() * max_ratio)
            warnings.append(f"weights capped at {max_ratio:g}x the smallest (--max-ratio)")
        weights[present] = raw * n.sum() / (raw * n).sum()
    return ClassWeights(names, counts.tolist(), [float(w) for w in weights], method, warnings)


def class_weights_for_index(index: DatasetIndex, method: str = DEFAULT_METHOD,
                            max_ratio: float | None = DEFAULT_MAX_RATIO, beta: float = DEFAULT_BETA) -> ClassWeights:
    """Weights from the usable train boxes of an indexed dataset (lines with audit errors are not counted).

    This is what `doctor weights` prints and `doctor train --class-weights auto` uses. Misnumbered or missing
    class names raise DoctorError: weights for the wrong classes would silently weight the wrong loss terms.
    """
    index.config.require_valid_names()
    return compute_class_weights(index.instances("train"), index.names, method=method, max_ratio=max_ratio,
                                 beta=beta)


def class_weights_for_classify(index, method: str = DEFAULT_METHOD, max_ratio: float | None = DEFAULT_MAX_RATIO,
                               beta: float = DEFAULT_BETA) -> ClassWeights:
    """Weights from the readable train images per class of a folder-per-class dataset (a ClassifyIndex, see
    dataset/classify_index.py): each image is one instance of its class, the cross-entropy's sample."""
    return compute_class_weights(index.counts("train"), index.names, method=method, max_ratio=max_ratio, beta=beta)


def write_weights_json(path: str | Path, weights: ClassWeights) -> None:
    """Write the design.md section 3 JSON atomically (temporary file beside it, then rename)."""
    atomic_write_text(Path(path), json.dumps(weights.to_json_dict(), indent=2) + "\n")


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
