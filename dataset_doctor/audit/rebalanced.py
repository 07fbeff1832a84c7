"""The audit of a `doctor rebalance` output: what rebalance.json beside its data.yaml says about its train split.

Two uses:
- a before/after table per class: the source's train instances, what each method (images / paste / auto)
  would have given, what was written, and what the audit counts now, so the audit of the output shows the
  method used beside the ones not used;
- the distinct source instances per class (the source's train count: every output train box is one of them,
  copied, pasted or carried along). A copy is not a new observation, so the scale-shift test counts these
  (checks_shift.scale_shift_table's `train_sources`): 500 boxes made from 6 are tested as 6, as in the source.

An unreadable or foreign rebalance.json (other class names) is ignored: it must not stop an audit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REBALANCE_FILE = "rebalance.json"
METHOD_COLUMNS = ("images", "paste", "auto")


@dataclass(frozen=True)
class RebalanceOrigin:
    """What rebalance.json records about how this dataset's train split was made."""

    path: str
    source: str  # the source data.yaml
    method: str  # the method written: images, paste or auto
    target: int
    before: np.ndarray  # (classes,) source train instances: the distinct boxes every train box comes from
    planned: dict[str, np.ndarray]  # method -> expected train instances per class
    written: np.ndarray | None  # train instances as written (after augmentation and pastes)


def read_rebalance_origin(data_yaml: str | Path, names: list[str] | tuple[str, ...]) -> RebalanceOrigin | None:
    """rebalance.json beside `data_yaml`, when there is one written for these classes; else None."""
    path = Path(data_yaml).parent / REBALANCE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    try:
        if list(record["classes"]) != list(names):
            return None
        nc = len(names)
        before = _counts(record["before"], nc)
        objects = record.get("object_methods") or {}
        planned = {method: _counts(entry["instances"], nc)
                   for method, entry in (objects.get("methods") or {}).items()}
        if not planned and "plan" in record.get("methods", {}):  # written before --method existed
            planned = {"images": _counts(record["methods"]["plan"]["instances"], nc)}
        written = (objects.get("written") or {}).get("instances")
        if written is None:
            written = record.get("methods", {}).get("plan", {}).get("written")
        return RebalanceOrigin(str(path), str(record.get("source", "")), str(record.get("method", "images")),
                               int(record["target"]), before, planned,
                               None if written is None else _counts(written, nc))
    except (KeyError, TypeError, ValueError):
        return None


def _counts(values, nc: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (nc,) or not np.isfinite(array).all():
        raise ValueError("not one count per class")
    return array


def rebalance_table(origin: RebalanceOrigin, names: list[str] | tuple[str, ...],
                    train_now: list[int]) -> pd.DataFrame:
    """Per class: before, each method's expected count, written (rebalance.json) and now (this audit's train)."""
    table = pd.DataFrame({"class": list(names), "before": origin.before.astype(int)})
    for method in METHOD_COLUMNS:
        if method in origin.planned:
            table[method] = np.round(origin.planned[method], 1)
    if origin.written is not None:
        table["written"] = origin.written.astype(int)
    now = np.asarray(train_now, dtype=int)
    table["now"] = now if now.shape == (len(names),) else 0
    return table


def max_min_ratio(values: pd.Series, before: pd.Series) -> float:
    """Most / least frequent among the classes the source has (as rebalance reports it)."""
    present = before.to_numpy() > 0
    kept = values.to_numpy(np.float64)[present]
    return float(kept.max() / kept.min()) if len(kept) and kept.min() > 0 else float("nan")
