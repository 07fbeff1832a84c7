"""The file scan's cache check: labels are trusted on an unchanged stat unless racy, and any edit is seen."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from dataset_doctor.dataset import file_scan
from dataset_doctor.dataset.datayaml import label_path_text
from dataset_doctor.dataset.file_scan import RACY_MARGIN_NS, FileScan, scan_files
from dataset_doctor.dataset.index import build_index
from dataset_doctor.dataset.index_cache import cache_file_for, load_scan

HOUR_NS = 3600 * 10**9


def pairs_of(data_yaml) -> list[tuple[str, str]]:
    images = sorted((data_yaml.parent / "images/train").iterdir())
    return [(str(image), label_path_text(str(image))) for image in images]


@pytest.fixture
def label_reads(monkeypatch) -> list[str]:
    """The label files the cache check reads to hash them."""
    reads: list[str] = []
    real = file_scan.read_label_bytes

    def counting(path):
        reads.append(str(path))
        return real(path)

    monkeypatch.setattr(file_scan, "read_label_bytes", counting)
    return reads


def stamped(scan: FileScan, scanned_at_ns: int) -> FileScan:
    return FileScan(scan.files, scan.boxes, scan.problems, scanned_at_ns)


def test_labels_older_than_the_scan_are_trusted_on_their_stat(make_dataset, label_reads):
    data_yaml = make_dataset({"train": {f"{i}.jpg": "0 0.5 0.5 0.2 0.2\n" for i in range(4)}})
    pairs = pairs_of(data_yaml)
    cold, read = scan_files(pairs)
    assert read == 4 and cold.scanned_at_ns > 0
    later = stamped(cold, cold.scanned_at_ns + HOUR_NS)  # as if the scan had run an hour after the last edit
    warm, read = scan_files(pairs, later)
    assert read == 0 and label_reads == [] and warm is later


def test_labels_changed_near_the_scan_are_hashed(make_dataset, label_reads):
    data_yaml = make_dataset({"train": {f"{i}.jpg": "0 0.5 0.5 0.2 0.2\n" for i in range(4)}})
    pairs = pairs_of(data_yaml)
    cold, _ = scan_files(pairs)  # the labels were written moments ago: within the racy margin of this scan
    warm, read = scan_files(pairs, cold)
    assert read == 0 and sorted(label_reads) == sorted(label for _, label in pairs)


def test_an_edit_in_the_same_clock_tick_is_caught_by_the_hash(make_dataset):
    """The racy case: the stat recorded is the stat after the edit (same tick), only the bytes differ."""
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n", "b.jpg": "0 0.5 0.5 0.2 0.2\n"}})
    pairs = pairs_of(data_yaml)
    cold, _ = scan_files(pairs)
    label = pairs[1][1]
    with open(label, "w") as handle:
        handle.write("1 0.5 0.5 0.2 0.2\n")  # same size
    stat = os.stat(label)
    files = cold.files.copy()
    files.loc[1, ["label_mtime_ns", "label_inode", "label_ctime_ns"]] = [stat.st_mtime_ns, stat.st_ino,
                                                                         stat.st_ctime_ns]
    racy = FileScan(files, cold.boxes, cold.problems, stat.st_ctime_ns)
    scan, read = scan_files(pairs, racy)
    assert read == 1
    assert scan.boxes[scan.boxes[:, 0] == 1][:, 2].tolist() == [1.0]


def test_a_restored_mtime_is_caught_by_the_ctime_without_hashing(make_dataset, label_reads):
    """cp -p, tar and rsync -t restore mtimes: the label's ctime still moves, so even a trusted label is
    re-read."""
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\n", "b.jpg": "0 0.5 0.5 0.2 0.2\n"}})
    pairs = pairs_of(data_yaml)
    cold, _ = scan_files(pairs)
    label = pairs[0][1]
    before = os.stat(label)
    with open(label, "w") as handle:
        handle.write("1 0.5 0.5 0.2 0.2\n")
    os.utime(label, ns=(before.st_atime_ns, before.st_mtime_ns))
    scan, read = scan_files(pairs, stamped(cold, cold.scanned_at_ns + HOUR_NS))
    assert read == 1 and label_reads == []
    assert scan.boxes[scan.boxes[:, 0] == 0][:, 2].tolist() == [1.0]


def test_a_warm_run_restamps_the_cache_once_labels_are_old(make_dataset, monkeypatch, label_reads):
    data_yaml = make_dataset({"train": {f"{i}.jpg": "0 0.5 0.5 0.2 0.2\n" for i in range(2)},
                              "val": {"v.jpg": "0 0.5 0.5 0.1 0.1\n"}})
    build_index(data_yaml, progress=False)
    first = load_scan(cache_file_for(data_yaml))
    assert first is not None and first.scanned_at_ns > 0
    later = first.scanned_at_ns + RACY_MARGIN_NS + 10**9
    monkeypatch.setattr(file_scan, "_now_ns", lambda: later)
    assert build_index(data_yaml, progress=False).files_read == 0
    assert len(label_reads) == 3  # racy for the first scan: hashed, and the cache re-stamped
    assert load_scan(cache_file_for(data_yaml)).scanned_at_ns == later
    label_reads.clear()
    assert build_index(data_yaml, progress=False).files_read == 0
    assert label_reads == []  # trusted from now on


def test_without_change_times_every_label_is_hashed(make_dataset, monkeypatch, label_reads):
    """Windows' st_ctime is the creation time: an edit does not move it, so the stat cannot vouch."""
    monkeypatch.setattr(file_scan, "_CTIME_TRACKS_CHANGES", False)
    data_yaml = make_dataset({"train": {f"{i}.jpg": "0 0.5 0.5 0.2 0.2\n" for i in range(3)}})
    pairs = pairs_of(data_yaml)
    cold, _ = scan_files(pairs)
    scan_files(pairs, stamped(cold, cold.scanned_at_ns + HOUR_NS))
    assert len(label_reads) == 3


def test_the_cache_round_trips_the_scan_exactly_and_its_digest_ignores_the_scan_time(make_dataset, monkeypatch):
    data_yaml = make_dataset({"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\nbad line\n", "b.jpg": None, "c.jpg": ""},
                              "val": {"v.jpg": "1 0.5 0.5 0.1 0.1\n"}})
    index = build_index(data_yaml, progress=False)
    fresh, _ = scan_files(list(zip(index.images["path"], index.images["label_path"])))
    cached = load_scan(cache_file_for(data_yaml))
    pd.testing.assert_frame_equal(cached.files, fresh.files, check_exact=True)
    pd.testing.assert_frame_equal(cached.problems, fresh.problems, check_exact=True)
    assert np.array_equal(cached.boxes, fresh.boxes) and len(cached.problems) == 1
    first_digest = cached.digest
    assert first_digest is not None and len(first_digest) == 32
    monkeypatch.setattr(file_scan, "_now_ns", lambda: cached.scanned_at_ns + RACY_MARGIN_NS + 10**9)
    build_index(data_yaml, progress=False)  # every label aged: the cache is re-stamped, not changed
    restamped = load_scan(cache_file_for(data_yaml))
    assert restamped.scanned_at_ns != cached.scanned_at_ns and restamped.digest == first_digest
    (data_yaml.parent / "labels" / "val" / "v.txt").write_text("1 0.5 0.5 0.1 0.2\n")
    build_index(data_yaml, progress=False)
    assert load_scan(cache_file_for(data_yaml)).digest != first_digest
