"""The on-disk cache of file scans: under the user's cache directory, never inside the dataset.

Stale caches are a known complaint about other tools, so the cache is per file, not per dataset: a file is
reused only when its image's and its label's size, modification time, inode and change time (nanoseconds) are
unchanged (`cp -p`, `tar` and `rsync -t` restore mtimes, never ctimes) and, for a label changed within seconds of
the previous scan, when it holds the same bytes (BLAKE2b of the content); the cache is ignored entirely when it
was written by another version of the scanner. It is stored as a NumPy archive
read with `allow_pickle=False`: loading a cache never runs code.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from dataset_doctor.atomic import atomic_write
from dataset_doctor.dataset.file_scan import BOX_COLUMNS, FILE_COLUMNS, PROBLEM_COLUMNS, FileScan
from dataset_doctor.table_archive import decode_strings

# Bump when what a scan records, or how, changes: old caches are then ignored. 4: 128 px pHash decode (main's 2)
# with SHA-256 content hashes and string blobs (audit's 3). 5: label content hashes, image inode and
# ctime, a UTF-8 BOM stripped from labels, flat images hashed by their gray level. 6: label inode and ctime, and the
# scan time, so labels are trusted on their stat unless racy.
SCAN_FORMAT_VERSION = 6


def cache_dir() -> Path:
    """$DOCTOR_CACHE_DIR, else $XDG_CACHE_HOME/dataset-doctor, else ~/.cache/dataset-doctor."""
    explicit = os.environ.get("DOCTOR_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "dataset-doctor"


def cache_file_for(yaml_path: Path) -> Path:
    """One cache file per data.yaml location (named by a hash of its absolute path)."""
    key = hashlib.sha1(str(yaml_path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return cache_dir() / "index" / f"{key}.npz"


def load_scan(path: Path) -> FileScan | None:
    """The cached scan, or None if there is none or it cannot be used (wrong version, damaged)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if int(archive["version"]) != SCAN_FORMAT_VERSION:
                return None
            rows = len(archive["files.image_size"])
            files = pd.DataFrame({
                name: pd.Series(decode_strings(archive[f"files.{name}"], rows) if kind is str
                                else archive[f"files.{name}"], dtype=object if kind is str else kind)
                for name, kind in FILE_COLUMNS.items()
            })
            boxes = archive["boxes"].reshape(-1, len(BOX_COLUMNS))
            problem_rows = len(archive["problems.file"])
            problems = pd.DataFrame({
                "file": archive["problems.file"], "check": decode_strings(archive["problems.check"], problem_rows),
                "line": archive["problems.line"], "message": decode_strings(archive["problems.message"], problem_rows),
            }, columns=PROBLEM_COLUMNS)
            scanned_at_ns = int(archive["scanned_at_ns"])
    except (OSError, KeyError, ValueError, EOFError, UnicodeDecodeError, zipfile.BadZipFile):
        return None
    return FileScan(files, boxes, problems, scanned_at_ns)


def _blob(strings: list[str]) -> np.ndarray:
    """A string column as one UTF-8 byte array, NUL-separated (paths and messages never hold NUL): decoding
    it is one bytes.decode and one split, where a NumPy unicode array costs a Python object per cell."""
    return np.frombuffer("\0".join(strings).encode("utf-8", errors="surrogateescape"), dtype=np.uint8)


def save_scan(path: Path, scan: FileScan) -> None:
    """Write atomically (temporary file, then rename): a killed run never leaves a half-written cache."""
    arrays: dict[str, np.ndarray] = {"version": np.array(SCAN_FORMAT_VERSION),
                                     "scanned_at_ns": np.array(scan.scanned_at_ns, dtype=np.int64)}
    for name, kind in FILE_COLUMNS.items():
        values = scan.files[name]
        arrays[f"files.{name}"] = _blob(values.tolist()) if kind is str else values.to_numpy().astype(kind)
    arrays["boxes"] = scan.boxes.astype(np.float64)
    arrays["problems.file"] = scan.problems["file"].to_numpy(dtype=np.int64)
    arrays["problems.check"] = _blob(scan.problems["check"].tolist())
    arrays["problems.line"] = scan.problems["line"].to_numpy(dtype=np.int64)
    arrays["problems.message"] = _blob(scan.problems["message"].tolist())
    def write(temporary: Path) -> None:
        with open(temporary, "xb") as handle:
            np.savez(handle, **arrays)

    # A read-only or full cache directory must not break the command; it only costs the next run time.
    with contextlib.suppress(OSError):
        atomic_write(path, write)
