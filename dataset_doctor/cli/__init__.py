"""The `doctor` command line: thin Typer commands over the library functions.

Each command lives in its own module and registers itself on the shared `app` when imported; a command
appears here only once it works. The order below is the order of `doctor --help` (panels included).
"""

import inspect
import re
from importlib import import_module

from dataset_doctor.cli.app import app, main

COMMAND_MODULES = (
    "demo", "sample",  # Get started
    "audit", "fix", "weights", "rebalance", "split",  # Check and fix data
    "train", "val", "predict", "evaluate", "report", "diagnose", "crossval", "export",  # Train and evaluate
)
for _module in COMMAND_MODULES:
    import_module(f"dataset_doctor.cli.{_module}")


def _reflowed(docstring: str) -> str:
    """The docstring with the line breaks inside each paragraph turned into spaces: Typer's Rich help keeps them,
    so a docstring wrapped at the source's line length would print broken lines."""
    paragraphs = inspect.cleandoc(docstring).split("\n\n")
    return "\n\n".join(re.sub(r"\s*\n\s*", " ", paragraph) for paragraph in paragraphs)


for _command in app.registered_commands:
    if _command.help is None and _command.callback is not None and _command.callback.__doc__:
        _command.help = _reflowed(_command.callback.__doc__)

__all__ = ["app", "main"]
