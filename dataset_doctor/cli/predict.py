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
    imgsz: Annotated[int | None, typer.Option(help="Input size (multiple of 32) [default: 640; a classifier: its "
                                                   "training size].", show_default=False)] = None,
    top_k: Annotated[int, typer.Option(min=1, help="A classifier: classes (with probabilities) per image in "
                                                   "predictions.csv.")] = 5,
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
    from dataset_doctor.cli.classify_commands import is_classifier_checkpoint, predict_classify
    from reports.thumbnails import DrawnBox, class_colour, draw_boxes
    from trainer.model.inference import write_yolo_predictions
    from trainer.predict import predict_images

    if is_classifier_checkpoint(weights):
        predict_classify(weights, source, out, split, imgsz, batch, device, top_k)
        return
    imgsz = imgsz if imgsz is not None else 640
    out = out.expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DoctorError("output directory exists and is not empty", out)

    def warn(message: str) -> None:  # every warning of the command on one channel, imgsz rounding included
        console.print(f"[yellow]warning:[/] {message}", soft_wrap=True)  # one line each, not wrapped

    predictions, names = predict_images(weights, source, split=split, imgsz=imgsz, conf=conf, iou=iou,
                                        max_det=max_det, batch=batch, device=device, warn=warn)

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
