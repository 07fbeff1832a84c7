"""The run directory written by `doctor train` and read by the training report (design.md section 4).

This module is the contract between the two: file names, CSV columns, and small atomic writers/readers.
Nothing here knows about models or plots.

runs/<name>/
    args.yaml               every setting, resolved (dataset path included, so reports can find the data)
    weights/last.pt         checkpoint after the last finished epoch
    weights/best.pt         checkpoint with the best val mAP50-95
    results.csv             one row per epoch, RESULTS_COLUMNS (mAP cells empty on epochs not evaluated)
    per_class.csv           PER_CLASS_COLUMNS, one row per class and split at the last evaluation
    class_weights.json      {"classes", "instances", "weights", "method"} as `doctor weights --json`
    confusion_matrix.csv    val, at the last evaluation: rows = predicted class, columns = true class,
                            both with a final "background" entry
    pr_curves.json          val, IoU 0.5: {"recall": [101 points], "precision": {class: [101 values]}}
    predictions/val/*.txt   val predictions of the final model, YOLO txt with confidence (doctor evaluate format)
    train_batches/*.jpg     a few augmented training batches with their boxes drawn, saved at the start
    report.html             the training report (reports/training_report.py, written by whoever started the run)
    distributed.json        distributed runs only: world size, backend, whether all ranks ended identical
    warnings.json           only when there were any: a list of warning messages (e.g. a diverging loss)
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from dataset_doctor.atomic import (
    atomic_write_text,
    csv_text,
    remove_stale_temporaries,
    unwritable_output,
)
from dataset_doctor.dataset.datayaml import DatasetConfig, folders_read, safe_load_bounded
from dataset_doctor.errors import DoctorError

ARGS_FILE = "args.yaml"
WEIGHTS_DIR = "weights"
LAST_CHECKPOINT = "weights/last.pt"
BEST_CHECKPOINT = "weights/best.pt"
RESULTS_FILE = "results.csv"
PER_CLASS_FILE = "per_class.csv"
CLASS_WEIGHTS_FILE = "class_weights.json"
CONFUSION_FILE = "confusion_matrix.csv"
PR_CURVES_FILE = "pr_curves.json"
PREDICTIONS_DIR = "predictions"
TRAIN_BATCHES_DIR = "train_batches"
REPORT_FILE = "report.html"
WARNINGS_FILE = "warnings.json"  # ["message", ...]: what the run warned about while training (divergence)
FORGETTING_FILE = "forgetting.json"  # --replay: base classes' val AP before and after fine-tuning
DISTRIBUTED_FILE = "distributed.json"  # distributed runs: world size, backend, per-rank parameter checksums

RESULTS_COLUMNS = [
    "epoch",  # 1-based
    "time_s",  # wall time since the run started, at the end of this epoch
    "lr",  # learning rate of the first parameter group at the end of the epoch
    "box_loss", "cls_loss", "dfl_loss",  # mean training losses over the epoch (before gains)
    "images_per_s",  # training throughput of the epoch
    "train_map50", "train_map50_95",  # on the fixed train subset (empty when not evaluated this epoch)
    "val_map50", "val_map50_95", "val_precision", "val_recall",
]
PER_CLASS_COLUMNS = ["split", "class_id", "class", "images", "instances", "precision", "recall", "ap50", "ap50_95"]


def write_args(run_dir: Path, args: dict[str, Any]) -> None:
    atomic_write_text(run_dir / ARGS_FILE, yaml.safe_dump(args, sort_keys=False))


def read_args(run_dir: Path) -> dict[str, Any]:
    """The run's settings; a run folder without a readable args.yaml is a one-line error (not a traceback)."""
    path = Path(run_dir) / ARGS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DoctorError(f"not a run directory of doctor train: {ARGS_FILE} is missing", path) from None
    except (OSError, UnicodeDecodeError) as error:
        raise DoctorError(f"cannot read {ARGS_FILE} ({error.__class__.__name__})", path) from None
    args = safe_load_bounded(text, path)
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise DoctorError(f"{ARGS_FILE} is not a mapping of settings", path)
    return args


def append_results_row(run_dir: Path, row: dict[str, Any]) -> None:
    """Add one epoch to results.csv (rewritten atomically). Unknown keys are an error."""
    unknown = set(row) - set(RESULTS_COLUMNS)
    if unknown:
        raise ValueError(f"unknown results.csv columns: {sorted(unknown)}")
    _write_csv(run_dir / RESULTS_FILE, RESULTS_COLUMNS, [*read_results(run_dir), row])


