"""Reading a model's predictions saved as YOLO txt files, one per image (design.md section 3).

Each file is named after its image (`<image stem>.txt`) and holds one detection per line,
`class cx cy w h confidence`, coordinates normalized to [0, 1]: the format Ultralytics writes with
`save_txt=True, save_conf=True`, and the one `doctor train` writes to predictions/. An image without a file
has no detections (Ultralytics writes no file when nothing is detected). Unlike label files, a bad prediction
line cannot be skipped without changing the score, so it is an error naming the file and line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_doctor.dataset.labels import parse_number, shown_value
from dataset_doctor.errors import DoctorError

FIELDS = ("class", "cx", "cy", "w", "h", "confidence")
CLS, CX, CY, W, H, CONFIDENCE = range(len(FIELDS))
# Normalized coordinates beyond this are not a slightly overhanging box but pixel values in the wrong format.
NORMALIZED_LIMIT = 2.0


@dataclass(frozen=True)
class PredictionFiles:
    """Predictions of a directory, aligned with the images asked for."""

    per_image: list[np.ndarray]  # per image: (n, 6) float64 [class, cx, cy, w, h, confidence], normalized
    files_read: int  # prediction files that matched an image
    unmatched: list[str]  # names of prediction files that match no image (ignored)


def read_prediction_dir(directory: str | Path, stems: Sequence[str], num_classes: int) -> PredictionFiles:
    """Read `<stem>.txt` from `directory` for each image stem (missing file: no detections).

    Raises DoctorError when the directory is missing, or holds prediction files of which none matches an image
    (wrong directory or wrong names), or when a file has a malformed line.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DoctorError("predictions directory not found", directory)
    files = {path.stem: path for path in directory.glob("*.txt") if path.is_file()}
    nested = directory / "labels"
    if not files and nested.is_dir() and any(nested.glob("*.txt")):
        raise DoctorError(f"no .txt prediction files here, but '{nested}' has some: pass --predictions {nested}",
                          directory)
    wanted = set(stems)
    matched = [stem for stem in files if stem in wanted]
    unmatched = sorted(f"{stem}.txt" for stem in files if stem not in wanted)
    if files and not matched:
        raise DoctorError(f"none of the {len(files)} prediction files is named after an image of this split "
                          f"(e.g. '{unmatched[0]}'); name them <image stem>.txt", directory)
    per_image = [read_prediction_file(files[stem], num_classes) if stem in files else _no_predictions()
                 for stem in stems]
    return PredictionFiles(per_image=per_image, files_read=len(matched), unmatched=unmatched)


def read_prediction_file(path: str | Path, num_classes: int) -> np.ndarray:
    """(n, 6) float64 [class, cx, cy, w, h, confidence] of one file; DoctorError naming file:line if malformed."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise DoctorError(f"cannot read prediction file: {error.strerror or error}", path) from None
    try:
        text = data.decode("utf-8-sig")  # a leading byte-order mark (Windows editors) is not part of line 1
    except UnicodeDecodeError:
        line = next(number for number, raw in enumerate(data.split(b"\n"), start=1) if not _is_utf8(raw))
        raise DoctorError("not UTF-8 text", path, line) from None
    numbered = [(number, fields) for number, row in enumerate(text.split("\n"), start=1) if (fields := row.split())]
    if not numbered:
        return _no_predictions()
    values = _fast_parse(numbered, num_classes)
    if values is None:  # something is wrong: find the first bad line and say what
        for number, fields in numbered:
            problem = _line_problem(fields, num_classes)
            if problem:
                raise DoctorError(problem, path, number)
        raise AssertionError("fast path rejected a file the line checks accept")  # pragma: no cover
    return values


def _fast_parse(numbered: list[tuple[int, list[str]]], num_classes: int) -> np.ndarray | None:
    """Every line checked at once; None if any line is bad (the slow path then names it)."""
    if any(len(fields) != len(FIELDS) or any("_" in field for field in fields) for _, fields in numbered):
        return None
    try:
        values = np.array([fields for _, fields in numbered], dtype=np.float64)
    except (ValueError, OverflowError):
        return None
    return values if _valid_rows(values, num_classes).all() else None


def _line_problem(fields: list[str], num_classes: int) -> str | None:
    if len(fields) != len(FIELDS):
        hint = ": no confidence (save predictions with their confidence, e.g. save_conf=True)" \
            if len(fields) == len(FIELDS) - 1 else ""
        return f"{len(fields)} values, expected 6 ({' '.join(FIELDS)}){hint}"
    numbers = []
    for name, text in zip(FIELDS, fields):
        value = parse_number(text)
        if value is None or not math.isfinite(value):
            return f"{name} is not a finite number: {shown_value(text)}"
        numbers.append(value)
    row = np.array([numbers])
    if _valid_rows(row, num_classes).all():
        return None
    cls = numbers[CLS]
    if cls != round(cls) or not 0 <= cls < num_classes:
        return f"class {shown_value(fields[CLS])} is not an integer in 0..{num_classes - 1}"
    if numbers[W] < 0 or numbers[H] < 0:
        return f"negative width or height (w={fields[W]}, h={fields[H]})"
    return (f"coordinates must be normalized to 0-1 (got cx={fields[CX]} cy={fields[CY]} w={fields[W]} "
            f"h={fields[H]}): pixel values?")


def _valid_rows(values: np.ndarray, num_classes: int) -> np.ndarray:
    cls = values[:, CLS]
    coordinates = values[:, CX:CONFIDENCE]
    return (np.isfinite(values).all(axis=1) & (cls == np.round(cls)) & (cls >= 0) & (cls < num_classes)
            & (values[:, W] >= 0) & (values[:, H] >= 0) & (np.abs(coordinates) <= NORMALIZED_LIMIT).all(axis=1))


def _no_predictions() -> np.ndarray:
    return np.zeros((0, len(FIELDS)), dtype=np.float64)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
