"""The `doctor` command line: thin Typer commands over the library functions.

Each command lives in its own module and registers itself on the shared `app`; a command appears here only
once it works.
"""

from dataset_doctor.cli import audit, fix, sample  # noqa: F401  (each registers its command)
from dataset_doctor.cli.app import app, main

__all__ = ["app", "main"]
