"""Check ids, their severities, the finding record every stage reports problems in (design.md section 2), and
the next step every piece of advice is given as (audit priorities and the training diagnosis alike)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITY_RANK = {ERROR: 0, WARNING: 1, INFO: 2}

# check id -> severity, in the order of design.md section 2 (the order reports list them in).
CHECKS: dict[str, str] = {
    "corrupt-image": ERROR,
    "malformed-line": ERROR,
    "class-out-of-range": ERROR,
    "out-of-bounds": ERROR,
    "degenerate-box": ERROR,
    "names-mismatch": ERROR,
    "missing-label": WARNING,
    "orphan-label": WARNING,
    "duplicate-box": WARNING,
    "tiny-box": WARNING,
    "extreme-aspect": WARNING,
    "mixed-label-types": WARNING,
    "unused-class": WARNING,
    "missing-in-val": WARNING,
    "class-imbalance": WARNING,
    "few-instances": WARNING,
    "duplicate-image": WARNING,
    "split-leak": WARNING,
    "scale-shift": WARNING,
    "non-utf8-name": WARNING,
    "symlink-loop": WARNING,
    "huge-image": WARNING,
    # classification datasets only (folder-per-class, dataset/classify_index.py and audit/classify.py)
    "misplaced-image": WARNING,
    "tiny-image": WARNING,
    "color-mode-mix": WARNING,
    "size-shift": WARNING,
    "missing-box": WARNING,  # the four label-error checks need --predictions (audit/label_errors.py)
    "wrong-class": WARNING,
    "mislocated-box": WARNING,
    "spurious-box": WARNING,
    "empty-label": INFO,
    "segment-label": INFO,
    "non-image-file": INFO,
}

FINDING_COLUMNS = ["check", "severity", "split", "image", "label", "line", "message"]
# Extra fields of the label-error findings (absent from the others): how likely an error (0-1), the proposed or
# predicted box [cx, cy, w, h] (normalized), the class the model suggests.
LABEL_ERROR_FIELDS = ["score", "box", "suggested_class"]


def display_name(text: str) -> str:
    """A path as text that can be printed and written anywhere: bytes that are not UTF-8 (os.fsdecode's
    surrogates) as backslash escapes, `bad\\udcff\\udcfe.jpg`: the one display form of such names in reports, CSV
    and the terminal (JSON holds the name itself, its surrogates as \\u escapes)."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def is_undecodable_name(text: str) -> bool:
    """True for a path with bytes that are not UTF-8 (os.fsdecode turned them into surrogates)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass(frozen=True)
class Finding:
    """One problem at one place: paths relative to the dataset root, `line` 1-based."""

    check: str
    split: str | None
    image: str | None
    label: str | None
    line: int | None
    message: str

    @property
    def severity(self) -> str:
        return CHECKS[self.check]

    def to_dict(self) -> dict:
        record = asdict(self)
        record["severity"] = self.severity
        return {column: record[column] for column in FINDING_COLUMNS}


@dataclass(frozen=True)
class NextStep:
    """Something to do: why, in a sentence, and the exact command that does it (None when it is manual work)."""

    text: str
    command: str | None = None


def findings_frame(findings: list[Finding] | list[dict]) -> pd.DataFrame:
    """A findings table with the standard columns (empty lists give an empty, well-typed table)."""
    records = [f.to_dict() if isinstance(f, Finding) else f for f in findings]
    frame = pd.DataFrame.from_records(records, columns=FINDING_COLUMNS)
    frame["line"] = frame["line"].astype("Int64")
    return frame
