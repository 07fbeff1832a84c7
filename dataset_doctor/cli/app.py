"""The Typer application, its error handling and the shared Rich console."""

from __future__ import annotations

import sys
from typing import Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from dataset_doctor.errors import DoctorError

console = Console()
error_console = Console(stderr=True)

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class _DoctorGroup(typer.core.TyperGroup):
    """Turns a DoctorError raised anywhere in a command into a one-line message and exit code 2."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DoctorError as error:
            error_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None


app = typer.Typer(
    name="doctor",
    cls=_DoctorGroup,
    help="Find, fix and train around the data problems that make YOLO detectors bad.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """Find, fix and train around the data problems that make YOLO detectors bad."""


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        error_console.print("interrupted")
        sys.exit(130)
