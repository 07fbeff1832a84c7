"""pandas tables to and from plain numeric NumPy arrays (stored with dataset_doctor.array_file): no pickle, so
loading a cache never runs code.

Every column comes back with its dtype and values exactly (NaN and None kept apart in object columns); a table
with anything else (a column of Python objects other than strings, a categorical, a non-default row index)
raises Unarchivable, and the caller simply does not cache it.
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pandas as pd

# object columns: what each cell was, so None and NaN come back as they went in
_STRING, _NONE, _NAN = 0, 1, 2


class Unarchivable(ValueError):
    """A table this format cannot store exactly."""


def encode_strings(strings: list[str]) -> np.ndarray:
    """Strings as one UTF-8 byte array, NUL-separated (cells holding NUL are refused): one decode and one split
    to read back, where a NumPy unicode array costs a Python object per cell."""
    joined = "\0".join(strings)
    if joined.count("\0") != max(len(strings) - 1, 0):
        raise Unarchivable("a string holds NUL")
    return np.frombuffer(joined.encode("utf-8", errors="surrogateescape"), dtype=np.uint8)


def decode_strings(blob: np.ndarray, count: int) -> list[str]:
    """The `count` strings of an encode_strings blob; ValueError if it does not hold that many."""
    if blob.dtype != np.uint8:
        raise ValueError("not a string blob")
    # str() decodes the array's buffer in place (tobytes would copy megabytes first)
    strings = str(np.ascontiguousarray(blob), "utf-8", "surrogateescape").split("\0") if count else []
    if len(strings) != count:
        raise ValueError(f"{len(strings)} strings where {count} were expected")
    return strings


def encode_table(frame: pd.DataFrame, prefix: str, arrays: dict[str, np.ndarray]) -> dict:
    """Add the table to `arrays` under `prefix` and return what decode_table needs besides them.

    Columns are stored in a few arrays, not one each (an archive member costs more to open than to read): the
    numeric columns of one dtype as one 2-D array, the string cells of all text columns as one blob.
    """
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0 or frame.index.step != 1:
        raise Unarchivable(f"{prefix}: the row index is not 0..n-1")
    columns, numeric, text, kinds, masked, masks = [], {}, [], [], [], []
    for name, column in frame.items():
        if not isinstance(name, str):
            raise Unarchivable(f"{prefix}: column name {name!r} is not a string")
        dtype = column.dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
            group = numeric.setdefault(dtype.str, [])
            columns.append([name, "numpy", dtype.str, len(group)])
            group.append(column.to_numpy())
            continue
        if _dtype(str(dtype)) != dtype:
            raise Unarchivable(f"{prefix}.{name}: dtype {dtype} does not round-trip by name")
        if isinstance(dtype, pd.Int64Dtype):  # nullable integers: values and a mask
            columns.append([name, "masked", str(dtype), len(masked)])
            masked.append(column.fillna(0).to_numpy(dtype=np.int64))
            masks.append(column.isna().to_numpy())
        elif isinstance(dtype, pd.StringDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "O"):
            columns.append([name, "strings", str(dtype), len(kinds)])
            kinds.append(_cell_kinds(column.tolist(), text, f"{prefix}.{name}"))
        else:
            raise Unarchivable(f"{prefix}.{name}: dtype {dtype} is not archived")
    rows = len(frame)
    for dtype, group in numeric.items():
        arrays[f"{prefix}.{dtype}"] = np.stack(group, axis=1)
    if kinds:
        arrays[f"{prefix}.text"] = encode_strings(text)
        arrays[f"{prefix}.kinds"] = np.stack(kinds, axis=1)
    if masked:
        arrays[f"{prefix}.masked"] = np.stack(masked, axis=1)
        arrays[f"{prefix}.masks"] = np.stack(masks, axis=1)
    return {"rows": rows, "columns": columns}


def _cell_kinds(values: list, strings: list[str], where: str) -> np.ndarray:
    """Each cell's kind (string, None, NaN); the strings are appended to `strings`, column after column."""
    kinds = np.empty(len(values), dtype=np.uint8)
    for row, value in enumerate(values):
        if isinstance(value, str):
            kinds[row] = _STRING
            strings.append(value)
        elif value is None:
            kinds[row] = _NONE
        elif isinstance(value, float) and value != value:
            kinds[row] = _NAN
        else:
            raise Unarchivable(f"{where}: a cell holds {type(value).__name__}, not a string")
    return kinds


@cache
def _dtype(name: str):
    """pandas_dtype by name, remembered: pandas searches its registry of extension types each time."""
    return pd.api.types.pandas_dtype(name)


def decode_table(meta: dict, prefix: str, archive) -> pd.DataFrame:
    """The table encode_table stored; KeyError / ValueError when the archive does not hold it."""
    rows = int(meta["rows"])
    blocks: dict[str, np.ndarray] = {}

    def block(name: str, dtype: str | None = None) -> np.ndarray:
        if name not in blocks:
            values = archive[f"{prefix}.{name}"]
            if values.ndim != 2 or len(values) != rows or (dtype is not None and values.dtype.str != dtype):
                raise ValueError(f"{prefix}.{name}: not the {rows}-row block stored")
            blocks[name] = values
        return blocks[name]

    strings: list[str] | None = None
    data = {}
    for name, kind, dtype, position in meta["columns"]:
        if kind == "numpy":
            data[name] = block(dtype, dtype)[:, position]
        elif kind == "masked":
            series = pd.Series(block("masked")[:, position], dtype=_dtype(dtype))
            series[block("masks")[:, position]] = pd.NA
            data[name] = series
        elif kind == "strings":
            cells = block("kinds")
            if strings is None:
                strings = decode_strings(archive[f"{prefix}.text"], int((cells == _STRING).sum()))
                offsets = np.concatenate([[0], np.cumsum((cells == _STRING).sum(axis=0))])
            texts = strings[offsets[position]:offsets[position + 1]]
            if len(texts) < rows:  # some cells are missing: put each back in its place
                found = iter(texts)
                texts = [next(found) if cell == _STRING else None if cell == _NONE else float("nan")
                         for cell in cells[:, position].tolist()]
            data[name] = pd.Series(texts, dtype=_dtype(dtype))
        else:
            raise ValueError(f"{prefix}.{name}: unknown column kind {kind!r}")
    names = [column[0] for column in meta["columns"]]
    return pd.DataFrame(data, columns=names, index=pd.RangeIndex(rows))


def encode_json(value: object) -> np.ndarray:
    return np.frombuffer(json.dumps(value).encode("utf-8"), dtype=np.uint8)


def decode_json(blob: np.ndarray) -> object:
    if blob.dtype != np.uint8:
        raise ValueError("not a JSON blob")
    return json.loads(str(np.ascontiguousarray(blob), "utf-8"))
