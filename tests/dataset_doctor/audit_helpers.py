"""A clean base dataset for audit tests: each test adds exactly one defect and expects exactly one check.

The base passes every check at the default thresholds: two classes with 100 train instances each (few-instances
needs 100), both in val with the same box sizes (no scale-shift), distinct noise images, boxes on a grid that
never overlap, nothing tiny or thin.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from dataset_doctor.audit import AuditOptions, AuditResult, run_audit
from dataset_doctor.dataset.index import build_index
from dataset_doctor.findings import INFO

NAMES = ["cat", "dog"]
GRID = [(0.1 + 0.2 * column, 0.25 + 0.5 * row) for row in range(2) for column in range(5)]


def grid_label(classes: list[int] | None = None, w: float = 0.1, h: float = 0.2) -> str:
    """Ten boxes on a 5x2 grid (centres 0.2 apart in x, 0.5 in y): five of class 0, five of class 1 by default."""
    classes = classes if classes is not None else [0, 1] * 5
    return "".join(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for cls, (cx, cy) in zip(classes, GRID))


def base_splits(train_images: int = 20, val_images: int = 6) -> dict[str, dict[str, object]]:
    return {
        "train": {f"t{number:03d}.jpg": grid_label() for number in range(train_images)},
        "val": {f"v{number:03d}.jpg": grid_label() for number in range(val_images)},
    }


def audit(data_yaml: Path, **options) -> AuditResult:
    return run_audit(build_index(data_yaml, progress=False), AuditOptions(**options))


def problems(result: AuditResult) -> set[str]:
    """Checks with an error or warning finding."""
    findings = result.findings
    return set(findings.loc[findings["severity"] != INFO, "check"])


def places(result: AuditResult, check: str) -> list[tuple]:
    """(split, image, label, line) of every finding of one check."""
    findings = result.findings[result.findings["check"] == check]
    return [(f.split, f.image, f.label, None if pd.isna(f.line) else int(f.line)) for f in findings.itertuples()]


def rewrite_image(path: Path, transform) -> None:
    """Replace an image by an edited copy of itself (same format)."""
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
    ok, encoded = cv2.imencode(path.suffix, np.ascontiguousarray(transform(pixels)))
    assert ok
    path.write_bytes(encoded.tobytes())
