"""`doctor crossval data.yaml --folds K --out DIR [doctor train options]`: K fold models, each predicting the train
images it never saw, so the label audit reads out-of-sample predictions (trainer/crossval.py does the work)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from dataset_doctor.cli.app import app, console
from dataset_doctor.errors import DoctorError

# doctor train options crossval sets itself (per fold), or that mean nothing here
_NOT_PASSED = ("--resume", "--project", "--name", "--exist-ok", "--task", "--live-report", "--no-live-report")


@app.command(rich_help_panel="Train and evaluate",
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def crossval(
    ctx: typer.Context,
    data_yaml: Annotated[Path, typer.Argument(help="The dataset's data.yaml (train is cut into folds; val chooses "
                                                   "and scores each fold's model).")],
    out: Annotated[Path, typer.Option(metavar="DIR", help="New directory (or the one of a crossval to resume): "
                                                          "runs/fold-k, folds/, predictions/train and val.")],
    folds: Annotated[int, typer.Option(min=2, help="Folds: each model trains on K-1 of them.")] = 5,
    seed: Annotated[int, typer.Option(help="Seeds the folds and every fold's training.")] = 0,
    conf: Annotated[float, typer.Option(help="Confidence threshold of the held-out predictions (keep it low: the "
                                             "audit needs what the model barely sees).")] = 0.001,
    report: Annotated[bool, typer.Option("--report/--no-report",
                                         help="Write each fold's training report (report.html).")] = True,
) -> None:
    """Out-of-sample predictions for every train image, for doctor audit --predictions.

    Train is cut into K stratified folds (duplicates kept in one fold); the model of fold k trains on the others
    and predicts fold k; val is predicted by the fold model with the best val mAP. Every other option is a doctor
    train option given to each fold (--epochs, --imgsz, --model, --batch, --device, --weights, --workers, ...),
    placed after data.yaml. Rerun the same command after a kill: finished folds are skipped.
    """
    from dataset_doctor.dataset.classify_index import TASK_CLASSIFY, detect_task

    settings = _train_settings(ctx, data_yaml, seed)
    detected, _ = detect_task(data_yaml, None)
    if detected == TASK_CLASSIFY:
        raise DoctorError("crossval works on detection datasets (the label audit is for boxes)", data_yaml)
    from trainer.crossval import run_crossval

    after = None
    if report:
        def after(run_dir: Path) -> None:
            from reports.training_report import write_training_report  # plotly loads only now

            write_training_report(run_dir, console)

    result = run_crossval(data_yaml, out, folds, settings, seed=seed, conf=conf, console=console,
                          after_training=after)
    scores = ", ".join(f"fold {fold} {value:.3f}" if value is not None else f"fold {fold} -"
                       for fold, value in result.val_map50_95.items())
    console.print(f"val mAP50-95 per fold: {scores}; val predicted by fold {result.best_fold}", highlight=False,
                  markup=False)
    console.print(f"out-of-sample predictions in {result.predictions} (train/ and val/)", highlight=False,
                  markup=False)
    console.print("next: doctor audit " + shlex.join([str(data_yaml), "--predictions", str(result.predictions)]),
                  highlight=False, markup=False, soft_wrap=True)


def _train_settings(ctx: typer.Context, data_yaml: Path, seed: int):
    """The extra arguments parsed by `doctor train` itself (same options, defaults and checks), as settings."""
    from typer._click.exceptions import ClickException

    from dataset_doctor.cli.train import detection_settings

    extra = list(ctx.args)
    refused = [arg for arg in extra if arg.split("=", 1)[0] in _NOT_PASSED]
    if refused:
        raise DoctorError(f"crossval sets {refused[0].split('=', 1)[0]} itself (each fold is DIR/runs/fold-k; "
                          "rerun the same command to resume)")
    train_command = ctx.parent.command.get_command(ctx.parent, "train")
    try:
        parsed = train_command.make_context("doctor crossval", [str(data_yaml), *extra], parent=ctx.parent)
    except ClickException as error:
        raise DoctorError(f"{error.format_message()} (crossval takes doctor train's options)") from None
    return detection_settings({**parsed.params, "seed": seed}).with_train(data=str(data_yaml))
