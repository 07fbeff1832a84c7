"""`doctor export WEIGHTS --format onnx`: a trained model as one self-describing ONNX file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dataset_doctor.cli.app import app, console
from dataset_doctor.errors import DoctorError

FORMATS = ("onnx",)


@app.command(rich_help_panel="Train and evaluate")
def export(
    weights: Annotated[Path, typer.Argument(help="A checkpoint of ours (best.pt / last.pt), detector or "
                                                 "classifier.")],
    format: Annotated[str, typer.Option("--format", help="Export format (onnx).")] = "onnx",
    imgsz: Annotated[int | None, typer.Option(help="Input side (multiple of 32) [default: 640; a classifier: its "
                                                   "training size]; with --dynamic only the example's.",
                                              show_default=False)] = None,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Free batch, height and width.")] = False,
    half: Annotated[bool, typer.Option("--half", help="float16 (needs --device cuda).")] = False,
    opset: Annotated[int, typer.Option(min=11, help="ONNX opset.")] = 17,
    nms: Annotated[bool, typer.Option("--nms", help="A detector: end in class-aware NonMaxSuppression (final "
                                                    "boxes; export at --conf 0.001 for doctor val).")] = False,
    conf: Annotated[float, typer.Option(help="With --nms: confidence threshold.")] = 0.25,
    iou: Annotated[float, typer.Option(help="With --nms: IoU threshold.")] = 0.7,
    max_det: Annotated[int, typer.Option(min=1, help="With --nms: boxes kept per image and class.")] = 300,
    simplify: Annotated[bool, typer.Option(help="Simplify with onnxslim when it is installed.")] = True,
    device: Annotated[str, typer.Option(help="cpu or cuda (for --half).")] = "cpu",
    out: Annotated[Path | None, typer.Option(help="Output file. Default: WEIGHTS with the .onnx suffix.")] = None,
) -> None:
    """Export the EMA model, fused and in eval mode, with its task, class names, imgsz, stride, scale, version
    and data name in the file's metadata (README, Export, says the layout). A classifier outputs probabilities."""
    from trainer.export.onnx_export import ExportOptions, export_onnx

    if format.lower() not in FORMATS:
        raise DoctorError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if weights.suffix.lower() == ".onnx":
        raise DoctorError("already an ONNX file: export takes a checkpoint (.pt)", weights)
    target = (out or weights.with_suffix(".onnx")).expanduser()
    options = ExportOptions(imgsz=imgsz or 0, dynamic=dynamic, half=half, opset=opset, nms=nms, conf=conf, iou=iou,
                            max_det=max_det, simplify=simplify)
    metadata = export_onnx(weights, target, options, device or "cpu")
    size_mb = target.stat().st_size / 1e6
    side = json.loads(metadata["imgsz"])[0]
    console.print(f"exported {weights} -> [bold]{target}[/] ({metadata['task']}, {size_mb:.1f} MB, opset {opset}, "
                  f"{'dynamic' if dynamic else f'static 1x3x{side}x{side}'}, {metadata['layout']})",
                  highlight=False)
