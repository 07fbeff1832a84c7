"""`doctor demo`: the whole story on the bundled sample dataset, one step after another.

sample -> audit (terminal summary, JSON, HTML report) -> rebalance -> train with class weights (a short CPU
run) -> training report. Each step is the real command, called with the options a user would type, so what
it prints is what that command prints.

Sized for 5 minutes on a slow 2-core host (issue 22: about 7 training images/s at 320 px, 2.5x slower than the
reference machine): a smaller sample than `doctor sample` writes (700 train / 150 val images of 160-320 px,
digits 8-85 px tall), rebalanced to 250 instances a class, 3 epochs at 160 px with a 1-epoch warmup and AdamW
at lr 0.002. Measured on 2026-12-03 on the reference machine: about 2 minutes end to end, val mAP50 about
0.06, the frequent class far ahead of the rare ones in train and val (bench/README.md, `make demo`). The
earlier default (800 / 200 images of 320-640 px, target 300, 5 epochs at 320) reached val mAP50 0.27 in 4.7
minutes there, about 18 estimated on the slow host; `--train-images`, `--val-images`, `--target`, `--epochs`
and `--imgsz` size it by hand. Before training it prints an ETA from a quick measured step.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.rule import Rule

from dataset_doctor.cli.app import app, console
from dataset_doctor.errors import DoctorError
from dataset_doctor.sample.spec import SampleSpec

# Smaller images with larger digits than `doctor sample` writes, so 3 epochs at 160 px learn something.
DEMO_SAMPLE = SampleSpec(min_side=160, max_side=320, min_object_px=8, max_object_px=85)
# Three epochs of about 55 steps: the default 3-epoch warmup would be the whole run, so 1 epoch (the schedule's
# floor of 100 steps), and AdamW at twice its default rate (on 800 / 200 such images, on a shared machine,
# 4 epochs reached val mAP50 0.129 with these, 5 with the defaults 0.127).
DEMO_TRAINING = {"warmup_epochs": 1.0, "lr0": 0.002}
_MARKER = ".doctor-demo"  # marks a folder this command wrote, so a second `make demo` may replace it


@app.command(rich_help_panel="Get started")
def demo(
    out: Annotated[Path, typer.Option(help="Folder for everything the demo writes (replaced if an earlier demo "
                                           "wrote it).")] = Path("demo_out"),
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs (about 30 s each, evaluation included, on a "
                                                    "2-core CPU).")]
    = 3,
    imgsz: Annotated[int, typer.Option(help="Training input size (the sample's images are 160-320 px).")] = 160,
    target: Annotated[int, typer.Option(min=1, help="Instances every train class is rebalanced to.")] = 250,
    train_images: Annotated[int, typer.Option(min=50, help="Train images of the sample dataset.")] = 700,
    val_images: Annotated[int, typer.Option(min=20, help="Val images of the sample dataset.")] = 150,
    device: Annotated[str, typer.Option(help="cpu, cuda or a GPU id. Default: cuda if available.")] = "",
    seed: Annotated[int, typer.Option(help="Seed of the sample dataset, the augmentations and training.")] = 0,
    task: Annotated[str, typer.Option(help="detect, or classify: the story on the folder-per-class sample "
                                           "(sample, audit, weights, a classifier at --imgsz 96 unless given, "
                                           "its report).")] = "detect",
) -> None:
    """Run the whole story on the bundled sample dataset and print where the reports are."""
    from dataset_doctor.cli.audit import audit
    from dataset_doctor.cli.rebalance import LinkMode, rebalance
    from dataset_doctor.cli.sample import write_detect_sample
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
    write_detect_sample(sample_dir, seed, replace(DEMO_SAMPLE, train_images=train_images, val_images=val_images))

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
          project=out / "runs", name="demo", exist_ok=True, audit_report=audit_html, **DEMO_TRAINING)

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
    from trainer.config import TrainConfig
    from trainer.devices import choose_device
    from trainer.throughput import measure_train_images_per_s, training_seconds

    train_count, val_count = _count_images(train_folder), _count_images(val_folder)
    # At the run's batch: at 160 px a step of 8 images costs about as much as one of 16 (fixed per-layer costs).
    images_per_s = measure_train_images_per_s("n", 10, imgsz, choose_device(device).device, batch=TrainConfig.batch)
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
