"""Writing outputs so they appear whole or not at all: into a temporary sibling, then one rename.

Every command that writes (datasets, reports, checkpoints, JSON, caches) goes through these helpers, so a
killed run never leaves a half-written file or folder, and outputs get the permissions the user's umask asks
for (tempfile's private 0600 / 0700 would make reports and datasets unreadable to anyone else).

Output folders (fix, split, rebalance, sample, predict) are also made safe here, in one place:
- `check_output_folder` refuses a destination inside or around a folder the source dataset reads, and lets
  `--force` replace only a folder holding our marker file (`OUTPUT_MARKER`, written into every output folder)
  and none of the files the source reads (realpaths: a `.txt` list or `../` can point anywhere);
- `staged_directory` names the owner process in its staging folder, so the next run can remove what a killed
  run left (`remove_stale_staging`, and `remove_stale_temporaries` for files such as checkpoints);
- a folder that cannot be created or written (read-only, permission denied) is a one-line DoctorError.

CSV outputs are formatted by `csv_text` (one quoting rule for every table written) and then written like any text.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dataset_doctor import __version__
from dataset_doctor.errors import DoctorError

OUTPUT_MARKER = ".dataset-doctor-output"  # in every output folder we write: `--force` replaces only these
_OWNER_FILE = ".dataset-doctor-staging"  # in a staging folder until it is published: who is writing it
_TOOL = "dataset-doctor"
_STALE_ELSEWHERE_SECONDS = 24 * 3600  # another host's staging folder (its PID means nothing here) is stale after a day
_STALE_TEMPORARY_SECONDS = 3600  # no single file write takes an hour: an older temporary is left over
_STAGING_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}$")
_ASIDE_NAME = re.compile(r"^\.(?P<name>.+)\.old-(?P<pid>\d+)-[0-9a-f]{8}$")
# atomic_write's temporaries: `.NAME.PID-HEX.tmp` (and `.NAME.HEX.tmp` from versions before the PID was added).
_TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[0-9a-f]{8}\.tmp$")


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
    temporary = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
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
    """Write UTF-8 text. A file name that is not UTF-8 (surrogates from os.fsdecode) is written as backslash
    escapes, `bad\\udcff.jpg`: the display form of images.display_name, and inside JSON strings the escape that
    reads back as the same name."""
    return atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


def check_output_folder(out: str | Path, *, force: bool = False, can_force: bool = True,
                        source_folders: Iterable[str | Path] = (),
                        source_files: Callable[[], Iterable[str | Path]] | None = None) -> Path:
    """The absolute output folder, after refusing any destination that could change or delete the source.

    Refused: a path that is not a folder; one inside or around a folder in `source_folders` (writing inside the
    source changes it, replacing a folder around it deletes it); a non-empty folder without `force`; with
    `force`, a folder without our marker (we delete only what we wrote) or one holding any of `source_files()`
    (called only then: listing a dataset costs a walk), compared by realpath.
    """
    destination = Path(os.path.abspath(Path(out).expanduser()))
    if destination.exists() and not destination.is_dir():
        raise DoctorError("exists and is not a directory", destination)
    resolved = Path(os.path.realpath(destination))
    for folder in sorted({Path(os.path.realpath(os.path.abspath(f))) for f in source_folders}):
        if resolved == folder or folder in resolved.parents:
            raise DoctorError(f"output directory is inside the source dataset ({folder}): choose a path outside it",
                              destination)
        if resolved in folder.parents:
            raise DoctorError(f"output directory contains the source dataset ({folder}): choose a path outside it",
                              destination)
    if not _non_empty(destination):
        return destination
    if not can_force:
        raise DoctorError("output directory exists and is not empty: choose a new one", destination)
    if not force:
        raise DoctorError("output directory is not empty: choose a new one or pass --force to replace an earlier "
                          "output of dataset-doctor", destination)
    if not is_our_output(destination):
        raise DoctorError(f"--force replaces only a folder dataset-doctor wrote (one holding {OUTPUT_MARKER}) and "
                          "this one was not: choose another --out, or empty it yourself", destination)
    held = _first_file_inside(resolved, source_files() if source_files is not None else ())
    if held is not None:
        raise DoctorError(f"--force would delete {held}, which the source dataset reads: choose another --out",
                          destination)
    return destination


def is_our_output(folder: Path) -> bool:
    """Whether `folder` holds our marker: a regular file (not a link to one) naming this tool."""
    marker = folder / OUTPUT_MARKER
    if not marker.is_file() or marker.is_symlink():
        return False
    try:
        content = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and content.get("tool") == _TOOL


def _non_empty(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except OSError as error:
        raise DoctorError(f"cannot read the output folder: {error.strerror or error}", folder) from None


def _first_file_inside(folder: Path, files: Iterable[str | Path]) -> str | None:
    """The first of `files` whose realpath (links followed: deleting a link target deletes data) is in folder."""
    prefix = os.path.join(str(folder), "")
    for path in files:
        real = os.path.realpath(path)
        if real.startswith(prefix):
            return str(path)
    return None


def csv_text(header: Iterable[object], rows: Iterable[Iterable[object]]) -> str:
    """A CSV table as text: a header row, then the rows; `\\n` line ends, fields quoted only where they must be."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@contextmanager
