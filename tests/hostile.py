"""Shared machinery for the hostile-input tables (tests/*/test_hostile.py).

Each table row builds a hostile dataset or output folder, runs one `doctor` command in-process, and checks the
promise of the README: the exit code, a one-line message naming what is wrong, no traceback, and not one byte of
the source tree changed (names, types, link targets and contents are all hashed, without following links).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner, Result

from dataset_doctor.cli import app


def tree_digest(root: Path) -> str:
    """A hash of everything under `root` as bytes: relative names, file types, link targets and file contents.

    Walks with os.walk on bytes paths and never follows links, so non-UTF-8 names and link loops are hashed too.
    """
    digest = hashlib.blake2b(digest_size=20)
    root_bytes = os.fsencode(root)
    for directory, folders, files in os.walk(root_bytes, followlinks=False):
        folders.sort()
        for name in sorted(folders + files):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, root_bytes)
            if os.path.islink(path):
                digest.update(b"L" + relative + b"\0" + os.readlink(path) + b"\0")
            elif os.path.isdir(path):
                digest.update(b"D" + relative + b"\0")
            else:
                with open(path, "rb") as handle:
                    digest.update(b"F" + relative + b"\0" + hashlib.blake2b(handle.read()).digest())
    return digest.hexdigest()


def invoke(args: list[str]) -> Result:
    """Run `doctor ARGS` in-process, with the exception (if any) kept for the assertions."""
    return CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=True)


def assert_clean_failure(result: Result, exit_code: int, *fragments: str) -> None:
    """The command failed the way the README promises: this exit code, one line holding every fragment."""
    output = result.output
    assert result.exit_code == exit_code, (result.exit_code, output, result.exception)
    assert "Traceback" not in output, output
    if exit_code == 2:
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        error_lines = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(error_lines) == 1, output
        for fragment in fragments:
            assert fragment in error_lines[0], (fragment, error_lines[0])
    else:
        for fragment in fragments:
            assert fragment in output, (fragment, output)


@dataclass(frozen=True)
class HostileCase:
    """One row of a hostile-input table.

    `build(tmp_path)` writes the hostile input and returns (source root that must stay unchanged, command args);
    `exit_code` and `fragments` are what the user must see (fragments in the one error line when exit_code is 2).
    """

    name: str
    build: Callable[[Path], tuple[Path, list[str]]]
    exit_code: int
    fragments: tuple[str, ...] = ()


def run_case(case: HostileCase, tmp_path: Path) -> Result:
    """Build the case, run it, check exit code, message and that the source tree is byte-for-byte unchanged."""
    source, args = case.build(tmp_path)
    before = tree_digest(source)
    result = invoke(args)
    assert_clean_failure(result, case.exit_code, *case.fragments)
    assert tree_digest(source) == before, f"{case.name}: the command changed the source tree {source}"
    return result
