"""The audit's own results, cached for an unchanged index: a warm `doctor audit` skips every check.

run_audit is a pure function of the index's tables, the options and the code, so its result is stored under a
key hashed from all three (SHA-256): the index's every table and setting, the options, and the source of the
dataset_doctor package. Any change to a file the index saw, to a flag, or to the code computes the audit again.
One file per data.yaml location, beside the index cache, overwritten by the next result; plain numeric arrays
(dataset_doctor.table_archive, dataset_doctor.array_file): loading it never runs code. A cache that cannot be
read or written is only a miss.
Not cached: audits with predictions (their files are not in the index) and of `doctor rebalance` outputs (their
rebalance.json is not either).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from dataset_doctor.array_file import read_arrays, write_arrays
from dataset_doctor.atomic import atomic_write
from dataset_doctor.audit.box_stats import judged_boxes
from dataset_doctor.audit.options import AuditOptions
from dataset_doctor.audit.rebalanced import RebalanceOrigin
from dataset_doctor.audit.result import AuditResult
from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.dataset.index_cache import cache_dir
from dataset_doctor.table_archive import (
    Unarchivable,
    decode_json,
    decode_table,
    encode_json,
    encode_table,
)
from dataset_doctor.weights import ClassWeights

RESULT_FORMAT_VERSION = 2  # bump when what is stored, or how, changes (2: an array file, not a NumPy zip)
# box_geometry is not stored: one row per box, it is most of the archive and recomputed from the index in a few ms
TABLES = ("findings", "split_summary", "class_counts", "box_stats", "duplicate_pairs", "scale_shift")
PACKAGE = Path(__file__).resolve().parent.parent  # dataset_doctor/


def audit_with_cache(index: DatasetIndex, options: AuditOptions | None = None,
                     origin: RebalanceOrigin | None = None, use_cache: bool = True) -> AuditResult:
    """run_audit(index, options, origin=origin), from the cache when the same audit ran before."""
    from dataset_doctor.audit.runner import run_audit  # SciPy loads with the checks: not on a cache hit

    options = options or AuditOptions()
    if not use_cache or origin is not None:
        return run_audit(index, options, origin=origin)
    path = result_cache_file_for(index.config.yaml_path)
    key = audit_key(index, options)
    cached = load_result(path, key, index, options)
    if cached is not None:
        return cached
    result = run_audit(index, options)
    save_result(path, key, result)
    return result


def result_cache_file_for(yaml_path: Path) -> Path:
    """One archive per data.yaml location (named by a hash of its absolute path), as the index cache."""
    name = hashlib.sha1(str(Path(yaml_path).resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return cache_dir() / "audit" / f"{name}.arrays"


def audit_key(index: DatasetIndex, options: AuditOptions) -> bytes:
    """What run_audit's result depends on, hashed: the format, the code, the options and the whole index.

    SHA-256, not BLAKE2b: with the CPU's SHA extensions it hashes the index's megabytes about twice as fast."""
    digest = hashlib.sha256()
    digest.update(f"{RESULT_FORMAT_VERSION}\0".encode())
    digest.update(code_digest())
    settings = {field.name: getattr(options, field.name) for field in dataclasses.fields(options)}
    settings["ignore"] = sorted(settings["ignore"])
    digest.update(json.dumps(settings, sort_keys=True).encode())
    config = index.config
    described = repr((str(config.yaml_path), str(config.root), config.names, config.problems,
                      {split: [str(source) for source in sources] for split, sources in config.splits.items()}))
    digest.update(described.encode("utf-8", "surrogateescape"))
    if index.fingerprint is not None:  # images and boxes as build_index made them from a cached scan: 1 ms, not 11
        digest.update(b"fingerprint\0" + index.fingerprint)
        tables = (index.problems,)
    else:
        tables = (index.images, index.boxes, index.problems)
    for table in tables:
        _hash_table(digest, table)
    return digest.digest()


def _hash_table(digest, table: pd.DataFrame) -> None:
    digest.update(f"{len(table)}\0".encode())
    for name, column in table.items():
        digest.update(f"{name}\0{column.dtype}\0".encode())
        dtype = column.dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
            digest.update(np.ascontiguousarray(column.to_numpy()).tobytes())
        elif isinstance(dtype, pd.CategoricalDtype):
            digest.update("\0".join(map(str, dtype.categories)).encode("utf-8", "surrogateescape"))
            digest.update(np.ascontiguousarray(column.cat.codes.to_numpy()).tobytes())
        else:  # strings, possibly missing (NaN / None / NA), or other cells: their repr stands for them
            cells = column.tolist()
            if isinstance(dtype, pd.StringDtype) and not column.isna().any():
                digest.update(b"\x02")  # only strings: joined as they are
            else:
                cells = [value if isinstance(value, str) else f"\x01{value!r}" for value in cells]
            digest.update("\0".join(cells).encode("utf-8", "surrogateescape"))


@cache
def code_digest() -> bytes:
    """BLAKE2b of every source file of the dataset_doctor package: a new version, or an edit, is another key."""
    digest = hashlib.blake2b(digest_size=16)
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(source.relative_to(PACKAGE)).encode("utf-8", "surrogateescape") + b"\0")
        digest.update(source.read_bytes())
    return digest.digest()


def save_result(path: Path, key: bytes, result: AuditResult) -> None:
    """Write atomically; a result this format cannot store exactly, or an unwritable cache, is simply not kept."""
    arrays: dict[str, np.ndarray] = {"version": np.array(RESULT_FORMAT_VERSION),
                                     "key": np.frombuffer(key, dtype=np.uint8)}
    try:
        tables = {name: encode_table(getattr(result, name), name, arrays) for name in TABLES}
    except Unarchivable:
        return
    arrays["meta"] = encode_json({"tables": tables, "task": result.task,
                                  "class_weights": dataclasses.asdict(result.class_weights)})

    def write(temporary: Path) -> None:
        with open(temporary, "xb") as handle:
            write_arrays(handle, arrays)

    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, write)


def load_result(path: Path, key: bytes, index: DatasetIndex, options: AuditOptions) -> AuditResult | None:
    """The cached result stored under `key`, or None (no cache, another key, another format, damage)."""
    try:
        archive = read_arrays(path)
        if int(archive["version"]) != RESULT_FORMAT_VERSION or archive["key"].tobytes() != key:
            return None
        meta = decode_json(archive["meta"])
        tables = {name: decode_table(meta["tables"][name], name, archive) for name in TABLES}
        weights = ClassWeights(**meta["class_weights"])
        task = str(meta["task"])
    except (OSError, KeyError, ValueError, TypeError, UnicodeDecodeError):
        return None
    return AuditResult(dataset=str(index.config.yaml_path), root=str(index.root), classes=list(index.names),
                       splits=index.splits, options=options, class_weights=weights, files_read=index.files_read,
                       task=task, box_geometry=judged_boxes(index, options)[2], **tables)