def staged_directory(destination: Path, command: str = "",
                     note: Callable[[str], None] | None = None) -> Iterator[Path]:
    """A fresh hidden sibling of `destination` to write into; renamed to `destination` when the block succeeds.

    A sibling (not the system temp dir) so the final rename is atomic and hardlinks see the destination's
    filesystem. An existing destination (empty, or one the caller was allowed to replace) is moved aside first
    and deleted only after the rename, so a failure at any point never loses both. The staging folder carries
    our marker (published with the output: `command` says which command wrote it) and, until the rename, its
    owner's PID, so staging folders that killed runs left beside it are removed first (`note` says so).
    """
    note = note or _print_note
    parent = destination.parent
    staging = parent / f".{destination.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for message in remove_stale_staging(parent):
            note(message)
        staging.mkdir()
        (staging / _OWNER_FILE).write_text(json.dumps(_owner()) + "\n", encoding="utf-8")
        marker = {"tool": _TOOL, "version": __version__, "command": command}
        (staging / OUTPUT_MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise unwritable_output(error, destination) from None
    try:
        yield staging
        (staging / _OWNER_FILE).unlink()
        # The last line of defence, whatever the caller checked: never replace a folder of someone else's.
        if not destination.is_symlink() and _non_empty(destination) and not is_our_output(destination):
            raise DoctorError(f"not replaced: the folder is not empty and dataset-doctor did not write it (no "
                              f"{OUTPUT_MARKER})", destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    aside = None
    try:
        if destination.exists() or destination.is_symlink():
            aside = parent / f".{destination.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.replace(destination, aside)
        os.replace(staging, destination)
    except OSError as error:
        if aside is not None and not (destination.exists() or destination.is_symlink()):
            with contextlib.suppress(OSError):
                os.replace(aside, destination)
        shutil.rmtree(staging, ignore_errors=True)
        raise unwritable_output(error, destination) from None
    if aside is not None:
        _remove(aside)


def remove_stale_staging(folder: Path) -> list[str]:
    """Remove staging folders (and moved-aside old outputs) that killed runs of ours left in `folder`.

    Only folders with our name pattern and our owner file or marker count, and only when their process is gone:
    dead (or its PID reused by a later process), or on another host and older than a day. Returns one note each.
    """
    notes = []
    try:
        entries = [entry for entry in os.scandir(folder) if entry.name.startswith(".") and entry.is_dir()
                   and not entry.is_symlink()]
    except OSError:
        return notes
    for entry in entries:
        path = Path(entry.path)
        staging, aside = _STAGING_NAME.match(entry.name), _ASIDE_NAME.match(entry.name)
        if staging is not None and (path / _OWNER_FILE).is_file():
            owner = _read_json(path / _OWNER_FILE)
            if not _owner_gone(owner, path):
                continue
            why = f"a staging folder left by an interrupted run (process {owner.get('pid', '?')}, not running)"
        elif aside is not None and is_our_output(path):
            # Moved aside just before the final rename: stale once its process is gone and the new output is in
            # place (without the new output it would be the only copy of the old one: leave it).
            if _process_alive(int(aside["pid"]), None) or not (folder / aside["name"]).exists():
                continue
            why = f"an old output an interrupted run had moved aside (process {aside['pid']}, not running)"
        else:
            continue
        _remove(path)
        notes.append(f"removed {path}: {why}")
    return notes


def remove_stale_temporaries(folder: Path) -> list[str]:
    """Remove atomic_write temporaries (`.NAME.PID-HEX.tmp`) in `folder` whose process is gone or that are over
    an hour old (a checkpoint write killed halfway); returns one note each."""
    notes = []
    try:
        entries = [entry for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False)]
    except OSError:
        return notes
    now = time.time()
    for entry in entries:
        match = _TEMPORARY_NAME.match(entry.name)
        if match is None:
            continue
        pid = int(match["pid"]) if match["pid"] else None
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > _STALE_TEMPORARY_SECONDS
        except OSError:
            continue
        if pid == os.getpid() or not (old or (pid is not None and not _process_alive(pid, None))):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
        owner = f"process {pid}, not running" if pid is not None and not old else "over an hour old"
        notes.append(f"removed {entry.path}: a temporary file left by an interrupted write ({owner})")
    return notes


def _owner() -> dict:
    return {"pid": os.getpid(), "started": _process_start(os.getpid()), "host": socket.gethostname()}


def _owner_gone(owner: dict, path: Path) -> bool:
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return False  # not an owner file we wrote: leave it
    if owner.get("host") != socket.gethostname():
        try:
            return time.time() - path.stat().st_mtime > _STALE_ELSEWHERE_SECONDS
        except OSError:
            return False
    return pid != os.getpid() and not _process_alive(pid, owner.get("started"))


def _process_alive(pid: int, started: str | None) -> bool:
    """Whether `pid` runs here and, when its start time is known, is still the same process (PIDs are reused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # EPERM: it exists, another user's
    if started is not None:
        now = _process_start(pid)
        if now is not None and now != started:
            return False
    return True


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None without /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def unwritable_output(error: OSError, folder: Path) -> DoctorError:
    """The one-line error for an output folder the OS will not let us create or write (read-only, denied)."""
    return DoctorError(f"cannot write the output here ({error.strerror or error}): choose a writable location",
                       folder)




def _print_note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)
