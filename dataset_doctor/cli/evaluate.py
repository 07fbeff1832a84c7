"""`doctor evaluate data.yaml --predictions DIR`: score any model's saved predictions the COCO way."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dataset_doctor.cli.app import app, console, error_console
from dataset_doctor.errors import DoctorError

if TYPE_CHECKING:
    from trainer.evaluation import EvaluationResult


@app.command(rich_help_panel="Train and evaluate")
def evaluate(
    data_yaml: Annotated[Path, typer.Argument(help="The dataset's data.yaml (or the directory holding it).")],
    predictions: Annotated[Path, typer.Option(
        "--predictions", "-p", metavar="DIR",
        help="Directory of YOLO txt predictions, one <image name>.txt per image, lines 'class cx cy w h "
             "confidence' (normalized), as Ultralytics save_txt + save_conf writes. No file: no detections.")],
    split: Annotated[str, typer.Option(help="The split the predictions were made on: train, val or test.")] = "val",
    json_file: Annotated[Path | None, typer.Option(
        "--json", metavar="FILE", help="Also write the metrics as JSON (design.md section 3); '-' for stdout.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes scanning files (default: all cores).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Read every file again, ignoring the cache.")] = False,
) -> None:
    """Measure mAP50, mAP50-95, and per-class AP, precision and recall of saved predictions.

    mAP is COCO's bbox evaluation, number for number as pycocotools computes it (area range all, maxDets 100).

    Precision and recall are taken at each class's best-F1 confidence, at IoU 0.5.
    """
    from dataset_doctor.atomic import atomic_write_text
    from dataset_doctor.dataset.index import build_index  # pandas / OpenCV load only when a command runs
    from trainer.evaluation.dataset import evaluate_prediction_dir

    to_stdout = json_file is not None and str(json_file) == "-"
    out = error_console if to_stdout else console
    index = build_index(data_yaml, workers=workers, use_cache=not no_cache, progress=out.is_terminal)
    outcome = evaluate_prediction_dir(index, split, predictions)
    result = outcome.result
    if not result.measurable.any():
        raise DoctorError(f"split '{split}' has no usable ground-truth boxes: there is nothing to measure AP on",
                          index.config.yaml_path)

    ground_truth = outcome.ground_truth
    if ground_truth.unreadable:
        _warn(f"{ground_truth.unreadable} unreadable image(s) of split '{split}' left out of the evaluation")
    if outcome.unmatched_files:
        _warn(f"{len(outcome.unmatched_files)} prediction file(s) named after no image of split '{split}' were "
              f"ignored, e.g. '{outcome.unmatched_files[0]}'")
    print_evaluation(result, out, f"split {split}: {result.images} images, {outcome.files_read} with a "
                                  f"prediction file, {int(result.predictions.sum())} predictions")

    document = json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n"
    if to_stdout:
        sys.stdout.write(document)
    elif json_file is not None:
        atomic_write_text(json_file, document)
        out.print(f"JSON written to {json_file}", highlight=False, markup=False)


def print_evaluation(result: EvaluationResult, out: Console, title: str) -> None:
    """The per-class table, worst class first, then the overall line (shared with `doctor val`)."""
    table = Table(title=escape(title), title_justify="left", header_style="bold")
    for column in ("Class", "Images", "Instances", "P", "R", "Conf", "AP50", "AP50-95"):
        table.add_column(column, justify="left" if column == "Class" else "right")
    measurable = [int(c) for c in range(result.num_classes) if result.measurable[c]]
    measurable.sort(key=lambda c: (result.ap50_95[c], result.ap50[c], c))
    for class_id in measurable:
        table.add_row(escape(result.class_names[class_id]), str(result.images_with_class[class_id]),
                      str(result.instances[class_id]), _cell(result.precision[class_id]),
                      _cell(result.recall[class_id]), _cell(result.confidence[class_id]),
                      _cell(result.ap50[class_id]), _cell(result.ap50_95[class_id]))
    for class_id in range(result.num_classes):
        if not result.measurable[class_id]:
            table.add_row(escape(result.class_names[class_id]), "0", "0", "-", "-", "-", "-", "-", style="dim")
    table.add_section()
    table.add_row("all", str(result.images), str(int(result.instances.sum())), _cell(result.mean_precision),
                  _cell(result.mean_recall), "", _cell(result.map50), _cell(result.map50_95), style="bold")
    out.print(table)
    missing = result.num_classes - len(measurable)
    note = f"; {missing} class(es) without ground truth here have no AP and are left out of the means" \
        if missing else ""
    out.print(f"mAP50 {result.map50:.3f}, mAP50-95 {result.map50_95:.3f} (COCO protocol). P and R at each class's "
              f"best-F1 confidence (Conf), IoU 0.5{note}.", highlight=False, markup=False)


def _cell(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _warn(message: str) -> None:
    error_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)
