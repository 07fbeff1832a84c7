"""Scanning image/label file pairs in parallel, reusing earlier results for files that did not change.

The scan is the only stage that reads every file, so it is the one that runs on all cores. Its result, a
`FileScan`, is per unique image file and knows nothing of splits or class names, which is what lets the
cache reuse it after data.yaml changes and re-read only the files that changed: an image whose size, mtime, inode
or ctime changed, a label file whose size, mtime, inode or ctime changed, and a label file whose bytes changed
under an unchanged stat (hashed, for the few labels the stat cannot vouch for: see `_racy_labels`).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dataset_doctor.dataset.images import probe_image_file
from dataset_doctor.dataset.labels import label_digest, read_label_bytes, read_label_file_with_digest
from dataset_doctor.progress import counting_progress

MISSING = -1  # file size recorded for a file that does not exist

# Columns of FileScan.files, in order. Size, mtime, inode and ctime of the image and of the label identify a file
# version for the cache; the label's content hash is compared where the stat cannot vouch for it.
FILE_COLUMNS = {
    "path": str, "label_path": str, "image_size": np.int64, "image_mtime_ns": np.int64,
    "image_inode": np.int64, "image_ctime_ns": np.int64,
    "label_size": np.int64, "label_mtime_ns": np.int64, "label_inode": np.int64, "label_ctime_ns": np.int64,
    "label_hash": str, "width": np.int32, "height": np.int32,
    "content_hash": str, "phash": str, "format": str, "image_error": str, "label_error": str,
    "label_lines": np.int32,
}
BOX_COLUMNS = ["file", "line", "cls", "cx", "cy", "w", "h", "polygon"]  # all float64 in FileScan.boxes
PROBLEM_COLUMNS = ["file", "check", "line", "message"]  # line 0 = the file as a whole

_PARALLEL_THRESHOLD = 128  # below this many files a process pool costs more than it saves
_CHUNK = 32


@dataclass
class FileScan:
    files: pd.DataFrame  # one row per unique image file, FILE_COLUMNS
    boxes: np.ndarray  # (n, 8) float64, BOX_COLUMNS; `file` is a row position in `files`
    problems: pd.DataFrame  # PROBLEM_COLUMNS, from parsing labels
    # Wall-clock time (ns) taken just before the files were stat'ed; 0: unknown, so no label is trusted on its
    # stat alone.
    scanned_at_ns: int = 0
    # SHA-256 of the content as cached (index_cache): set when the scan is saved or loaded, None before. Whoever
    # edits the tables must clear it.
    digest: bytes | None = None

    @staticmethod
    def empty() -> FileScan:
        files = pd.DataFrame({name: pd.Series(dtype=object if kind is str else kind)
                              for name, kind in FILE_COLUMNS.items()})
        return FileScan(files, np.zeros((0, len(BOX_COLUMNS))), pd.DataFrame(columns=PROBLEM_COLUMNS))


_SIGNATURE_COLUMNS = ["image_size", "image_mtime_ns", "image_inode", "image_ctime_ns",
                      "label_size", "label_mtime_ns", "label_inode", "label_ctime_ns"]
_LABEL_SIZE, _LABEL_CTIME = 4, 7  # their positions in a signature
_INT64_WRAP = 2**64  # inode numbers are unsigned 64-bit; stored wrapped into int64
# A label whose ctime is within this much of the previous scan may have been edited within one timestamp tick of
# being stat'ed, leaving the stat unchanged: its content is hashed instead. Linux file systems keep ctime to the
# kernel's coarse clock (milliseconds); 3 s also covers FAT's 2 s and small clock differences of network shares.
RACY_MARGIN_NS = 3_000_000_000
# Where ctime is not the change time (Windows reports the creation time), every label is hashed.
_CTIME_TRACKS_CHANGES = os.name == "posix"
_now_ns = time.time_ns  # the scan clock (tests move it)


def scan_files(pairs: Sequence[tuple[str, str]], previous: FileScan | None = None, workers: int | None = None,
               progress: bool = False) -> tuple[FileScan, int]:
    """Scan (image path, label path) pairs; returns the scan and how many files were actually read.

    Files whose image and label stat match a row of `previous` are taken from it without being parsed; of
    their labels only the racy ones (`_racy_labels`) are read, to compare their content hash.
    """
    unique_pairs = list(dict.fromkeys(pairs))
    started_ns = _now_ns()
    signatures = _signatures(unique_pairs)
    reused_rows, reused_positions, todo = _match_previous(unique_pairs, signatures, previous)
    fresh = _scan_pairs([unique_pairs[i] for i in todo], workers, progress)
    scan = _merge(unique_pairs, signatures, previous, reused_rows, reused_positions, todo, fresh)
    if scan is not previous:
        scan.scanned_at_ns = started_ns
    elif (_racy_labels(signatures, previous.scanned_at_ns) & ~_racy_labels(signatures, started_ns)).any():
        # Every file unchanged, but labels were hashed that a newer scan time would vouch for: a new FileScan
        # (so the caller saves it) stamped now, and the next run reads fewer labels.
        scan = FileScan(previous.files, previous.boxes, previous.problems, started_ns, previous.digest)
    return scan, len(todo)


def _signatures(pairs: list[tuple[str, str]]) -> np.ndarray:
    """(size, mtime_ns, inode, ctime_ns) of every pair's image, then of its label, as an (n, 8) array, sizes
    MISSING for absent files; one tight loop, as it stats every file of the dataset on every run.

    Inode and ctime catch an image replaced by a copy with the same size and a restored mtime (`cp -p`, `tar`):
    a restore cannot set ctime, and a copy gets a new inode. Moving a dataset therefore rescans its images.
    """
    values: list[int] = []
    extend, stat, half = values.extend, os.stat, _INT64_WRAP // 2
    for image, label in pairs:
        for path in (image, label):
            try:
                result = stat(path)
            except OSError:
                extend((MISSING, 0, 0, 0))
            else:
                inode = result.st_ino
                extend((result.st_size, result.st_mtime_ns, inode if inode < half else inode - _INT64_WRAP,
                        result.st_ctime_ns))
    return np.array(values, dtype=np.int64).reshape(-1, 8)


def _match_previous(pairs: list[tuple[str, str]], signatures: np.ndarray,
                    previous: FileScan | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows of previous.files to reuse, the positions in `pairs` they fill, positions to read), vectorised:
    this runs over every file on every warm start."""
    if previous is None or previous.files.empty:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.arange(len(pairs))
    files = previous.files
    images, labels = [image for image, _ in pairs], [label for _, label in pairs]
    cached_images = files["path"].tolist()
    stats = files[_SIGNATURE_COLUMNS].to_numpy(np.int64)
    if cached_images == images and files["label_path"].tolist() == labels:  # the usual warm start: same files
        rows = np.arange(len(pairs), dtype=np.int64)
        same = (stats == signatures).all(axis=1) & (signatures[:, 0] != MISSING)
    else:
        by_path = dict(zip(cached_images, range(len(files))))
        rows = np.fromiter((by_path.get(image, -1) for image in images), dtype=np.int64, count=len(pairs))
        known = rows >= 0
        safe_rows = np.where(known, rows, 0)
        same = (known & (stats[safe_rows] == signatures).all(axis=1)
                & (files["label_path"].to_numpy(dtype=object)[safe_rows] == np.array(labels, dtype=object))
                & (signatures[:, 0] != MISSING))
    # Only the racy candidates' labels are read here (a changed or new file's label is hashed when it is parsed).
    hashes = files["label_hash"].to_numpy(dtype=object)
    for position in np.flatnonzero(same & _racy_labels(signatures, previous.scanned_at_ns)):
        same[position] = _current_label_digest(pairs[position][1]) == hashes[rows[position]]
    return rows[same], np.flatnonzero(same), np.flatnonzero(~same)


