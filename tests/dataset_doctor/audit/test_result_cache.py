"""The audit's result cache: a hit equals a fresh audit, and anything the result depends on is a miss."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import dataset_doctor.audit.result_cache as result_cache
import dataset_doctor.audit.runner as runner
from dataset_doctor.array_file import read_arrays, write_arrays
from dataset_doctor.audit import AuditOptions, run_audit
from dataset_doctor.audit.result_cache import TABLES, audit_with_cache, result_cache_file_for
from dataset_doctor.cli import app
from dataset_doctor.dataset.index import build_index
from tests.dataset_doctor.audit_helpers import NAMES, base_splits, grid_label


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """How many times the checks ran."""
    calls: list[int] = []
    real = runner.run_audit

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_audit", counting)
    return calls


@pytest.fixture
def dataset(make_dataset):
    """Findings of many checks: a bad line, an out-of-bounds box, a duplicate box, a missing label."""
    splits = base_splits()
    splits["train"]["t000.jpg"] = grid_label() + "0 0.5 0.5 0.2\n"
    splits["train"]["t001.jpg"] = grid_label() + "1 0.99 0.5 0.2 0.2\n"
    splits["train"]["t002.jpg"] = grid_label() + grid_label().splitlines(keepends=True)[0]
    splits["train"]["t003.jpg"] = None
    splits["train"]["t004.jpg"] = grid_label([0] * 10)
    return make_dataset(splits, names=NAMES)


def assert_same_result(cached, fresh) -> None:
    for name in (*TABLES, "box_geometry"):
        pd.testing.assert_frame_equal(getattr(cached, name), getattr(fresh, name), check_exact=True)
    assert cached.class_weights == fresh.class_weights
    assert cached.to_json_dict() == fresh.to_json_dict()
    assert (cached.dataset, cached.root, cached.classes, cached.splits, cached.task) == \
        (fresh.dataset, fresh.root, fresh.classes, fresh.splits, fresh.task)


def test_a_hit_equals_a_fresh_audit_and_runs_no_check(dataset, counted):
    index = build_index(dataset, progress=False)
    first = audit_with_cache(index)
    assert len(counted) == 1 and result_cache_file_for(dataset).is_file()
    assert len(first.findings) >= 4
    again = audit_with_cache(build_index(dataset, progress=False))
    assert len(counted) == 1  # from the cache
    assert_same_result(again, run_audit(build_index(dataset, progress=False)))
    stored = read_arrays(result_cache_file_for(dataset))  # numbers only: nothing in it can run code
    assert all(array.dtype.kind in "biuf" for array in stored.values())
    assert "box_geometry.<f8" not in stored  # recomputed, not stored


def test_options_code_and_files_are_part_of_the_key(dataset, counted, monkeypatch):
    first = audit_with_cache(build_index(dataset, progress=False))
    assert "class-out-of-range" not in set(first.findings["check"])
    audit_with_cache(build_index(dataset, progress=False), AuditOptions(imgsz=320))
    assert len(counted) == 2
    audit_with_cache(build_index(dataset, progress=False), AuditOptions(ignore={"duplicate-box"}))
    assert len(counted) == 3
    label = dataset.parent / "labels" / "train" / "t005.txt"
    label.write_text(grid_label() + "7 0.5 0.5 0.1 0.1\n")  # a class id out of range
    edited = audit_with_cache(build_index(dataset, progress=False))
    assert len(counted) == 4 and "class-out-of-range" in set(edited.findings["check"])
    monkeypatch.setattr(result_cache, "code_digest", lambda: b"another version")
    audit_with_cache(build_index(dataset, progress=False))
    assert len(counted) == 5
    audit_with_cache(build_index(dataset, progress=False), use_cache=False)
    assert len(counted) == 6


def test_a_damaged_or_foreign_cache_is_a_miss(dataset, counted):
    fresh = audit_with_cache(build_index(dataset, progress=False))
    path = result_cache_file_for(dataset)
    path.write_bytes(path.read_bytes()[:200])  # cut short
    assert_same_result(audit_with_cache(build_index(dataset, progress=False)), fresh)
    assert len(counted) == 2
    with open(path, "wb") as handle:  # intact, but stored under another key
        write_arrays(handle, {"version": np.array(result_cache.RESULT_FORMAT_VERSION), "key": np.zeros(32, np.uint8)})
    audit_with_cache(build_index(dataset, progress=False))
    assert len(counted) == 3


def test_an_unwritable_cache_only_costs_time(dataset, counted, monkeypatch, tmp_path):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    monkeypatch.setenv("DOCTOR_CACHE_DIR", str(blocked))
    result = audit_with_cache(build_index(dataset, progress=False))
    assert len(result.findings) >= 4 and len(counted) == 1


def test_cli_json_is_the_same_from_the_cache_and_no_cache_runs_the_checks(dataset, counted, tmp_path):
    outputs = []
    for number, flags in enumerate(([], [], ["--no-cache"])):
        out = tmp_path / f"audit{number}.json"
        result = CliRunner().invoke(app, ["audit", str(dataset), "--no-html", "--json", str(out), *flags])
        assert result.exit_code == 1, result.output  # the dataset has errors
        outputs.append(json.loads(out.read_text()))
    assert outputs[0] == outputs[1] == outputs[2]
    assert len(counted) == 2  # the first run and --no-cache


def test_the_index_fingerprint_stands_for_its_tables(dataset, counted):
    warm = build_index(dataset, progress=False)
    assert warm.fingerprint is not None and warm.fingerprint == build_index(dataset, progress=False).fingerprint
    assert build_index(dataset, progress=False, use_cache=False).fingerprint is None
    with_fingerprint = result_cache.audit_key(warm, AuditOptions())
    warm.fingerprint = None  # the key then hashes the tables: another key, the same result
    assert result_cache.audit_key(warm, AuditOptions()) != with_fingerprint
    assert_same_result(audit_with_cache(warm), audit_with_cache(build_index(dataset, progress=False)))
    assert len(counted) == 2
    # One image more in the listing (an unlabelled one) changes the fingerprint, and so the key.
    image = next((dataset.parent / "images" / "train").iterdir())
    (image.parent / f"extra{image.suffix}").write_bytes(image.read_bytes())
    grown = build_index(dataset, progress=False)
    assert grown.fingerprint not in (None, with_fingerprint) and len(grown.images) == len(warm.images) + 1
    findings = audit_with_cache(grown).findings
    assert len(counted) == 3
    assert f"images/train/extra{image.suffix}" in set(findings[findings["check"] == "missing-label"]["image"])
