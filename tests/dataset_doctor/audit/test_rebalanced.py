"""The audit of a `doctor rebalance` output: copies are not new observations for the scale-shift test, and
rebalance.json's per-class before/after is read (a broken or foreign one is ignored)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from dataset_doctor.audit.checks_shift import scale_shift_table
from dataset_doctor.audit.options import AuditOptions
from dataset_doctor.audit.rebalanced import read_rebalance_origin, rebalance_table


def _geometry(train: np.ndarray, val: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"split": ["train"] * len(train) + ["val"] * len(val), "cls": 0,
                         "area_imgsz": np.r_[train, val]})


def test_copies_of_few_boxes_are_tested_as_those_few() -> None:
    """Six train boxes copied 80 times each against 30 val boxes of other sizes: counted as 480 they are a
    'shift' (p tiny); counted as the 6 they came from, too few to test, as in the source."""
    rng = np.random.default_rng(0)
    six = np.exp(rng.normal(7, 1, 6))
    train, val = np.repeat(six, 80), np.exp(rng.normal(7.8, 1, 30))
    counted_all = scale_shift_table(_geometry(train, val), ["x"], AuditOptions())
    assert counted_all.at[0, "flagged"] and counted_all.at[0, "train_sources"] == 480
    as_sources = scale_shift_table(_geometry(train, val), ["x"], AuditOptions(), train_sources=np.array([6]))
    assert not as_sources.at[0, "tested"] and not as_sources.at[0, "flagged"]
    assert as_sources.at[0, "train_sources"] == 6


def test_a_real_shift_among_enough_sources_is_still_found() -> None:
    rng = np.random.default_rng(1)
    sources = np.exp(rng.normal(6, 0.5, 200))
    train, val = np.repeat(sources, 3), np.exp(rng.normal(7.5, 0.5, 60))
    table = scale_shift_table(_geometry(train, val), ["x"], AuditOptions(), train_sources=np.array([200]))
    assert table.at[0, "flagged"] and table.at[0, "statistic"] > 0.8


def _write(root: Path, record: dict | str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a, b]\n")
    (root / "rebalance.json").write_text(record if isinstance(record, str) else json.dumps(record))
    return root / "data.yaml"


def test_rebalance_json_gives_before_each_method_written_and_now(tmp_path: Path) -> None:
    record = {"classes": ["a", "b"], "before": [100, 10], "target": 50, "method": "paste",
              "object_methods": {"chosen": "paste", "methods": {
                  "images": {"instances": [300, 50]}, "paste": {"instances": [100, 50]},
                  "auto": {"instances": [110.5, 50]}}, "written": {"instances": [99, 50]}}}
    origin = read_rebalance_origin(_write(tmp_path / "ok", record), ["a", "b"])
    assert origin is not None and origin.method == "paste"
    table = rebalance_table(origin, ["a", "b"], [99, 50])
    assert list(table.columns) == ["class", "before", "images", "paste", "auto", "written", "now"]
    assert table.loc[1].tolist() == ["b", 10, 50, 50, 50, 50, 50]
    assert table.loc[0, "auto"] == 110.5


def test_broken_or_foreign_rebalance_json_is_ignored(tmp_path: Path) -> None:
    assert read_rebalance_origin(_write(tmp_path / "broken", "{not json"), ["a", "b"]) is None
    foreign = {"classes": ["x", "y"], "before": [1, 2], "target": 5}
    assert read_rebalance_origin(_write(tmp_path / "foreign", foreign), ["a", "b"]) is None
    short = {"classes": ["a", "b"], "before": [1], "target": 5}
    assert read_rebalance_origin(_write(tmp_path / "short", short), ["a", "b"]) is None
    assert read_rebalance_origin(tmp_path / "none" / "data.yaml", ["a", "b"]) is None
