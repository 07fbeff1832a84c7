"""What an audit found, in the form every consumer needs: the terminal summary, `--json`, the HTML report.

The tables are computed once by `run_audit`; nothing downstream should need to recompute them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dataset_doctor.atomic import atomic_write_text
from dataset_doctor.audit.label_errors import LABEL_ERROR_CHECKS
from dataset_doctor.audit.options import AuditOptions
from dataset_doctor.errors import DoctorError
from dataset_doctor.findings import CHECKS, ERROR, FINDING_COLUMNS, INFO, WARNING
from dataset_doctor.weights import ClassWeights

EXIT_OK, EXIT_FINDINGS = 0, 1
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass
class AuditResult:
    """The audit of one dataset.

    Tables (pandas):
    - findings: FINDING_COLUMNS (check, severity, split, image, label, line, message), ordered by check as in
      design.md, then split, file and line; checks in options.ignore are absent.
    - split_summary: per split: images listed, readable, backgrounds (readable, no usable box), label_files,
      boxes (every parsed box), instances (usable boxes), unusable_boxes.
    - class_counts: per split and class: images holding the class, usable instances, share of the split.
    - box_geometry: one row per usable box: normalised box, image size, pixel width / height / area / aspect at
      the original size and at imgsz (see box_stats.box_geometry).
    - box_stats: per split and class (class_id -1 pools all classes): COCO small / medium / large counts at the
      original size and at imgsz, and 5/25/50/75/95th percentiles of every box measure.
    - duplicate_pairs: one row per image reported as duplicate-image or split-leak, with its earliest match
      (relative and absolute paths of both; checks_images.PAIR_COLUMNS).
    - scale_shift: per class: train/val instances, KS statistic and p-value, median box sides, the distinct
      train boxes counted (fewer in a rebalance output), flagged.
    - rebalance: for a `doctor rebalance` output (its rebalance.json), per class: before, each method's
      expected count, written, now (audit/rebalanced.rebalance_table); None otherwise.
    """

    dataset: str  # the data.yaml path
    root: str  # the dataset root every relative path in the tables is relative to
    classes: list[str]
    splits: list[str]
    options: AuditOptions
    findings: pd.DataFrame
    split_summary: pd.DataFrame
    class_counts: pd.DataFrame
    class_weights: ClassWeights  # suggested weights from the train instances (doctor weights' default method)
    box_geometry: pd.DataFrame
    box_stats: pd.DataFrame
    duplicate_pairs: pd.DataFrame
    scale_shift: pd.DataFrame
    files_read: int = 0  # files read during this run's index build (0: everything came from the cache)
    # With --predictions: checks_predictions.SUSPECT_COLUMNS, one row per label-error suspect, best score first
    # (also those of ignored checks: the review CSV leaves them out itself); None without predictions.
    label_suspects: pd.DataFrame | None = None
    # With --predictions / --model: where the predictions came from and which splits are in-sample (the JSON's
    # "label_audit"; cli/audit_model.py); None without predictions, and then absent from the JSON.
    label_audit: dict | None = None
    # "detect", or "classify" for a folder-per-class dataset (audit/classify.py): then every instance is an image,
    # box_geometry / box_stats are empty and scale_shift compares image sizes
    task: str = "detect"
    rebalance: pd.DataFrame | None = None
    rebalance_method: str | None = None  # the --method the rebalance output was written with

    @property
    def summary(self) -> dict[str, int]:
        counts = self.findings["severity"].value_counts()
        return {severity: int(counts.get(severity, 0)) for severity in SEVERITIES}

    def instances(self, split: str) -> list[int]:
        """Usable boxes per class in one split."""
        return self.class_counts.loc[self.class_counts["split"] == split, "instances"].astype(int).tolist()

    def failed(self, fail_on: str | None = None) -> bool:
        """Whether the audit fails: any error, or with fail_on="warning" any warning too."""
        fail_on = fail_on or self.options.fail_on
        summary = self.summary
        return summary[ERROR] > 0 or (fail_on == WARNING and summary[WARNING] > 0)

    def exit_code(self, fail_on: str | None = None) -> int:
        return EXIT_FINDINGS if self.failed(fail_on) else EXIT_OK

    def findings_by_check(self) -> pd.DataFrame:
        """check, severity, count per check that has findings, in design.md order."""
        counts = self.findings.groupby("check", sort=False).size()
        ordered = [check for check in CHECKS if check in counts.index]
        return pd.DataFrame({"check": ordered, "severity": [CHECKS[c] for c in ordered],
                             "count": [int(counts[c]) for c in ordered]})

    def to_json_dict(self) -> dict:
        """The design.md section 3 shape of `doctor audit --json`."""
        summary = self.split_summary.set_index("split")
        splits = {split: {"images": int(summary.at[split, "images"]),
                          "backgrounds": int(summary.at[split, "backgrounds"]),
                          "instances": self.instances(split)} for split in self.splits}
        data = {"dataset": self.dataset, "classes": list(self.classes), "splits": splits,
                "findings": findings_records(self.findings), "summary": self.summary}
        if self.label_audit is not None:
            data["label_audit"] = self.label_audit
        if self.task != "detect":  # detection JSON keeps its exact shape; a classification one says what it is
            data = {"task": self.task, **data}
        if self.rebalance is not None:  # only for a doctor rebalance output
            data["rebalance"] = {"method": self.rebalance_method,
                                 "per_class": self.rebalance.to_dict(orient="records")}
        return data


def findings_records(findings: pd.DataFrame) -> list[dict]:
    """Findings as JSON-ready dicts: plain Python values, None for missing ones. Fields beyond FINDING_COLUMNS
    (the label-error checks' score, box, suggested_class) appear only on the findings that have them."""
    columns = {}
    for name in findings.columns:
        column = findings[name]
        if name == "line":
            columns[name] = [None if pd.isna(value) else int(value) for value in column.tolist()]
        else:
            columns[name] = [None if value is None or (isinstance(value, float) and pd.isna(value)) else value
                             for value in column.tolist()]
    names = list(columns)
    records = [dict(zip(names, values)) for values in zip(*columns.values())]
    extra = [name for name in names if name not in FINDING_COLUMNS]
    if extra:
        for record in records:
            if record["check"] not in LABEL_ERROR_CHECKS:
                for name in extra:
                    del record[name]
    return records


def write_json(data: dict, path: str | Path) -> None:
    """Write JSON atomically (temporary sibling, then rename): a pipeline never reads half a file."""
    path = Path(path).expanduser()
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if not path.parent.is_dir():
        raise DoctorError("cannot write JSON: the directory does not exist", path)
    try:
        atomic_write_text(path, text)
    except OSError as error:
        raise DoctorError(f"cannot write JSON: {error.strerror or error}", path) from None
