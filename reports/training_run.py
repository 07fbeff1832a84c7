"""A finished (or interrupted) run directory read into one object, for the training report.

Reads what trainer/run_dir.py documents. Files that a run writes only at its end (per_class.csv, the confusion
matrix, PR curves, predictions) may be missing when a run was killed: they are then None or empty, and the
report says so instead of failing. A directory without args.yaml is not a run directory: DoctorError.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dataset_doctor.errors import DoctorError
from trainer import run_dir as files

REBALANCE_RECORD = "rebalance.json"  # written by `doctor rebalance` beside the new dataset's data.yaml


@dataclass
class Confusion:
    """confusion_matrix.csv: counts[predicted][true], labels = classes + background (last)."""

    labels: list[str]
    counts: list[list[int]]


@dataclass
class TrainingRun:
    dir: Path
    args: dict[str, Any]
    results: list[dict[str, Any]]  # results.csv rows, numbers parsed
    per_class: list[dict[str, Any]]  # per_class.csv rows (split train = the fixed train subset, split val)
    class_weights: dict[str, Any] | None  # class_weights.json
    confusion: Confusion | None
    pr_curves: dict[str, Any] | None  # pr_curves.json
    rebalance: dict[str, Any] | None  # rebalance.json of the train dataset when it is a `doctor rebalance` copy
    batches: list[Path]  # train_batches/*.jpg

    @property
    def classes(self) -> list[str]:
        resolved = self.args.get("resolved", {}).get("classes")
        if resolved:
            return [str(name) for name in resolved]
        if self.class_weights:
            return [str(name) for name in self.class_weights.get("classes", [])]
        return []

    @property
    def dataset(self) -> Path | None:
        """The data.yaml the run trained on, resolved (None if args.yaml does not say)."""
        path = self.args.get("resolved", {}).get("dataset") or self.args.get("train", {}).get("data")
        return Path(path) if path else None

    @property
    def train_settings(self) -> dict[str, Any]:
        return self.args.get("train", {})

    @property
    def data_settings(self) -> dict[str, Any]:
        return self.args.get("data", {})

    @property
    def augment_settings(self) -> dict[str, Any]:
        return self.args.get("augment", {})

    @property
    def resolved(self) -> dict[str, Any]:
        return self.args.get("resolved", {})

    @property
    def epochs_done(self) -> int:
        return int(self.results[-1]["epoch"]) if self.results else 0

    @property
    def seconds(self) -> float | None:
        return float(self.results[-1]["time_s"]) if self.results else None

    @property
    def evaluated(self) -> list[dict[str, Any]]:
        """results rows that carry a val evaluation."""
        return [row for row in self.results if _finite(row.get("val_map50_95"))]

    @property
    def best(self) -> dict[str, Any] | None:
        """The row best.pt was saved at: the first with the highest val mAP50-95 (the trainer's fitness)."""
        rows = self.evaluated
        return max(rows, key=lambda row: row["val_map50_95"]) if rows else None

    def per_class_rows(self, split: str) -> dict[int, dict[str, Any]]:
        """per_class.csv rows of one split by class id (names need not be unique)."""
        return {int(row["class_id"]): row for row in self.per_class
                if row.get("split") == split and isinstance(row.get("class_id"), int)}


def load_training_run(run_dir: str | Path) -> TrainingRun:
    """Everything the report needs from a run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / files.ARGS_FILE).is_file():
        raise DoctorError(f"not a run directory of doctor train (no {files.ARGS_FILE})", run_dir)
    try:
        args = files.read_args(run_dir)
        results = files.read_results(run_dir)
        per_class = files.read_per_class(run_dir)
        class_weights = files.read_json(run_dir, files.CLASS_WEIGHTS_FILE)
        pr_curves = files.read_json(run_dir, files.PR_CURVES_FILE)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError, csv.Error, KeyError) as error:
        raise DoctorError(f"unreadable run file: {error}", run_dir) from None
    if not isinstance(args, dict):
        raise DoctorError("args.yaml is not a mapping", run_dir / files.ARGS_FILE)
    run = TrainingRun(dir=run_dir, args=args, results=results, per_class=per_class, class_weights=class_weights,
                      confusion=read_confusion(run_dir / files.CONFUSION_FILE), pr_curves=pr_curves, rebalance=None,
                      batches=sorted((run_dir / files.TRAIN_BATCHES_DIR).glob("*.jpg")))
    run.rebalance = read_rebalance_record(run.dataset)
    return run


def read_confusion(path: Path) -> Confusion | None:
    """confusion_matrix.csv (None when absent); DoctorError naming the file when it is not a square table."""
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return None
    labels = rows[0][1:]
    try:
        counts = [[int(value) for value in row[1:]] for row in rows[1:]]
    except ValueError:
        raise DoctorError("confusion matrix holds a non-integer count", path) from None
    if len(counts) != len(labels) or any(len(row) != len(labels) for row in counts):
        raise DoctorError(f"confusion matrix is not {len(labels)} x {len(labels)}", path)
    return Confusion(labels, counts)


def read_rebalance_record(dataset: Path | None) -> dict[str, Any] | None:
    """rebalance.json beside the dataset's data.yaml: the train split is a `doctor rebalance` copy."""
    if dataset is None:
        return None
    record = dataset.parent / REBALANCE_RECORD
    try:
        payload = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
