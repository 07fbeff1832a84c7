"""The on-disk cache of file scans: under the user's cache directory, never inside the dataset.

Stale caches are a known complaint about other tools, so the cache is per file, not per dataset: a file is
reused only when its image and label sizes and modification times (nanoseconds) are unchanged, and the cache
is ignored entirely when it was written by another version of the scanner. It is stored as a NumPy archive
read with `allow_pickle=False`: loading a cache never runs code.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from dataset_doctor.file_scan import BOX_COLUMNS, FILE_COLUMNS, PROBLEM_COLUMNS, FileScan

SCAN_FORMAT_VERSION = 2  # bump when what a scan records, or how, changes: old caches are then ignored


def cache_dir() -> Path:
    """$DOCTOR_CACHE_DIR, else $XDG_CACHE_HOME/dataset-doctor, else ~/.cache/dataset-doctor."""
    explicit = os.environ.get("DOCTOR_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "dataset-doctor"


def cache_file_for(yaml_path: Path) -> Path:
    """One cache file per data.yaml location (named by a hash of its absolute path)."""
    key = hashlib.sha1(str(yaml_path.resolve()).encode()).hexdigest()[:20]
    return cache_dir() / "index" / f"{key}.npz"


def load_scan(path: Path) -> FileScan | None:
    """The cached scan, or None if there is none or it cannot be used (wrong version, damaged)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if int(archive["version"]) != SCAN_FORMAT_VERSION:
                return None
            files = pd.DataFrame({
                name: pd.Series(archive[f"files.{name}"].tolist() if kind is str else archive[f"files.{name}"],
                                dtype=object if kind is str else kind)
                for name, kind in FILE_COLUMNS.items()
            })
            boxes = archive["boxes"].reshape(-1, len(BOX_COLUMNS))
            problems = pd.DataFrame({
                "file": archive["problems.file"], "check": archive["problems.check"].tolist(),
                "line": archive["problems.line"], "message": archive["problems.message"].tolist(),
            }, columns=PROBLEM_COLUMNS)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return FileScan(files, boxes, problems)


def save_scan(path: Path, scan: FileScan) -> None:
    """Write atomically (temporary file, then rename): a killed run never leaves a half-written cache."""
    arrays: dict[str, np.ndarray] = {"version": np.array(SCAN_FORMAT_VERSION)}
    for name, kind in FILE_COLUMNS.items():
        values = scan.files[name].to_numpy()
        arrays[f"files.{name}"] = np.array(values.tolist(), dtype=str) if kind is str else values.astype(kind)
    arrays["boxes"] = scan.boxes.astype(np.float64)
    arrays["problems.file"] = scan.problems["file"].to_numpy(dtype=np.int64)
    arrays["problems.check"] = np.array(scan.problems["check"].tolist(), dtype=str)
    arrays["problems.line"] = scan.problems["line"].to_numpy(dtype=np.int64)
    arrays["problems.message"] = np.array(scan.problems["message"].tolist(), dtype=str)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.stem, suffix=".tmp", delete=False) as handle:
            np.savez(handle, **arrays)
        os.replace(handle.name, path)
    except OSError:
        # A read-only or full cache directory must not break the command; it only costs the next run time.
        with contextlib.suppress(OSError, NameError):
            os.unlink(handle.name)
