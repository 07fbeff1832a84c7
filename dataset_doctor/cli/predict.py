"""`doctor predict WEIGHTS SOURCE --out DIR`: detections as YOLO txt with confidence, optionally drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dataset_doctor.cli.app import app, console
from dataset_doctor.errors import DoctorError


@app.command(rich_help_panel="Train and evaluate")
def predict(
    weights: Annotated[Path, typer.Argument(
        help="A checkpoint of ours (best.pt / last.pt) or a doctor export file (.onnx).")],
    source: Annotated[Path, typer.Argument(help="An image, a folder of images, a .txt list, or a data.yaml.")],
    out: Annotated[Path, typer.Option(help="New directory: labels/<image>.txt (and images/ with --save-images).")],
    split: Annotated[str, typer.Option(help="With a data.yaml source: which split.")] = "val",
    imgsz: Annotated[int, typer.Option(help="Input size (multiple of 32).")] = 640,
    conf: Annotated[float, typer.Option(help="Confidence threshold.")] = 0.25,
    iou: Annotated[float, typer.Option(help="NMS IoU threshold.")] = 0.7,
    max_det: Annotated[int, typer.Option(help="Detections kept per image.")] = 300,
    batch: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 16,
    device: Annotated[str, typer.Option(help="cpu, cuda or a GPU id. Default: cuda if available.")] = "",
    save_images: Annotated[bool, typer.Option("--save-images", help="Also write the images with boxes drawn.")]
    = False,
) -> None:
    """Predict on images and write `class cx cy w h confidence` lines (what `doctor evaluate` reads)."""
    from dataset_doctor.atomic import atomic_write_bytes, staged_directory
    from reports.thumbnails import DrawnBox, class_colour, draw_boxes
    from trainer.data.dataset import YoloDataset
    from trainer.data.loader import make_eval_loader
    from trainer.data.predict_source import image_set_from_source
    from trainer.devices import choose_device
    from trainer.export.onnx_runtime import load_detector
    from trainer.model.inference import predict as run_model
    from trainer.model.inference import write_yolo_predictions

    out = out.expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DoctorError("output directory exists and is not empty", out)
    choice = choose_device(device)
    model, names = load_detector(weights, choice.device)
    def warn(message: str) -> None:  # every warning of the command on one channel, imgsz rounding included
        console.print(f"[yellow]warning:[/] {message}")

    images = image_set_from_source(source, split, warn=warn)
    loader = make_eval_loader(YoloDataset(images, imgsz, warn=warn), batch, device=choice.device)
    predictions = run_model(model, loader, choice.device, conf, iou, max_det, choice.amp_dtype)

    with staged_directory(out, "predict") as staging:
        write_yolo_predictions(staging / "labels", predictions)
        if save_images:
            from dataset_doctor.dataset.images import read_image_file
            from reports.thumbnails import encode_jpeg

            for path, (height, width), found in zip(predictions.paths, predictions.sizes, predictions.boxes):
                boxes = [DrawnBox((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height,
                                  f"{names[int(c)]} {s:.2f}", class_colour(int(c)), 2)
                         for x1, y1, x2, y2, s, c in found]
                image = read_image_file(path)
                if image is None:
                    raise DoctorError("image can no longer be decoded (did it change during the run?)", path)
                drawn = draw_boxes(image, boxes)
                atomic_write_bytes(staging / "images" / f"{Path(path).stem}.jpg", encode_jpeg(drawn, 90))
    detections = sum(len(b) for b in predictions.boxes)
    console.print(f"{detections} detections on {len(predictions.paths)} images written to [bold]{out / 'labels'}[/]")
