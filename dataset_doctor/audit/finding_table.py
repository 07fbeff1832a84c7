"""Building findings tables column-wise: checks emit thousands of findings without a Python object each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from dataset_doctor.findings import CHECKS, FINDING_COLUMNS

Column = Sequence | np.ndarray | pd.Series | str | int | None


def finding_rows(check: str, *, split: Column = None, image: Column = None, label: Column = None,
                 line: Column = None, message: Column) -> pd.DataFrame:
    """Findings of one check; each field is one value for all rows or one value per row."""
    columns = {"split": split, "image": image, "label": label, "line": line, "message": message}
    length = max((len(value) for value in columns.values() if _is_column(value)), default=1)
    if length == 0:
        return _EMPTY.copy()
    data: dict[str, object] = {"check": [check] * length, "severity": [CHECKS[check]] * length}
    for name, value in columns.items():
        if name == "line":
            continue
        data[name] = _as_object_array(value, length)
    # dtype=object: pandas would infer its string dtype for some columns (NaN for None) and not for others.
    frame = pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in data.items()},
                         columns=[c for c in FINDING_COLUMNS if c != "line"])
    frame.insert(FINDING_COLUMNS.index("line"), "line", _as_line_array(line, length))
    return frame


def empty_findings() -> pd.DataFrame:
    return _EMPTY.copy()


def _empty() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=object) for name in FINDING_COLUMNS})
    frame["line"] = pd.array([], dtype="Int64")
    return frame


_EMPTY = _empty()


def concat_findings(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [part for part in parts if len(part)]
    if not parts:
        return empty_findings()
    frame = pd.concat(parts, ignore_index=True)
    frame["line"] = frame["line"].astype("Int64")
    return frame


def _is_column(value: Column) -> bool:
    return not isinstance(value, str) and value is not None and hasattr(value, "__len__")


def _as_object_array(value: Column, length: int) -> np.ndarray:
    if _is_column(value):
        array = np.asarray(value, dtype=object)
        if len(array) != length:
            raise ValueError(f"column of {len(array)} values for {length} findings")
        return array
    array = np.empty(length, dtype=object)
    array[:] = [value] * length
    return array


def _as_line_array(value: Column, length: int) -> pd.arrays.IntegerArray:
    if _is_column(value):
        return pd.array(np.asarray(value, dtype=np.int64), dtype="Int64")
    return pd.array([value] * length, dtype="Int64")
