"""Finding the audit report of a dataset, so the training report can link to it and use its scale-shift findings.

`doctor audit` writes its report into `doctor_reports/` in the working directory, named after the dataset
(issue 4). The training report does not know which directory `doctor audit` was run from, so it tries a few
candidate paths (`default_audit_candidates`) and takes the first that exists (`find_audit_report`); an explicit
`doctor report --audit-report FILE` wins over both. The audit's JSON (`doctor audit --json`, design.md section 3)
is read when it sits beside the report with the same stem, or when it is the file given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

REPORTS_DIR = "doctor_reports"  # where `doctor audit` writes by default, relative to its working directory
REPORTS_DIR_ENV = "DOCTOR_REPORTS_DIR"  # when set, the default folder instead (tests, CI, a shared folder)
REPORT_SUFFIXES = ("", "-audit", "_audit")  # <dataset>.html, <dataset>-audit.html, <dataset>_audit.html


def reports_dir() -> Path:
    """Where `doctor audit` writes reports by default: $DOCTOR_REPORTS_DIR, else doctor_reports/ (relative to
    the working directory)."""
    return Path(os.environ.get(REPORTS_DIR_ENV) or REPORTS_DIR)


def dataset_report_name(dataset_yaml: str | Path) -> str:
    """The name a dataset's reports are filed under: its folder's name, plus the yaml's stem unless it is the
    usual `data` (so `coco/data.yaml` -> `coco`, `coco/coco128.yaml` -> `coco-coco128`). A relative path is
    taken from the working directory, so `data.yaml` and its absolute path give the same name."""
    path = Path(os.path.abspath(Path(dataset_yaml).expanduser()))
    folder = path.parent.name or "dataset"
    return folder if path.stem in ("data", folder) else f"{folder}-{path.stem}"


def default_audit_candidates(dataset_yamls: Sequence[str | Path], directories: Sequence[str | Path]) -> list[Path]:
    """Where an audit report of any of these datasets may be: <dir>/doctor_reports/<name><suffix>.html for each
    directory, then $DOCTOR_REPORTS_DIR/<name><suffix>.html when that is set (where `doctor audit` wrote it)."""
    folders = [Path(directory) / REPORTS_DIR for directory in directories]
    if os.environ.get(REPORTS_DIR_ENV):
        folders.append(Path(os.environ[REPORTS_DIR_ENV]))
    candidates: list[Path] = []
    for folder in folders:
        for dataset in dataset_yamls:
            name = dataset_report_name(dataset)
            for suffix in REPORT_SUFFIXES:
                candidate = folder / f"{name}{suffix}.html"
                if candidate not in candidates:
                    candidates.append(candidate)
    return candidates


def find_audit_report(candidates: Iterable[str | Path]) -> Path | None:
    """The first candidate that is an existing file."""
    for candidate in candidates:
        path = Path(candidate)
        if path.is_file():
            return path
    return None


def audit_json_for(report: Path) -> Path | None:
    """The audit JSON belonging to a report: the file itself if it is JSON, else <same stem>.json beside it."""
    if report.suffix.lower() == ".json":
        return report if report.is_file() else None
    sibling = report.with_suffix(".json")
    return sibling if sibling.is_file() else None


def scale_shift_notes(audit_json: Path | None, class_names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The audit's scale-shift findings per class name (their messages begin with "class '<name>'").

    A JSON file that cannot be read or has another shape gives no notes: the link is a help, not a requirement.
    """
    if audit_json is None:
        return {}
    try:
        payload = json.loads(audit_json.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    findings = payload.get("findings") if isinstance(payload, dict) else None
    if not isinstance(findings, list):
        return {}
    notes: dict[str, list[str]] = {}
    for finding in findings:
        if not isinstance(finding, dict) or finding.get("check") != "scale-shift":
            continue
        message = str(finding.get("message", ""))
        for name in class_names:
            if message.startswith(f"class '{name}'"):
                notes.setdefault(name, []).append(message)
    return {name: tuple(messages) for name, messages in notes.items()}


def relative_link(target: Path, page: Path) -> str:
    """An href from `page` to `target`: relative when possible (the two files can move together), else a URI."""
    try:
        return Path(os.path.relpath(target.resolve(), page.resolve().parent)).as_posix()
    except ValueError:  # different drives on Windows
        return target.resolve().as_uri()
