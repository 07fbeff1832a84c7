"""`doctor fix --apply-suggestions REVIEWED.csv`: the label-error suspects a person accepted, as line changes.

The CSV is the `label_review.csv` of `doctor audit --predictions` (checks_predictions.REVIEW_COLUMNS) with the
`accept` column filled in. Only rows whose accept is yes / y / 1 / true / x are applied:
- missing-box adds the line `suggested_class cx cy w h` (box) to the image's label file (created if absent);
- wrong-class changes the class id of the line (the rest of the line is kept as written);
- mislocated-box replaces the line's box by the proposed one (class kept);
- spurious-box drops the line.
A label row must still describe the label file: the line must hold the class and box (label_box) the audit saw,
else the file changed since the audit and the row is refused (one line naming the CSV row): applying it would
edit some other box.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.errors import DoctorError

ACCEPT = frozenset(("yes", "y", "1", "true", "x"))
REJECT = frozenset(("", "no", "n", "0", "false"))
ADD_BOX, CHANGE_CLASS, MOVE_BOX, DROP_SPURIOUS = "add-box", "change-class", "move-box", "drop-spurious-box"
ACTIONS = {"missing-box": ADD_BOX, "wrong-class": CHANGE_CLASS, "mislocated-box": MOVE_BOX,
           "spurious-box": DROP_SPURIOUS}
REQUIRED = ("check", "image", "line", "class", "suggested_class", "box", "label_box", "accept")
_BOX_TOLERANCE = 2e-6  # the CSV writes 6 decimals


@dataclass(frozen=True)
class Suggestion:
    """One accepted row, checked against the current label file."""

    row: int  # line of the CSV file (the header is line 1)
    check: str
    image_id: int  # in the index
    line: int | None  # label line (None for missing-box)
    cls: int  # the class the line gets (missing-box, wrong-class) or keeps
    box: tuple[float, float, float, float] | None  # the box the line gets (missing-box, mislocated-box)
    score: str

    @property
    def action(self) -> str:
        return ACTIONS[self.check]

    @property
    def reason(self) -> str:
        return f"{self.check} accepted in the review CSV (row {self.row}, score {self.score})"

    def new_line(self, current: str | None) -> str:
        """The label line after the change ('' for a drop); `current` is the line as it stands."""
        if self.check == "spurious-box":
            return ""
        if self.check == "wrong-class":
            fields = (current or "").split()
            return " ".join([str(self.cls), *fields[1:]])
        assert self.box is not None
        return f"{self.cls} " + " ".join(f"{value:.6f}" for value in self.box)


def read_suggestions(path: str | Path, index: DatasetIndex) -> list[Suggestion]:
    """The accepted rows of a review CSV, each checked against the index; DoctorError naming the CSV row."""
    path = Path(path).expanduser()
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise DoctorError("review CSV not found", path) from None
    except (OSError, UnicodeDecodeError) as error:
        raise DoctorError(f"cannot read the review CSV: {getattr(error, 'strerror', None) or error}", path) from None
    if not rows:
        raise DoctorError("the review CSV is empty (expected the label_review.csv of doctor audit --predictions)",
                          path)
    header = [name.strip() for name in rows[0]]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise DoctorError(f"not a label_review.csv of doctor audit --predictions: no column {', '.join(missing)}",
                          path, 1)
    position = {name: header.index(name) for name in header}
    images = index.images.drop_duplicates("image")
    image_ids = dict(zip(images["image"], images["image_id"]))
    boxes = index.boxes
    box_at = {(int(image_id), int(line)): row for row, (image_id, line) in
              enumerate(zip(boxes["image_id"].to_numpy(), boxes["line"].to_numpy()))}
    values = boxes[["cls", "cx", "cy", "w", "h"]].to_numpy()
    accepted: list[Suggestion] = []
    seen: dict[tuple[int, int], int] = {}
    for number, raw in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in raw):
            continue
        record = {name: (raw[at].strip() if at < len(raw) else "") for name, at in position.items()}
        accept = record["accept"].lower()
        if accept in REJECT:
            continue
        if accept not in ACCEPT:
            raise DoctorError(f"accept is {record['accept']!r}: write yes (or y, 1, true, x) to apply the row, "
                              "leave it empty or write no to skip it", path, number)
        suggestion = _suggestion(record, number, path, index, image_ids, box_at, values)
        if suggestion.line is not None:
            key = (suggestion.image_id, suggestion.line)
            if key in seen:
                raise DoctorError(f"{record['label']}:{suggestion.line} is also accepted in row {seen[key]}: "
                                  "accept one change per label line", path, number)
            seen[key] = number
        accepted.append(suggestion)
    return accepted


def _suggestion(record: dict[str, str], number: int, path: Path, index: DatasetIndex, image_ids: dict,
                box_at: dict, values: np.ndarray) -> Suggestion:
    check = record["check"]
    if check not in ACTIONS:
        raise DoctorError(f"check {check!r} has no suggestion to apply (expected one of {', '.join(ACTIONS)})",
                          path, number)
    image_id = image_ids.get(record["image"])
    if image_id is None:
        raise DoctorError(f"image {record['image']!r} is not in this dataset (audited another one?)", path, number)
    box = _box(record["box"], "box", path, number) if check in ("missing-box", "mislocated-box") else None
    if check == "missing-box":
        cls = _class(record["suggested_class"], "suggested_class", index.nc, path, number)
        return Suggestion(number, check, int(image_id), None, cls, box, record.get("score", ""))
    line = _integer(record["line"], "line", path, number)
    label_class = _class(record["class"], "class", index.nc, path, number)
    label_box = _box(record["label_box"], "label_box", path, number)
    row = box_at.get((int(image_id), line))
    current = values[row] if row is not None else None
    if current is None or int(current[0]) != label_class or not np.allclose(current[1:5], label_box, rtol=0,
                                                                            atol=_BOX_TOLERANCE):
        now = "no box" if current is None else f"class {int(current[0])} at " + " ".join(
            f"{v:.6f}" for v in current[1:5])
        raise DoctorError(f"{record['label']}:{line} no longer matches the audit (it holds {now}, the audit saw "
                          f"class {label_class} at {record['label_box']}): the label file changed since; audit "
                          "again", path, number)
    cls = _class(record["suggested_class"], "suggested_class", index.nc, path, number) \
        if check == "wrong-class" else label_class
    return Suggestion(number, check, int(image_id), line, cls, box, record.get("score", ""))


def _integer(text: str, name: str, path: Path, number: int) -> int:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value != int(value):
        raise DoctorError(f"{name} is not an integer: {text!r}", path, number)
    return int(value)


def _class(text: str, name: str, nc: int, path: Path, number: int) -> int:
    value = _integer(text, name, path, number)
    if not 0 <= value < nc:
        raise DoctorError(f"{name} {value} is not a class id of this dataset (0..{nc - 1})", path, number)
    return value


def _box(text: str, name: str, path: Path, number: int) -> tuple[float, float, float, float]:
    try:
        box = tuple(float(value) for value in text.split())
    except ValueError:
        box = ()
    if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
        raise DoctorError(f"{name} must be four numbers 'cx cy w h' with w, h > 0, got {text!r}", path, number)
    return box  # type: ignore[return-value]


def suggestions_by_image(suggestions: list[Suggestion]) -> dict[int, list[Suggestion]]:
    """Accepted suggestions per image id, in CSV order (ids of an image's first listing, as fix copies it)."""
    by_image: dict[int, list[Suggestion]] = {}
    for suggestion in suggestions:
        by_image.setdefault(suggestion.image_id, []).append(suggestion)
    return by_image