def _racy_labels(signatures: np.ndarray, scanned_at_ns: int) -> np.ndarray:
    """Which existing labels an unchanged stat cannot vouch for (git's "racily clean" entries), so their bytes
    are compared instead.

    Any write to a file sets its ctime to the current time, and nothing can set it back: `cp -p`, `tar` and
    `rsync -t` restore mtimes, not ctimes, and a copy gets a new inode. So a label whose size, mtime, inode and
    ctime are what the previous scan recorded still holds what was scanned, unless it was written again within
    the same clock tick as that recorded ctime, which can only happen when the ctime was within a tick of the
    scan. Those labels, and every label where ctime is not a change time, are hashed.
    """
    exists = signatures[:, _LABEL_SIZE] != MISSING
    if not _CTIME_TRACKS_CHANGES:
        return exists
    return exists & (signatures[:, _LABEL_CTIME] >= scanned_at_ns - RACY_MARGIN_NS)


def _current_label_digest(label: str) -> str | None:
    """label_digest of a label file as it is now, None when it cannot be read (the scan will say why)."""
    try:
        return label_digest(read_label_bytes(label))
    except (OSError, ValueError):
        return None


def _scan_pairs(pairs: list[tuple[str, str]], workers: int | None, progress: bool) -> list[tuple]:
    if not pairs:
        return []
    workers = workers or available_cores()
    chunks = [pairs[i:i + _CHUNK] for i in range(0, len(pairs), _CHUNK)]
    results: list[tuple] = []
    if workers <= 1 or len(pairs) < _PARALLEL_THRESHOLD:
        with counting_progress(len(pairs), progress, "scanning", "files") as advance:
            for chunk in chunks:
                results.extend(_scan_chunk(chunk))
                advance(len(chunk))
        return results
    # fork is the fastest start and safe here: the workers run only file, NumPy and OpenCV code, and the pool
    # is created before the progress bar starts its refresh thread.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = pool.map(_scan_chunk, chunks)
        with counting_progress(len(pairs), progress, "scanning", "files") as advance:
            for chunk, chunk_results in zip(chunks, pending):
                results.extend(chunk_results)
                advance(len(chunk))
    return results


