"""`doctor diagnose data.yaml --train-predictions DIR --val-predictions DIR`: the training report's train-vs-val
diagnosis for any detector (Ultralytics, YOLOv5, Darknet...), from its saved predictions; or `--model WEIGHTS`
for one of our checkpoints, which then predicts both splits itself."""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dataset_doctor.cli.app import app, console, error_console
from dataset_doctor.errors import DoctorError

TRAIN_IMAGES = 500  # --model: train images predicted (the trainer's train_eval_images default)


@app.command(rich_help_panel="Train and evaluate")
def diagnose(
    data_yaml: Annotated[Path, typer.Argument(help="The dataset's data.yaml (or the directory holding it).")],
    train_predictions: Annotated[Path | None, typer.Option(
        "--train-predictions", metavar="DIR",
        help="YOLO txt predictions (class cx cy w h confidence) of train images, one <image stem>.txt each, made "
             "at a low confidence (e.g. 0.001). Any subset of train: the images with a file are evaluated.")] = None,
    val_predictions: Annotated[Path | None, typer.Option(
        "--val-predictions", metavar="DIR",
        help="The same for val (every val image is evaluated; no file: no detection).")] = None,
    model: Annotated[Path | None, typer.Option(
        "--model", metavar="WEIGHTS",
        help="Instead of the two directories: one of our checkpoints, which predicts val and a train subset.")]
    = None,
    results: Annotated[Path | None, typer.Option(
        "--results", metavar="FILE",
        help="The trainer's results.csv (ours or Ultralytics') for the loss and mAP curves; another layout is "
             "skipped with a note.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", metavar="FILE", help="The HTML page. Default: doctor_reports/<dataset>-diagnosis.html.")] = None,
    json_file: Annotated[Path | None, typer.Option(
        "--json", metavar="FILE", help="Also write the per-class numbers and diagnosis as JSON; '-' for stdout.")]
    = None,
    name: Annotated[str | None, typer.Option(
        help="What the model is called on the page (and in the default file name).")] = None,
    audit_report: Annotated[Path | None, typer.Option(
        "--audit-report", metavar="FILE",
        help="The dataset's audit report (HTML or --json) to link. Default: looked for in doctor_reports/.")] = None,
    imgsz: Annotated[int, typer.Option(help="--model: input size.")] = 640,
    batch: Annotated[int, typer.Option(min=1, help="--model: images per forward pass.")] = 16,
    device: Annotated[str, typer.Option(help="--model: cpu, cuda or a GPU id.")] = "",
    train_images: Annotated[int, typer.Option(
        min=1, help="--model: train images predicted (at most the number of val images).")] = TRAIN_IMAGES,
) -> None:
    """Train vs val AP per class for any detector, what each gap means, and the label-error suspects.

    Predict a train subset and val at a low confidence, with confidences saved (Ultralytics: save_txt=True
    save_conf=True conf=0.001), then point this command at the two folders. Writes one self-contained HTML
    page, the same as doctor train's report.
    """
    from dataset_doctor.atomic import atomic_write_text
    from dataset_doctor.dataset.index import build_index
    from reports.diagnosis_report import diagnose_predictions

    if model is not None and (train_predictions is not None or val_predictions is not None):
        raise DoctorError("give either --model or --train-predictions and --val-predictions, not both")
    if model is None and (train_predictions is None or val_predictions is None):
        missing = "--train-predictions" if train_predictions is None else "--val-predictions"
        raise DoctorError(f"missing {missing} DIR (or --model WEIGHTS to predict with one of our checkpoints)")
    to_stdout = json_file is not None and str(json_file) == "-"
    out_console = error_console if to_stdout else console
    if out is not None:
        _check_writable(out, "HTML page")
    if json_file is not None and not to_stdout:
        _check_writable(json_file, "JSON file")
    index = build_index(data_yaml, progress=out_console.is_terminal)
    for path, what in ((out, "HTML page"), (None if to_stdout else json_file, "JSON file")):
        if path is not None:
            _refuse_inside_dataset(path, index.config, what)

    with tempfile.TemporaryDirectory(prefix="doctor-diagnose-") as scratch:
        by = None
        if model is not None:
            train_predictions, val_predictions = _predict_with(model, index, Path(scratch), imgsz=imgsz, batch=batch,
                                                               device=device, train_images=train_images,
                                                               out_console=out_console)
            by = str(model)
        outcome = diagnose_predictions(index.config.yaml_path, train_predictions, val_predictions, results=results,
                                       target=out, name=name or (model.stem if model is not None else None),
                                       audit_report=audit_report, predictions_by=by, index=index,
                                       save_predictions_command=None if model is None else
                                       f"doctor predict {shlex.quote(str(model))} "
                                       f"{shlex.quote(str(index.config.yaml_path))} --split val --conf 0.001 "
                                       f"--imgsz {imgsz} --out preds")
        if out is None:  # the default doctor_reports/ is made, as doctor audit does
            outcome.target.parent.mkdir(parents=True, exist_ok=True)
        try:
            path = outcome.page.write(outcome.target)
        except OSError as error:
            raise DoctorError(f"cannot write the HTML page: {error.strerror or error}", outcome.target) from None
    for warning in outcome.warnings:
        error_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    document = json.dumps(outcome.document, indent=2, ensure_ascii=False) + "\n"
    if to_stdout:
        sys.stdout.write(document)
    elif json_file is not None:
        atomic_write_text(json_file, document)
    verdict = outcome.diagnosis.verdict
    out_console.print(f"{escape(verdict.title)}", highlight=False)
    for entry in outcome.document["per_class"]:
        out_console.print(f"  {escape(entry['class'])}: {entry['diagnosis']}", highlight=False)
    out_console.print(f"diagnosis written to [bold]{escape(str(path))}[/]", highlight=False)
    if json_file is not None and not to_stdout:
        out_console.print(f"JSON written to {escape(str(json_file))}", highlight=False)


