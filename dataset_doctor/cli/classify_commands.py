"""The classification paths of `doctor train`, `doctor val` and `doctor predict` (folder-per-class datasets and
classifier checkpoints); the commands themselves stay in train.py, val.py and predict.py and call these."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table
from rich.text import Text

from dataset_doctor.cli.app import console
from dataset_doctor.errors import DoctorError

CLASSIFY_IMGSZ = 224


def is_classifier_checkpoint(weights: Path) -> bool:
    """A checkpoint of our classifier, or a doctor export .onnx of one (task classify in its metadata). A file
    that is neither is not: the detection path then reads it and gives its own one-line error."""
    from trainer.checkpoint import load_checkpoint

    if Path(weights).suffix.lower() == ".onnx":
        from trainer.export.onnx_runtime import onnx_task

        return onnx_task(weights) == "classify"
    try:
        return load_checkpoint(weights).get("task") == "classify"
    except DoctorError:
        return False


def is_classify_run(run_dir: Path) -> bool:
    """A run directory (with its args.yaml) of the classifier; anything else is left to the detection path."""
    if run_dir.is_dir() and not (run_dir / "args.yaml").is_file():
        return False
    weights = run_dir / "weights" / "last.pt" if run_dir.is_dir() else run_dir
    return weights.is_file() and is_classifier_checkpoint(weights)


def train_classify(settings: dict, resume: Path | None) -> Path:
    """Train a classifier from the shared train options (trainer/classify_loop.py) and write its report.

    Through trainer/launch.py: one process, torchrun's ranks (`torchrun --nproc_per_node N -m dataset_doctor
    train ROOT`), or one process per GPU for `--device 0,1`; rank 0 alone speaks and writes the report."""
    import os

    from reports.classify_report import write_classify_report
    from trainer.config import ClassifyConfig
    from trainer.launch import launch_classifier

    def log(message: str) -> None:
        console.print(message, highlight=False, markup=False)

    config = ClassifyConfig() if resume is not None else ClassifyConfig(**settings)
    run_dir = launch_classifier(config, resume=resume, log=log)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun every process runs this command
        return run_dir
    report = write_classify_report(run_dir)
    console.print(f"report: {report}", highlight=False, markup=False)
    console.print(f"results in [bold]{run_dir}[/]")
    return run_dir


def val_classify(weights: Path, data: Path, split: str, imgsz: int | None, batch: int, device: str,
                 json_file: Path | None) -> None:
    """Top-1, top-5 and per-class precision / recall / accuracy of a classifier checkpoint on one split."""
    import torch

    from dataset_doctor.atomic import atomic_write_text
    from dataset_doctor.dataset.classify_index import build_classify_index
    from trainer.classify_loop import evaluate_dataset
    from trainer.data.classify_dataset import ClassifyAugment, ClassifyDataset
    from trainer.export.onnx_runtime import load_classifier_model

    model, names, trained_size = load_classifier_model(weights, device or "cpu")  # .pt or exported .onnx
    index = build_classify_index(data)
    if list(index.names) != names:
        raise DoctorError(f"the model was trained on classes {names}, the dataset has {list(index.names)}", weights)
    if split not in index.splits:
        raise DoctorError(f"no '{split}' split (this dataset has {', '.join(index.splits)})", data)
    size = imgsz or trained_size
    rows = index.images[(index.images["split"] == split) & index.images["readable"]]
    dataset = ClassifyDataset(rows["path"].tolist(), rows["class_id"], ClassifyAugment(size))
    result, _ = evaluate_dataset(model, dataset, list(index.names), batch, torch.device(device or "cpu"))
    console.print(f"{weights} on split {split}: {result.samples} images, top-1 {result.top1:.4f}, "
                  f"top-5 {result.top5:.4f}", highlight=False, markup=False)
    table = Table(title="per class", title_justify="left", header_style="bold")
    for column in ("class", "images", "precision", "recall", "accuracy"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for k, name in enumerate(result.class_names):
        table.add_row(Text(name), str(int(result.support[k])), f"{result.precision[k]:.3f}",
                      f"{result.recall[k]:.3f}", f"{result.accuracy[k]:.3f}")
    console.print(table)
    if json_file is not None:
        atomic_write_text(json_file, json.dumps(result.to_json(), indent=2) + "\n")
        console.print(f"JSON written to {json_file}", highlight=False, markup=False)


def predict_classify(weights: Path, source: Path, out: Path, split: str, imgsz: int | None, batch: int,
                     device: str, top_k: int) -> None:
    """predictions.csv in `out`: per image its top-k classes with their probabilities."""
    import torch

    from dataset_doctor.atomic import atomic_write_text, staged_directory
    from dataset_doctor.dataset.classify_index import build_classify_index, classify_root
    from dataset_doctor.dataset.datayaml import IMAGE_EXTENSIONS
    from trainer.classify_loop import classify_scores, top_k_csv
    from trainer.data.classify_dataset import ClassifyAugment, ClassifyDataset
    from trainer.export.onnx_runtime import load_classifier_model

    out = out.expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DoctorError("output directory exists and is not empty", out)
    model, names, trained_size = load_classifier_model(weights, device or "cpu")  # .pt or exported .onnx
    if classify_root(source) is not None:
        index = build_classify_index(source)
        rows = index.images[(index.images["split"] == split) & index.images["readable"]]
        paths = rows["path"].tolist()
    elif source.is_dir():
        paths = sorted(str(p) for p in source.rglob("*") if p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)
    elif source.is_file():
        paths = [str(source)]
    else:
        raise DoctorError("no such image or folder", source)
    if not paths:
        raise DoctorError("no image to predict on", source)
    size = imgsz or trained_size
    dataset = ClassifyDataset(paths, [0] * len(paths), ClassifyAugment(size))
    scores = classify_scores(model, dataset, batch, torch.device(device or "cpu"))
    with staged_directory(out, "predict") as staging:
        atomic_write_text(staging / "predictions.csv", top_k_csv(paths, scores, names, k=top_k))
    console.print(f"top-{min(top_k, len(names))} classes of {len(paths)} images written to "
                  f"[bold]{out / 'predictions.csv'}[/]")
