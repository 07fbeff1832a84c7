"""`doctor val WEIGHTS data.yaml --split val`: run one of our models on a split and measure it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dataset_doctor.cli.app import app, console
from dataset_doctor.errors import DoctorError


@app.command(rich_help_panel="Train and evaluate")
def val(
    weights: Annotated[Path, typer.Argument(
        help="A checkpoint of ours (best.pt / last.pt) or a doctor export file (.onnx).")],
    data_yaml: Annotated[Path, typer.Argument(help="The dataset's data.yaml.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "val",
    imgsz: Annotated[int | None, typer.Option(help="Input size (multiple of 32) [default: 640; a classifier: its "
                                                   "training size]. Larger than the training size detects small "
                                                   "objects better without retraining.", show_default=False)] = None,
    batch: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 16,
    conf: Annotated[float, typer.Option(help="Confidence threshold before NMS.")] = 0.001,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold.")] = 0.7,
    device: Annotated[str, typer.Option(help="cpu, cuda or a GPU id. Default: cuda if available.")] = "",
    workers: Annotated[int | None, typer.Option(help="Data loader processes.")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", metavar="FILE",
                                                   help="Write the metrics as JSON (doctor evaluate's shape).")]
    = None,
) -> None:
    """Evaluate a trained model on a split: per-class AP50, AP50-95, precision, recall (COCO protocol)."""
    from dataset_doctor.atomic import atomic_write_text
    from dataset_doctor.cli.classify_commands import is_classifier_checkpoint, val_classify
    from dataset_doctor.cli.evaluate import print_evaluation
    from dataset_doctor.dataset.index import build_index
    from trainer.data.dataset import build_dataset
    from trainer.data.loader import make_eval_loader
    from trainer.devices import choose_device
    from trainer.export.onnx_runtime import baked_nms_warnings, load_detector
    from trainer.model.inference import evaluate_model
    from trainer.setup import trained_imgsz

    if is_classifier_checkpoint(weights):
        val_classify(weights, data_yaml, split, imgsz, batch, device, json_file)
        return
    imgsz = imgsz if imgsz is not None else 640
    choice = choose_device(device)
    model, names = load_detector(weights, choice.device)
    for message in baked_nms_warnings(model, conf, iou, measuring_map=True):
        console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)  # one line, unwrapped
    trained = trained_imgsz(weights) if Path(weights).suffix.lower() != ".onnx" else None
    if trained is not None and imgsz != trained:
        console.print(f"note: the model was trained at --imgsz {trained}; evaluating at {imgsz}"
                      + (" (a larger input: small objects cover more pixels, no retraining needed)"
                         if imgsz > trained else ""), highlight=False, markup=False)
    index = build_index(data_yaml, progress=console.is_terminal)
    if list(index.names) != names:
        raise DoctorError(f"the model was trained on classes {names}, the dataset has {list(index.names)}", weights)
    if split not in index.splits:
        raise DoctorError(f"no '{split}' split (this dataset has {', '.join(index.splits)})", index.config.yaml_path)
    dataset = build_dataset(index, split, imgsz, None, warn=lambda m: console.print(f"[yellow]warning:[/] {m}"))
    loader = make_eval_loader(dataset, batch, workers, choice.device)
    result, _ = evaluate_model(model, loader, index, choice.device, conf, iou, amp_dtype=choice.amp_dtype)
    print_evaluation(result, console, f"{weights} on split {split}: {result.images} images, "
                                      f"{int(result.predictions.sum())} predictions")
    if json_file is not None:
        atomic_write_text(json_file, json.dumps(result.to_json(), indent=2) + "\n")
        console.print(f"JSON written to {json_file}", highlight=False, markup=False)
