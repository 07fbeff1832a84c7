"""`doctor report RUN_DIR`: (re)write the training report of a run, RUN_DIR/report.html.

A classifier run (trainer/classify_loop.py: metrics.json says "task": "classify") gets the classifier report
(reports/classify_report.py); every other run the detection one."""

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
    if is_classify_run_dir(run_dir):
        from reports.classify_report import write_classify_report  # plotly and pandas load only here

        if audit_report is not None:
            console.print("note: a classifier report does not link an audit report; --audit-report ignored",
                          highlight=False, markup=False)
        path = write_classify_report(run_dir)
        console.print(f"classifier training report written to [bold]{escape(str(path))}[/]", highlight=False)
        return
    from reports.training_report import build_training_report  # plotly, pandas and OpenCV load only here

    path = build_training_report(run_dir, audit_report)
    console.print(f"training report written to [bold]{escape(str(path))}[/]", highlight=False)


def is_classify_run_dir(run_dir: Path) -> bool:
    """A classifier run: its metrics.json (written after every epoch) says so. Read as text, no torch needed.

    A classifier run stopped before its first epoch ended has only args.yaml (a flat ClassifyConfig, where a
    detection run's has a "train" section): refused in one line, as there is nothing to report yet.
    """
    import json

    import yaml

    from dataset_doctor.errors import DoctorError

    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        return isinstance(metrics, dict) and metrics.get("task") == "classify"
    except (OSError, ValueError):
        pass
    try:
        args = yaml.safe_load((run_dir / "args.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return False  # the detection path names what is missing
    if isinstance(args, dict) and "train" not in args and "label_smoothing" in args:
        raise DoctorError("a classifier run without a finished epoch (no metrics.json): nothing to report yet",
                          run_dir)
    return False