def _scan_chunk(pairs: list[tuple[str, str]]) -> list[tuple]:
    return [_scan_pair(image, label) for image, label in pairs]


def _scan_pair(image: str, label: str) -> tuple:
    """Everything one image/label pair tells: (probe, parsed labels or None, label read error or None, label
    digest or "")."""
    probe = probe_image_file(image)
    parsed, label_error, label_hash = read_label_file_with_digest(label)
    return probe, parsed, label_error, label_hash


def _merge(pairs, signatures, previous, reused_rows, reused_positions, todo, fresh) -> FileScan:
    """One FileScan in `pairs` order from reused rows of `previous` and freshly scanned files, table-wise."""
    if not len(todo) and len(reused_rows) == len(previous.files) and \
            np.array_equal(reused_rows, np.arange(len(reused_rows))):
        return previous  # the usual warm start: every file unchanged, in the same order
    parts: list[pd.DataFrame] = []
    box_parts: list[np.ndarray] = []
    problem_parts: list[pd.DataFrame] = []

    if len(reused_rows):
        old = previous.files.iloc[reused_rows].copy()
        old.index = reused_positions
        parts.append(old)
        new_position = np.full(len(previous.files), -1, dtype=np.int64)
        new_position[reused_rows] = reused_positions
        old_boxes = previous.boxes[new_position[previous.boxes[:, 0].astype(np.int64)] >= 0].copy()
        old_boxes[:, 0] = new_position[old_boxes[:, 0].astype(np.int64)]
        box_parts.append(old_boxes)
        old_problems = previous.problems[new_position[previous.problems["file"].to_numpy(np.int64)] >= 0].copy()
        old_problems["file"] = new_position[old_problems["file"].to_numpy(np.int64)]
        problem_parts.append(old_problems)

    if len(todo):
        columns: dict[str, list] = {name: [] for name in FILE_COLUMNS}
        problem_rows: list[tuple] = []
        for position, (probe, parsed, label_error, label_hash) in zip(todo, fresh):
            image, label = pairs[position]
            image_size, image_mtime, image_inode, image_ctime, label_size, label_mtime, label_inode, label_ctime = \
                signatures[position].tolist()
            row = {
                "path": image, "label_path": label, "image_size": image_size, "image_mtime_ns": image_mtime,
                "image_inode": image_inode, "image_ctime_ns": image_ctime, "label_size": label_size,
                "label_mtime_ns": label_mtime, "label_inode": label_inode, "label_ctime_ns": label_ctime,
                "label_hash": label_hash, "width": probe.width,
                "height": probe.height, "content_hash": probe.content_hash, "phash": probe.phash,
                "format": probe.format, "image_error": probe.error or "", "label_error": label_error or "",
                "label_lines": parsed.nonblank_lines if parsed is not None else 0,
            }
            for name, value in row.items():
                columns[name].append(value)
            if parsed is not None:
                if len(parsed.boxes):
                    file_column = np.full((len(parsed.boxes), 1), position, dtype=np.float64)
                    box_parts.append(np.hstack([file_column, parsed.boxes, parsed.polygon[:, None]]))
                problem_rows.extend((position, check, line or 0, message) for check, line, message in parsed.problems)
        parts.append(pd.DataFrame({name: pd.Series(values, dtype=object if kind is str else kind, index=todo)
                                   for (name, kind), values in zip(FILE_COLUMNS.items(), columns.values())}))
        problem_parts.append(pd.DataFrame(problem_rows, columns=PROBLEM_COLUMNS))

    files = pd.concat(parts).sort_index().reset_index(drop=True) if parts else FileScan.empty().files
    files = files.astype({name: object if kind is str else kind for name, kind in FILE_COLUMNS.items()})
    boxes = np.vstack(box_parts) if box_parts else np.zeros((0, len(BOX_COLUMNS)))
    boxes = boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))] if len(boxes) else boxes
    problem_parts = [part for part in problem_parts if len(part)]
    problems = pd.concat(problem_parts, ignore_index=True) if problem_parts else pd.DataFrame(columns=PROBLEM_COLUMNS)
    problems = problems.sort_values(["file", "line"], kind="stable").reset_index(drop=True)
    return FileScan(files, boxes, problems)


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
