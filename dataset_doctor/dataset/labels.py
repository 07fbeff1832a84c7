"""Parsing YOLO label files into boxes, robust to anything a file can hold.

A label file may contain anything (a crashed export, a binary file with a .txt name, millions of lines):
parsing never raises. Each bad line becomes a problem with its 1-based line number; good lines become boxes.
Clean files (five numbers on every line, the common case) take a vectorised fast path.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_LABEL_BYTES = 64 * 1024 * 1024  # a label file this large is not a label file; parse the start, say so
UTF8_BOM = b"\xef\xbb\xbf"  # a byte-order mark at the start of a file is not part of line 1
_MAX_SHOWN = 24  # characters of a bad value quoted in a message

# Columns of ParsedLabels.boxes
LINE, CLS, CX, CY, W, H = range(6)


@dataclass
class ParsedLabels:
    """The usable rows of one label file and what was wrong with the others."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), dtype=np.float64))  # line cls cx cy w h
    polygon: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # row came from a polygon
    problems: list[tuple[str, int | None, str]] = field(default_factory=list)  # (check id, line, message)
    nonblank_lines: int = 0


def read_label_file(path: str | Path) -> tuple[ParsedLabels | None, str | None]:
    """(parsed labels, None), (None, None) when there is no label file, or (None, reason) when unreadable."""
    parsed, error, _ = read_label_file_with_digest(path)
    return parsed, error


def read_label_file_with_digest(path: str | Path) -> tuple[ParsedLabels | None, str | None, str]:
    """read_label_file plus label_digest of the bytes parsed ("" when there are none): the index cache keys
    label files on their content, and this way the hash costs no second read."""
    try:
        data = read_label_bytes(path)
    except FileNotFoundError:
        return None, None, ""
    except (OSError, ValueError) as error:  # a directory, permissions, a broken link
        return None, f"cannot read label file: {error.__class__.__name__}: {error}", ""
    parsed = parse_label_bytes(data[:MAX_LABEL_BYTES])
    if len(data) > MAX_LABEL_BYTES:
        parsed.problems.append(("malformed-line", None,
                                f"label file is larger than {MAX_LABEL_BYTES // 2**20} MiB: only its start was read"))
    return parsed, None, label_digest(data)


def read_label_bytes(path: str | Path) -> bytes:
    """The bytes of a label file, at most MAX_LABEL_BYTES + 1 (one more tells that it was cut). Raises OSError."""
    with open(path, "rb") as handle:
        # read(n) allocates n bytes up front: ask for the file's size, not the 64 MiB limit.
        return handle.read(min(os.fstat(handle.fileno()).st_size, MAX_LABEL_BYTES) + 1)


def label_digest(data: bytes) -> str:
    """BLAKE2b-128 of a label file's bytes: what tells the cache a label changed when its size and mtime did not
    (`cp -p`, `tar`, `rsync -t` restore mtimes). About a microsecond for a label file, a few percent of parsing it."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def parse_label_bytes(data: bytes) -> ParsedLabels:
    """Parse the content of one label file. Never raises."""
    if data.startswith(UTF8_BOM):  # Windows editors (Notepad) write one; Ultralytics ignores it too
        data = data[len(UTF8_BOM):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        parsed = _parse_clean_text(text)
        if parsed is not None:
            return parsed
    return _parse_line_by_line(data)


def _parse_clean_text(text: str) -> ParsedLabels | None:
    """Fast path: every non-blank line is five finite numbers with an integer class. None means 'not clean'."""
    if "_" in text:  # Python floats accept 1_000; label files must not
        return None
    line_fields = [(number, fields) for number, row in enumerate(text.split("\n"), start=1)
                   if (fields := row.split())]
    if any(len(fields) != 5 for _, fields in line_fields):
        return None
    if not line_fields:
        return ParsedLabels()
    try:
        values = np.array([fields for _, fields in line_fields], dtype=np.float64)
    except (ValueError, OverflowError):
        return None
    classes = values[:, 0]
    if not np.isfinite(values).all() or not np.array_equal(classes, np.round(classes)) or \
            np.abs(classes).max() > 2**31 - 1:
        return None
    lines = np.array([number for number, _ in line_fields], dtype=np.float64)
    boxes = np.column_stack([lines, values])
    return ParsedLabels(boxes=boxes, polygon=np.zeros(len(boxes), dtype=bool), nonblank_lines=len(boxes))


def _parse_line_by_line(data: bytes) -> ParsedLabels:
    rows: list[list[float]] = []
    polygon: list[bool] = []
    problems: list[tuple[str, int | None, str]] = []
    nonblank = 0
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError:
            nonblank += 1
            problems.append(("malformed-line", number, "not UTF-8 text"))
            continue
        fields = line.split()
        if not fields:
            continue
        nonblank += 1
        values, is_polygon, problem = _parse_fields(fields)
        if problem is not None:
            problems.append((problem[0], number, problem[1]))
            continue
        rows.append([float(number), *values])
        polygon.append(is_polygon)
    boxes = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return ParsedLabels(boxes=boxes, polygon=np.array(polygon, dtype=bool), problems=problems,
                        nonblank_lines=nonblank)


def _parse_fields(fields: list[str]) -> tuple[list[float], bool, tuple[str, str] | None]:
    """([cls, cx, cy, w, h], came from a polygon, None), or ([], False, (check id, message)) for a bad line."""
    count = len(fields)
    is_polygon = count >= 7 and count % 2 == 1
    if count != 5 and not is_polygon:
        return [], False, ("malformed-line", f"{count} values: expected 5 (class cx cy w h) or a polygon "
                                             "(class x1 y1 ... xn yn, at least 3 points)")
    numbers = []
    for text in fields:
        value = parse_number(text)
        if value is None:
            return [], False, ("malformed-line", f"not a number: {shown_value(text)}")
        numbers.append(value)
    if not all(math.isfinite(v) for v in numbers):
        bad = next(text for text, v in zip(fields, numbers) if not math.isfinite(v))
        return [], False, ("malformed-line", f"nan or inf value: {shown_value(bad)}")
    class_value = numbers[0]
    if class_value != round(class_value) or abs(class_value) > 2**31 - 1:
        return [], False, ("class-out-of-range", f"class {shown_value(fields[0])} is not an integer id")
    if is_polygon:
        xs, ys = numbers[1::2], numbers[2::2]
        x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
        return [class_value, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], True, None
    return numbers, False, None


def parse_number(text: str) -> float | None:
    """A float from a label or prediction field, or None; Python's float() accepts 1_000, label files must not."""
    if "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def shown_value(text: str) -> str:
    """A bad field as quoted in a one-line message (shortened)."""
    return repr(text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "...")
