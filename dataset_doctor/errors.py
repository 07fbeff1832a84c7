"""The one exception type for problems the user can fix (bad input, bad usage).

The CLI maps it to exit code 2 and a one-line message; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class DoctorError(Exception):
    """A user-facing error: one line, naming the file (and line) at fault when there is one."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        # Keep it to one line whatever the caller passed in (yaml errors span several lines).
        super().__init__(" ".join(f"{where}{message}".split()))
