"""`doctor weights data.yaml`: per-class loss weights from the train instance counts."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from dataset_doctor.cli.app import app, console
from dataset_doctor.weights import DEFAULT_BETA, DEFAULT_MAX_RATIO, DEFAULT_METHOD, METHODS

WeightMethod = Enum("WeightMethod", {method: method for method in METHODS}, type=str)  # the choices Typer lists


@app.command(rich_help_panel="Check and fix data")
def weights(
    data_yaml: Annotated[Path, typer.Argument(help="The dataset's data.yaml (or the folder holding it).")],
    method: Annotated[WeightMethod, typer.Option(
        help="inverse: n_total / (n_classes * n_c), scikit-learn's 'balanced'; sqrt: its square root (milder); "
             "effective: effective number of samples (Cui et al. 2019).")] = WeightMethod(DEFAULT_METHOD),
    beta: Annotated[float, typer.Option(help="Beta of the effective-number method, in (0, 1).")] = DEFAULT_BETA,
    max_ratio: Annotated[float, typer.Option(min=1.0, help="Cap on the largest / smallest weight ratio.")]
    = DEFAULT_MAX_RATIO,
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the weights as JSON here.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes for reading the dataset (default: all "
                                                            "cores).")] = None,
    task: Annotated[str | None, typer.Option(
        help="classify (folder-per-class: images per class folder) or detect (boxes); default: detected from "
             "the layout.")] = None,
) -> None:
    """Class weights for the classification loss from the usable train boxes (what train --class-weights auto uses).

    On a folder-per-class dataset (ROOT/train/<class>/*.jpg) the counts are the readable train images per class.
    """
    from dataset_doctor.dataset.classify_index import TASK_CLASSIFY, build_classify_index, detect_task
    from dataset_doctor.dataset.index import build_index
    from dataset_doctor.weights import class_weights_for_classify, class_weights_for_index, write_weights_json

    if not 0.0 < beta < 1.0:
        raise typer.BadParameter(f"{beta:g} is not strictly between 0 and 1", param_hint="'--beta'")
    detected, why = detect_task(data_yaml, task)
    skipped = 0
    if detected == TASK_CLASSIFY:
        console.print(why, highlight=False, markup=False)
        classify_index = build_classify_index(data_yaml, workers=workers)
        result = class_weights_for_classify(classify_index, method=method.value, max_ratio=max_ratio, beta=beta)
        counted = "images"
        images = classify_index.images
        skipped = int(((images["split"] == "train") & ~images["readable"]).sum())
    else:
        index = build_index(data_yaml, workers=workers)
        result = class_weights_for_index(index, method=method.value, max_ratio=max_ratio, beta=beta)
        counted = "instances"
        skipped = len(index.boxes_in("train")) - sum(result.instances)

    table = Table(title=f"class weights ({result.method}) from train {counted}", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("class")
    table.add_column(counted, justify="right")
    table.add_column("weight", justify="right", style="bold")
    for class_id, (name, count, weight) in enumerate(zip(result.classes, result.instances, result.weights)):
        table.add_row(str(class_id), escape(name), str(count), f"{weight:.4f}")
    console.print(table)
    if skipped:
        what = "unreadable train image(s)" if counted == "images" else \
            "train box(es) with errors or on unreadable images"
        console.print(f"{skipped} {what} are not counted (see `doctor audit`).")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    if json_file is not None:
        write_weights_json(json_file, result)
        console.print(f"wrote {escape(str(json_file))}")