def truncate_results(run_dir: Path, last_epoch: int) -> None:
    """Drop rows after `last_epoch` (a resumed run repeats the epoch that was cut off)."""
    rows = read_results(run_dir)
    if rows:
        _write_csv(run_dir / RESULTS_FILE, RESULTS_COLUMNS, [r for r in rows if int(r["epoch"]) <= last_epoch])


def read_results(run_dir: Path) -> list[dict[str, Any]]:
    """results.csv as a list of dicts with numbers parsed (None for empty cells)."""
    return [{key: _number(value) for key, value in row.items()} for row in _read_csv(run_dir / RESULTS_FILE)]


def write_per_class(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    _write_csv(run_dir / PER_CLASS_FILE, PER_CLASS_COLUMNS, rows)


def read_per_class(run_dir: Path) -> list[dict[str, Any]]:
    return [{key: value if key in ("split", "class") else _number(value) for key, value in row.items()}
            for row in _read_csv(run_dir / PER_CLASS_FILE)]


def write_confusion(run_dir: Path, labels: Sequence[str], counts: Iterable[Iterable[int]]) -> None:
    """confusion_matrix.csv: rows predicted, columns true, both in `labels` order (background last)."""
    atomic_write_text(run_dir / CONFUSION_FILE, csv_text(["predicted \\ true", *labels],
                                                         ([label, *(int(v) for v in row)]
                                                          for label, row in zip(labels, counts))))


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    atomic_write_text(path, csv_text(columns, (
        ["" if row.get(c) is None else f"{row[c]:.6g}" if isinstance(row[c], float) else row[c] for c in columns]
        for row in rows)))


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_json(run_dir: Path, name: str, payload: Any) -> None:
    atomic_write_text(run_dir / name, json.dumps(payload, indent=2) + "\n")


def read_json(run_dir: Path, name: str) -> Any:
    path = run_dir / name
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _number(value: str | None) -> float | int | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return value  # type: ignore[return-value]
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number


def check_run_location(project: str | Path, name: str, exist_ok: bool, dataset: DatasetConfig) -> None:
    """Refuse a run directory the dataset would read back, or one that cannot be created; before any work.

    A project inside an image or label folder puts train_batches/*.jpg and predictions/*.txt where the next audit
    counts them as data. The dataset root itself is allowed (`cd dataset && doctor train data.yaml` writes
    runs/ beside images/), but never as the run directory, nor a run directory around an image folder.
    """
    project_path = Path(os.path.realpath(Path(project).expanduser()))
    run_path = project_path / name
    for folder in sorted(folders_read(dataset, with_root=False)):
        for path in (project_path, run_path):
            if path == folder or folder in path.parents:
                raise DoctorError(f"--project is inside a folder the dataset reads ({folder}): its run files would "
                                  "become part of the dataset; choose a project outside it", project)
        if exist_ok and run_path in folder.parents:
            raise DoctorError(f"the run directory {run_path} holds a folder the dataset reads ({folder}): choose "
                              "another --project or --name", project)
    if dataset.root == run_path and exist_ok:
        raise DoctorError("the run directory would be the dataset root: choose another --project or --name", project)
    existing = project_path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise unwritable_output(NotADirectoryError(20, f"{existing} is not a directory"), project)
    if not os.access(existing, os.W_OK | os.X_OK):  # read-only mounts and immutable folders deny root too
        raise unwritable_output(PermissionError(13, f"{existing} is not writable"), project)


def new_run_dir(project: str | Path, name: str, exist_ok: bool = False) -> Path:
    """project/name, or project/name2, name3, ... when taken (as Ultralytics users expect); created empty."""
    project = Path(project)
    candidate = project / name
    number = 2
    while candidate.exists() and not exist_ok:
        candidate = project / f"{name}{number}"
        number += 1
    try:
        candidate.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise unwritable_output(error, candidate) from None
    return candidate


def remove_stale_checkpoint_temporaries(run_dir: Path) -> list[str]:
    """Temporary files killed checkpoint (and results) writes left in a reused run directory; one note each."""
    return remove_stale_temporaries(run_dir / WEIGHTS_DIR) + remove_stale_temporaries(run_dir)