def _check_writable(path: Path, what: str) -> None:
    """Refuse before any work a path that cannot be written: a directory, or in a missing folder."""
    path = path.expanduser()
    if path.is_dir():
        raise DoctorError(f"cannot write the {what}: this is a directory; give a file name", path)
    if not path.parent.is_dir():
        raise DoctorError(f"cannot write the {what}: the directory does not exist", path)


def _refuse_inside_dataset(path: Path, config, what: str) -> None:
    """User datasets are read-only: no output in an image or label folder, none over the data.yaml."""
    import os

    from dataset_doctor.dataset.datayaml import folders_read

    resolved = Path(os.path.realpath(path.expanduser()))
    if resolved == Path(os.path.realpath(config.yaml_path)):
        raise DoctorError(f"the {what} would overwrite the dataset's data.yaml", path)
    for folder in folders_read(config, with_root=False):
        if resolved.is_relative_to(folder):
            raise DoctorError(f"the {what} would be written inside the dataset ({folder}): datasets are only read",
                              path)


def _predict_with(weights: Path, index, scratch: Path, *, imgsz: int, batch: int, device: str, train_images: int,
                  out_console) -> tuple[Path, Path]:
    """--model: val and a seeded train subset (at most as many images as val) predicted at conf 0.001 into
    scratch/train and scratch/val, by `doctor predict`'s code."""
    from trainer.model.inference import write_yolo_predictions
    from trainer.predict import predict_images

    def warn(message: str) -> None:
        out_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)

    data = index.config.yaml_path
    val, names = predict_images(weights, data, split="val", imgsz=imgsz, conf=0.001, batch=batch, device=device,
                                warn=warn)
    if list(names) != list(index.names):
        raise DoctorError(f"the checkpoint's {len(names)} classes are not the dataset's {index.nc} "
                          "(different names or order)", weights)
    train, _ = predict_images(weights, data, split="train", imgsz=imgsz, conf=0.001, batch=batch, device=device,
                              limit=min(train_images, max(len(val.paths), 1)), warn=warn)
    write_yolo_predictions(scratch / "val", val)
    write_yolo_predictions(scratch / "train", train)
    return scratch / "train", scratch / "val"
