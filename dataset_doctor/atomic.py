"""Writing outputs so they appear whole or not at all: into a temporary sibling, then one rename.

Every command that writes (datasets, reports, checkpoints, JSON, caches) goes through these two helpers, so a
killed run never leaves a half-written file or folder, and outputs get the permissions the user's umask asks
for (tempfile's private 0600 / 0700 would make reports and datasets unreadable to anyone else). CSV outputs
are formatted by `csv_text` (one quoting rule for every table written) and then written like any text.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)  # elsewhere: read it by setting it (and put it straight back)
    os.umask(current)
    return current


FILE_MODE = 0o666 & ~_umask()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(temporary_path)`, then rename the result over `path` (created with the umask's mode)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        write(temporary)
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    def write(temporary: Path) -> None:
        with open(temporary, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    return atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def csv_text(header: Iterable[object], rows: Iterable[Iterable[object]]) -> str:
    """A CSV table as text: a header row, then the rows; `\\n` line ends, fields quoted only where they must be."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@contextmanager
def staged_directory(destination: Path) -> Iterator[Path]:
    """A fresh hidden sibling of `destination` to write into; renamed to `destination` when the block succeeds.

    A sibling (not the system temp dir) so the final rename is atomic and hardlinks see the destination's
    filesystem. An existing destination (empty, or one the caller was allowed to replace) is moved aside first
    and deleted only after the rename, so a failure at any point never loses both.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.parent / f".{destination.name}.tmp-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    aside = None
    if destination.exists() or destination.is_symlink():
        aside = destination.parent / f".{destination.name}.old-{secrets.token_hex(4)}"
        os.replace(destination, aside)
    try:
        os.replace(staging, destination)
    except OSError:
        if aside is not None:
            os.replace(aside, destination)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if aside is not None:
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.unlink(missing_ok=True)
