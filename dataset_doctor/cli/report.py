"""`doctor report RUN_DIR`: (re)write the training report of a run, RUN_DIR/report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dataset_doctor.cli.app import app, console


@app.command(rich_help_panel="Train and evaluate")
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by doctor train (runs/<name>).")],
    audit_report: Annotated[Path | None, typer.Option(
        "--audit-report", metavar="FILE",
        help="The audit report (HTML or --json) of the same dataset to link and use. Default: looked for in "
             "doctor_reports/ of the working directory and of the directory holding the runs.")] = None,
) -> None:
    """Write the training report: train vs val AP per class, what it means, curves, worst val images.

    doctor train writes it at the end of a run; run this to rebuild it (e.g. after an audit) or for a run that
    was stopped before the end.
    """
    from reports.training_report import build_training_report  # plotly, pandas and OpenCV load only here

    path = build_training_report(run_dir, audit_report)
    console.print(f"training report written to [bold]{escape(str(path))}[/]", highlight=False)
