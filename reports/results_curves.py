"""A results.csv of any trainer read into our run directory's columns, for the loss and mAP curves.

Two layouts are recognised by their column names (never by position: trainers add and reorder columns):
- ours (trainer/run_dir.py RESULTS_COLUMNS): epoch, box_loss, ..., train_map50, val_map50, val_map50_95, ...;
- Ultralytics (YOLOv8 and later): `epoch, train/box_loss, train/cls_loss, train/dfl_loss, metrics/precision(B),
  metrics/recall(B), metrics/mAP50(B), metrics/mAP50-95(B), ..., lr/pg0`, names padded with spaces in older
  versions; YOLOv5's `metrics/mAP_0.5` and `metrics/mAP_0.5:0.95` too (its epochs count from 0).
Another layout is not an error: the curves are left out and the page says why (`CurvesRead.note`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataset_doctor.errors import DoctorError
from trainer.run_dir import RESULTS_COLUMNS

# Ultralytics / YOLOv5 column name -> ours
ULTRALYTICS_COLUMNS = {
    "train/box_loss": "box_loss", "train/cls_loss": "cls_loss", "train/dfl_loss": "dfl_loss",
    "train/obj_loss": "obj_loss",
    "metrics/precision(B)": "val_precision", "metrics/recall(B)": "val_recall",
    "metrics/mAP50(B)": "val_map50", "metrics/mAP50-95(B)": "val_map50_95",
    "metrics/precision": "val_precision", "metrics/recall": "val_recall",
    "metrics/mAP_0.5": "val_map50", "metrics/mAP_0.5:0.95": "val_map50_95",
    "lr/pg0": "lr", "time": "time_s",
}
_METRICS = ("box_loss", "cls_loss", "dfl_loss", "val_map50", "val_map50_95")  # at least one must be found


@dataclass(frozen=True)
class CurvesRead:
    """The rows in our column names (numbers parsed, None for empty cells), and the layout or why none."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    layout: str | None = None  # "doctor" or "ultralytics"; None: not recognised
    note: str | None = None  # why the curves are left out, when they are


def read_results_curves(path: str | Path) -> CurvesRead:
    """Read a results.csv of ours or of Ultralytics; DoctorError only when the file itself cannot be read."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DoctorError("results file not found", path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            table = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DoctorError(f"cannot read the results file: {error}", path) from None
    if not table:
        return CurvesRead(note=f"{path.name} is empty: no curves")
    header = [name.strip() for name in table[0]]
    if "epoch" not in header:
        return CurvesRead(note=f"{path.name} has no 'epoch' column: its layout is not recognised, no curves")
    ours = set(RESULTS_COLUMNS)
    if any(name in ULTRALYTICS_COLUMNS for name in header):
        layout, mapping = "ultralytics", {name: ULTRALYTICS_COLUMNS.get(name) for name in header}
    else:
        layout, mapping = "doctor", {name: name if name in ours else None for name in header}
    mapping["epoch"] = "epoch"
    if not any(target in _METRICS for target in mapping.values()):
        return CurvesRead(note=f"{path.name}: no loss or mAP column recognised (columns: "
                               f"{', '.join(header[:8])}{' ...' if len(header) > 8 else ''}), no curves")
    zero_based = "metrics/mAP_0.5" in header  # YOLOv5 counts epochs from 0
    rows = []
    for line, values in enumerate(table[1:], start=2):
        if not any(value.strip() for value in values):
            continue
        row: dict[str, Any] = {}
        for name, value in zip(header, values):
            target = mapping.get(name)
            if target is not None:
                row[target] = _number(value)
        epoch = row.get("epoch")
        if not isinstance(epoch, int | float) or not math.isfinite(epoch):
            return CurvesRead(layout=layout, note=f"{path.name} line {line}: epoch is not a number, no curves")
        row["epoch"] = int(epoch) + (1 if zero_based else 0)
        rows.append(row)
    return CurvesRead(rows=rows, layout=layout)


def _number(value: str) -> float | None:
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None
