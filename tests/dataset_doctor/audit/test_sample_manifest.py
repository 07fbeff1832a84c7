"""The audit against ground truth: every defect the sample dataset's manifest lists, found at its file and line,
and nothing reported at a line the manifest does not list; the JSON output shape of design.md section 3."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dataset_doctor.audit import AuditOptions, run_audit
from dataset_doctor.dataset.index import build_index
from dataset_doctor.findings import CHECKS, ERROR


@pytest.fixture(scope="module")
def sample_index(sample_yaml):
    return build_index(sample_yaml, progress=False)


@pytest.fixture(scope="module")
def sample_result(sample_index):
    return run_audit(sample_index)


@pytest.fixture(scope="module")
def manifest(sample_yaml):
    return json.loads((sample_yaml.parent / "manifest.json").read_text())


def place(finding) -> tuple:
    line = finding["line"]
    return (finding["check"], finding["split"], finding["image"], finding["label"],
            None if line is None or pd.isna(line) else int(line))


def test_every_manifest_defect_is_found_with_file_and_line(sample_result, manifest):
    found = {place(f) for f in sample_result.findings.to_dict("records")}
    expected = [(d["check"], d["split"], d["image"], d["label"], d["line"]) for d in manifest["defects"]]
    assert len(expected) >= 20
    missing = [defect for defect in expected if defect not in found]
    assert not missing


def test_no_error_beyond_the_manifest(sample_result, manifest):
    """The sample's valid variety (CRLF, spaces, exponents, polygons, backgrounds) raises no error."""
    errors = {place(f) for f in sample_result.findings.to_dict("records") if f["severity"] == ERROR}
    expected = {(d["check"], d["split"], d["image"], d["label"], d["line"]) for d in manifest["defects"]
                if CHECKS[d["check"]] == ERROR}
    assert errors == expected


def test_line_findings_are_only_at_manifest_lines(sample_result, manifest):
    """No false alarm on a clean line: every finding with a line number is at a deliberately broken line
    (polygons aside, which are information). A tiny 0.001-wide box is also extremely thin: both are reported."""
    manifest_lines = {(d["label"], d["line"]) for d in manifest["defects"] if d["line"] is not None}
    findings = sample_result.findings
    located = findings[findings["line"].notna() & (findings["check"] != "segment-label")]
    assert {(f.label, int(f.line)) for f in located.itertuples()} == manifest_lines


def test_scale_shift_names_the_shifted_class(sample_result, manifest):
    shifted = manifest["classes"][manifest["spec"]["shifted_class"]]
    flagged = sample_result.scale_shift[sample_result.scale_shift["flagged"]]
    assert flagged["class"].tolist() == [shifted]
    assert flagged["side_ratio"].iloc[0] < 0.6


def test_counts_agree_with_the_index(sample_result, sample_index):
    for split in ("train", "val"):
        assert sample_result.instances(split) == sample_index.instances(split).tolist()
    images = sample_index.images
    summary = sample_result.split_summary.set_index("split")
    assert summary.at["train", "images"] == (images["split"] == "train").sum()
    usable_ids = set(sample_index.usable_boxes()["image_id"])
    backgrounds = images["readable"] & ~images["image_id"].isin(usable_ids)
    assert summary["backgrounds"].sum() == backgrounds.sum()


def test_json_has_the_design_shape(sample_result, sample_index):
    data = json.loads(json.dumps(sample_result.to_json_dict()))  # JSON-serialisable as it is
    assert set(data) == {"dataset", "classes", "splits", "findings", "summary"}
    assert data["dataset"].endswith("data.yaml") and data["classes"] == list(sample_index.names)
    assert set(data["splits"]) == {"train", "val"}
    for split, entry in data["splits"].items():
        assert set(entry) == {"images", "backgrounds", "instances"}
        assert all(isinstance(entry[key], int) for key in ("images", "backgrounds"))
        assert entry["instances"] == sample_index.instances(split).tolist()
    assert len(data["findings"]) == len(sample_result.findings)
    for finding in data["findings"]:
        assert list(finding) == ["check", "severity", "split", "image", "label", "line", "message"]
        assert finding["severity"] == CHECKS[finding["check"]]
        assert finding["line"] is None or (isinstance(finding["line"], int) and finding["line"] >= 1)
        assert isinstance(finding["message"], str) and "\n" not in finding["message"]
    severities = [finding["severity"] for finding in data["findings"]]
    assert data["summary"] == {s: severities.count(s) for s in ("error", "warning", "info")}


def test_result_tables_feed_a_report(sample_result, sample_index):
    counts = sample_result.class_counts
    assert len(counts) == 2 * len(sample_index.names)
    train = counts[counts["split"] == "train"]
    assert train["share"].sum() == pytest.approx(1.0)
    assert (train["images"] <= train["instances"]).all()
    assert len(sample_result.box_geometry) == len(sample_index.usable_boxes())
    stats = sample_result.box_stats
    pooled = stats[stats["class_id"] == -1].set_index("split")
    assert pooled.at["train", "instances"] == sum(sample_result.instances("train"))
    assert (pooled[["small", "medium", "large"]].sum(axis=1) == pooled["instances"]).all()
    assert np.allclose(sample_result.class_weights.instances, sample_result.instances("train"))
    pairs = sample_result.duplicate_pairs
    assert set(pairs["check"]) == {"duplicate-image", "split-leak"}
    assert all(path.startswith(sample_result.root) for path in pairs["path_a"])


def test_options_are_recorded(sample_index):
    result = run_audit(sample_index, AuditOptions(imgsz=320, ignore={"few-instances"}))
    assert result.options.imgsz == 320 and "few-instances" not in set(result.findings["check"])
    assert result.options.to_dict()["ignore"] == ["few-instances"]
