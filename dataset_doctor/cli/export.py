"""`doctor export WEIGHTS --format onnx`: a trained model as one self-describing ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dataset_doctor.cli.app import app, console
from dataset_doctor.errors import DoctorError

FORMATS = ("onnx",)


@app.command(rich_help_panel="Train and evaluate")
def export(
    weights: Annotated[Path, typer.Argument(help="A checkpoint of ours (best.pt / last.pt).")],
    format: Annotated[str, typer.Option("--format", help="Export format (onnx).")] = "onnx",
    imgsz: Annotated[int, typer.Option(help="Input side (multiple of 32); with --dynamic only the example's.")]
    = 640,
    dynamic: Annotated[bool, typer.Option("--dynamic", help="Free batch, height and width.")] = False,
    half: Annotated[bool, typer.Option("--half", help="float16 (needs --device cuda).")] = False,
    opset: Annotated[int, typer.Option(min=11, help="ONNX opset.")] = 17,
    nms: Annotated[bool, typer.Option("--nms", help="End in class-aware NonMaxSuppression: final boxes.")] = False,
    conf: Annotated[float, typer.Option(help="With --nms: confidence threshold.")] = 0.25,
    iou: Annotated[float, typer.Option(help="With --nms: IoU threshold.")] = 0.7,
    max_det: Annotated[int, typer.Option(min=1, help="With --nms: boxes kept per image and class.")] = 300,
    simplify: Annotated[bool, typer.Option(help="Simplify with onnxslim when it is installed.")] = True,
    device: Annotated[str, typer.Option(help="cpu or cuda (for --half).")] = "cpu",
    out: Annotated[Path | None, typer.Option(help="Output file. Default: WEIGHTS with the .onnx suffix.")] = None,
) -> None:
    """Export the EMA model, fused and in eval mode, with its class names, imgsz, stride, scale, version and
    data name in the file's metadata (README, Export, says the layout)."""
    from trainer.export.onnx_export import ExportOptions, export_onnx

    if format.lower() not in FORMATS:
        raise DoctorError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if weights.suffix.lower() == ".onnx":
        raise DoctorError("already an ONNX file: export takes a checkpoint (.pt)", weights)
    target = (out or weights.with_suffix(".onnx")).expanduser()
    options = ExportOptions(imgsz=imgsz, dynamic=dynamic, half=half, opset=opset, nms=nms, conf=conf, iou=iou,
                            max_det=max_det, simplify=simplify)
    metadata = export_onnx(weights, target, options, device or "cpu")
    size_mb = target.stat().st_size / 1e6
    console.print(f"exported {weights} -> [bold]{target}[/] ({size_mb:.1f} MB, opset {opset}, "
                  f"{'dynamic' if dynamic else f'static 1x3x{imgsz}x{imgsz}'}, {metadata['layout']})",
                  highlight=False)
