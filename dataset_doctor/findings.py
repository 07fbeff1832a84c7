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
    "empty-label": INFO,
    "segment-label": INFO,
}

FINDING_COLUMNS = ["check", "severity", "split", "image", "label", "line", "message"]


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
