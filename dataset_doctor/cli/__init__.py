"""The `doctor` command line: thin Typer commands over the library functions.

Each command lives in its own module and registers itself on the shared `app` when imported; a command
appears here only once it works. The order below is the order of `doctor --help` (panels included).
"""

from importlib import import_module

from dataset_doctor.cli.app import app, main

COMMAND_MODULES = (
    "demo", "sample",  # Get started
    "audit", "fix", "weights", "rebalance", "split",  # Check and fix data
    "train", "val", "predict", "evaluate", "report",  # Train and evaluate
)
for _module in COMMAND_MODULES:
    import_module(f"dataset_doctor.cli.{_module}")

__all__ = ["app", "main"]
