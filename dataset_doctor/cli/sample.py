"""`doctor sample OUT_DIR`: write the bundled sample dataset."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from dataset_doctor.cli.app import app, console
from dataset_doctor.sample.spec import MAX_CLASSES, MIN_TRAIN_IMAGES, MIN_VAL_IMAGES, SampleSpec


@app.command(rich_help_panel="Get started")
def sample(
    out_dir: Annotated[Path, typer.Argument(help="Where to write the dataset (must not exist, or be empty).")],
    seed: Annotated[int, typer.Option(help="Random seed: the same seed writes the same dataset.")] = 0,
    train_images: Annotated[int, typer.Option(min=MIN_TRAIN_IMAGES, help="Train images.")] = SampleSpec.train_images,
    val_images: Annotated[int, typer.Option(min=MIN_VAL_IMAGES, help="Val images.")] = SampleSpec.val_images,
    classes: Annotated[int, typer.Option(min=10, max=MAX_CLASSES, help="Classes, long-tailed; above 10 each class "
                                         "is a two-digit number (e.g. 100 for the hundred-class experience).")]
    = SampleSpec.classes,
    task: Annotated[str, typer.Option(
        help="detect (YOLO boxes, the default) or classify (folder-per-class: one digit per image, "
             "ROOT/train/<class>/*.jpg; --train-images and --val-images do not apply).")] = "detect",
) -> None:
    """Write the bundled sample dataset: digits on photos, long-tailed, with known defects in manifest.json."""
    if task == "classify":
        from dataset_doctor.sample.classify import write_classify_sample

        started = time.perf_counter()
        root = write_classify_sample(out_dir, seed=seed)
        console.print(f"wrote the classification sample [bold]{root}[/] (seed {seed}) in "
                      f"{time.perf_counter() - started:.1f}s; its deliberate defects are listed in "
                      f"{root / 'manifest.json'}", highlight=False)
        return
    if task != "detect":
        from dataset_doctor.errors import DoctorError

        raise DoctorError(f"--task must be detect or classify, got {task!r}")
    write_detect_sample(out_dir, seed, SampleSpec(train_images=train_images, val_images=val_images, classes=classes))


def write_detect_sample(out_dir: Path, seed: int, spec: SampleSpec) -> Path:
    """Write the detection sample and say so, as `doctor sample` does (doctor demo passes its own smaller spec)."""
    from dataset_doctor.sample.generate import write_sample_dataset  # scikit-learn and OpenCV load only when needed

    started = time.perf_counter()
    data_yaml = write_sample_dataset(out_dir, seed=seed, spec=spec)
    seconds = time.perf_counter() - started
    console.print(f"wrote [bold]{data_yaml}[/] ({spec.train_images} train, {spec.val_images} val images, "
                  f"{spec.classes} classes, {spec.min_side}-{spec.max_side} px, seed {seed}) in {seconds:.1f}s; its "
                  f"deliberate defects are listed in {data_yaml.parent / 'manifest.json'}")
    return data_yaml
