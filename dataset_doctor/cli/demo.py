"""`doctor demo`: the whole story on the bundled sample dataset, one step after another.

sample -> audit (terminal summary, JSON, HTML report) -> rebalance -> train with class weights (a short CPU
run) -> training report. Each step is the real command, called with the options a user would type, so what
it prints is what that command prints.

Sized so the model learns enough for the report to show the train/val gap: 800 train / 200 val sample images,
rebalanced to 300 instances a class, 5 epochs (4.9 minutes measured on a 2-core CPU on 2026-12-01).
A run sized for 5 minutes on a slow host (400 / 100 images, target 150, 3 epochs: about 1,300 training images)
ends at val mAP50 0.000, every class, which shows nothing, so it is not the default. Before training it prints
an ETA from a quick measured step.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.rule import Rule

from dataset_doctor.cli.app import app, console
from dataset_doctor.errors import DoctorError

_MARKER = ".doctor-demo"  # marks a folder this command wrote, so a second `make demo` may replace it


@app.command(rich_help_panel="Get started")
def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo writes (replaced if an earlier demo "
                                           "wrote it).")] = Path("demo_out"),
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (about 50 s each, evaluation included, on a "
                                                    "2-core CPU).")]
    = 5,
    imgsz: Annotated[int, typer.Option(help="Training input size.")] = 320,
    target: Annotated[int, typer.Option(min=1, help="Instances every train class is rebalanced to.")] = 300,
    train_images: Annotated[int, typer.Option(min=50, help="Train images of the sample dataset.")] = 800,
    val_images: Annotated[int, typer.Option(min=20, help="Val images of the sample dataset.")] = 200,
    device: Annotated[str, typer.Option(help="cpu, cuda or a GPU id. Default: cuda if available.")] = "",
    seed: Annotated[int, typer.Option(help="Seed of the sample dataset, the augmentations and training.")] = 0,
    task: Annotated[str, typer.Option(help="detect, or classify: the story on the folder-per-class sample "
                                           "(sample, audit, weights, a classifier at --imgsz 96 unless given, "
                                           "its report).")] = "detect",
) -> None:
    """Run the whole story on the bundled sample dataset and print where the reports are."""
    from dataset_doctor.cli.audit import audit
    from dataset_doctor.cli.rebalance import LinkMode, rebalance
    from dataset_doctor.cli.sample import sample
    from dataset_doctor.cli.train import train

    if task not in ("detect", "classify"):
        raise DoctorError(f"--task must be detect or classify, got {task!r}")
    out = _fresh_output_folder(out)
    started = _STARTED[0] = time.perf_counter()
    if task == "classify":
        _classify_demo(out, epochs, 96 if imgsz == 320 else imgsz, device, seed, started)
        return
    sample_dir, rebalanced_dir = out / "sample", out / "rebalanced"
    audit_json, audit_html = out / "reports" / "audit.json", out / "reports" / "audit.html"
    audit_html.parent.mkdir()

    _step("1/4 a sample dataset: digits on photos, long-tailed, with deliberate defects")
    sample(sample_dir, seed=seed, train_images=train_images, val_images=val_images)

    _step("2/4 doctor audit: what is wrong with it")
    try:
        audit(sample_dir / "data.yaml", json_file=audit_json, html_file=audit_html)
    except typer.Exit as finished:  # exit code 1 means "errors found": expected here, the sample has defects
        if finished.exit_code not in (0, 1):
            raise

    _step(f"3/4 doctor rebalance --target {target}: oversample the rare classes (no flips: these are digits)")
    rebalance(sample_dir / "data.yaml", target=target, out=rebalanced_dir, seed=seed, link=LinkMode.symlink,
              flip=False)

    _step(f"4/4 doctor train: {epochs} epochs at {imgsz} px, class weights auto, on the rebalanced copy")
    _print_eta(rebalanced_dir / "images" / "train", sample_dir / "images" / "val", epochs, imgsz, device)
    train(rebalanced_dir / "data.yaml", epochs=epochs, imgsz=imgsz, device=device, seed=seed, fliplr=0.0,
          project=out / "runs", name="demo", exist_ok=True, audit_report=audit_html)

    run_dir = out / "runs" / "demo"
    console.print(Rule(f"done in {(time.perf_counter() - started) / 60:.1f} min"))
    # soft_wrap: paths stay on one line, whole, for copying.
    console.print(f"audit report:    [bold]{audit_html}[/]", soft_wrap=True)
    console.print(f"training report: [bold]{run_dir / 'report.html'}[/]", soft_wrap=True)
    console.print("open them in a browser; `doctor --help` lists every command.")


def _classify_demo(out: Path, epochs: int, imgsz: int, device: str, seed: int, started: float) -> None:
    """sample --task classify -> audit -> weights -> train a classifier with class weights -> its report."""
    from dataset_doctor.cli.audit import audit
    from dataset_doctor.cli.sample import sample
    from dataset_doctor.cli.train import train
    from dataset_doctor.cli.weights import WeightMethod, weights

    sample_dir = out / "sample-classify"
    audit_json, audit_html = out / "reports" / "audit.json", out / "reports" / "audit.html"
    audit_html.parent.mkdir()
    _step("1/4 a classification sample: one digit per photo, folder per class, long-tailed, with defects")
    sample(sample_dir, seed=seed, task="classify")
    _step("2/4 doctor audit: what is wrong with it (task detected from the layout)")
    try:
        audit(sample_dir, json_file=audit_json, html_file=audit_html)
    except typer.Exit as finished:  # 1: errors found, expected (the sample has a corrupt JPEG)
        if finished.exit_code not in (0, 1):
            raise
    _step("3/4 doctor weights: loss weights from the images per class")
    weights(sample_dir, method=WeightMethod("inverse"), json_file=out / "reports" / "class_weights.json")
    _step(f"4/4 doctor train: a YOLO classifier, {epochs} epochs at {imgsz} px, class weights auto (no flips: "
          "digits; images decoded once: --cache ram)")
    train(sample_dir, epochs=epochs, imgsz=imgsz, device=device or "cpu", seed=seed, fliplr=0.0, batch=32,
          project=out / "runs", name="demo-classify", exist_ok=True, workers=0, cache="ram")
    run_dir = out / "runs" / "demo-classify"
    console.print(Rule(f"done in {(time.perf_counter() - started) / 60:.1f} min"))
    console.print(f"audit report:    [bold]{audit_html}[/]", soft_wrap=True)
    console.print(f"training report: [bold]{run_dir / 'report.html'}[/]", soft_wrap=True)


def _print_eta(train_folder: Path, val_folder: Path, epochs: int, imgsz: int, device: str) -> None:
    """Print how long training will take, from a quick measured step (trainer/throughput.py) on this machine."""
    from trainer.devices import choose_device
    from trainer.throughput import measure_train_images_per_s, training_seconds

    train_count, val_count = _count_images(train_folder), _count_images(val_folder)
    images_per_s = measure_train_images_per_s("n", 10, imgsz, choose_device(device).device)
    seconds = training_seconds(images_per_s, epochs, train_count, val_count)
    console.print(f"ETA: training about {seconds / 60:.1f} min ({epochs} epochs x {train_count} images at "
                  f"{images_per_s:.1f} images/s measured just now, evaluations included)")


def _count_images(folder: Path) -> int:
    """Image files in `folder` (0 when it is missing)."""
    from dataset_doctor.dataset.datayaml import IMAGE_EXTENSIONS

    if not folder.is_dir():
        return 0
    return sum(1 for entry in folder.iterdir() if entry.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)


def _fresh_output_folder(out: Path) -> Path:
    """`out`, empty: a missing or empty folder is used, an earlier demo's is replaced, anything else refused."""
    out = out.expanduser().resolve()
    if out.exists():
        if not out.is_dir():
            raise DoctorError("exists and is not a folder", out)
        if any(out.iterdir()):
            if not (out / _MARKER).exists():
                raise DoctorError("folder is not empty and was not written by doctor demo: choose another --out",
                                  out)
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("written by doctor demo; a later doctor demo may replace this folder\n")
    return out


_STARTED = [0.0]  # when the current demo started (perf_counter), for the elapsed time on each step's rule


def _step(title: str) -> None:
    """A step's rule, with the minutes since the demo started: a slow stage shows on a slow machine."""
    console.print()
    elapsed = f"[dim]{(time.perf_counter() - _STARTED[0]) / 60:.1f} min[/] " if _STARTED[0] else ""
    console.print(Rule(f"{elapsed}[bold]{title}[/]", align="left"))
