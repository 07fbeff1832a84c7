"""The on-disk cache of file scans: under the user's cache directory, never inside the dataset.

Stale caches are a known complaint about other tools, so the cache is per file, not per dataset: a file is
reused only when its image's and its label's size, modification time, inode and change time (nanoseconds) are
unchanged (`cp -p`, `tar` and `rsync -t` restore mtimes, never ctimes) and, for a label changed within seconds of
the previous scan, when it holds the same bytes (BLAKE2b of the content); the cache is ignored entirely when it
was written by another version of the scanner. It is stored as plain numeric arrays (dataset_doctor.array_file):
loading a cache never runs code.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import numpy as np

from dataset_doctor.array_file import read_arrays, write_arrays
from dataset_doctor.atomic import atomic_write
from dataset_doctor.dataset.file_scan import BOX_COLUMNS, FILE_COLUMNS, PROBLEM_COLUMNS, FileScan
from dataset_doctor.table_archive import Unarchivable, decode_json, decode_table, encode_json, encode_table

# Bump when what a scan records, or how, changes: old caches are then ignored. 4: 128 px pHash decode (main's 2)
# with SHA-256 content hashes and string blobs (audit's 3). 5: label content hashes, image inode and
# ctime, a UTF-8 BOM stripped from labels, flat images hashed by their gray level. 6: label inode and ctime, and the
# scan time, so labels are trusted on their stat unless racy. 7: columns packed into a few arrays
# (dataset_doctor.table_archive: an archive member costs more to open than to read) and a digest of the content.
# 8: an array file (dataset_doctor.array_file) instead of a NumPy zip archive.
SCAN_FORMAT_VERSION = 8


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
    return cache_dir() / "index" / f"{key}.arrays"


def load_scan(path: Path) -> FileScan | None:
    """The cached scan, or None if there is none or it cannot be used (wrong version, damaged)."""
    try:
        archive = read_arrays(path)
        if int(archive["version"]) != SCAN_FORMAT_VERSION:
            return None
        meta = decode_json(archive["meta"])
        files = decode_table(meta["files"], "files", archive)
        problems = decode_table(meta["problems"], "problems", archive)
        boxes = archive["boxes"].reshape(-1, len(BOX_COLUMNS))
        scanned_at_ns = int(archive["scanned_at_ns"])
        digest = archive["digest"].tobytes()
    except (OSError, KeyError, ValueError, TypeError, UnicodeDecodeError):
        return None
    if list(files.columns) != list(FILE_COLUMNS) or list(problems.columns) != PROBLEM_COLUMNS:
        return None
    return FileScan(files, boxes, problems, scanned_at_ns, digest)


def save_scan(path: Path, scan: FileScan) -> None:
    """Write atomically (temporary file, then rename): a killed run never leaves a half-written cache.

    Sets `scan.digest` (what the index's fingerprint is made of) even when the cache cannot be written."""
    arrays: dict[str, np.ndarray] = {}
    try:
        meta = {"files": encode_table(scan.files.reset_index(drop=True), "files", arrays),
                "problems": encode_table(scan.problems.reset_index(drop=True), "problems", arrays)}
    except Unarchivable:  # a path holding NUL cannot be: no cache, the next run scans again
        return
    arrays["meta"] = encode_json(meta)
    arrays["boxes"] = np.ascontiguousarray(scan.boxes, dtype=np.float64)
    scan.digest = _digest(arrays)
    arrays.update(version=np.array(SCAN_FORMAT_VERSION), scanned_at_ns=np.array(scan.scanned_at_ns, dtype=np.int64),
                  digest=np.frombuffer(scan.digest, dtype=np.uint8))

    def write(temporary: Path) -> None:
        with open(temporary, "xb") as handle:
            write_arrays(handle, arrays)

    # A read-only or full cache directory must not break the command; it only costs the next run time.
    with contextlib.suppress(OSError):
        atomic_write(path, write)


def _digest(arrays: dict[str, np.ndarray]) -> bytes:
    """SHA-256 of what a scan holds (not when it ran): the same files, parsed the same, give the same digest."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.digest()
