"""`doctor split DIR_OR_YAML --out DIR`: a new dataset with stratified, leak-free train/val(/test) splits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dataset_doctor.cli.app import app, console


@app.command(rich_help_panel="Check and fix data")
def split(
    source: Annotated[Path, typer.Argument(help="A data.yaml (all its splits are pooled), a folder holding one, "
                                                "or a folder of images with YOLO labels (images/ + labels/, or "
                                                "labels next to the images).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the new dataset (must not exist, or "
                                                          "be empty).")],
    ratios: Annotated[str, typer.Option(help="train,val[,test] fractions summing to 1, e.g. 0.7,0.2,0.1; a test "
                                             "of 0 is left out.")] = "0.8,0.2",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same split.")] = 0,
    link: Annotated[str, typer.Option(help="How images get into the new dataset: copy, hardlink (copies where "
                                           "the filesystem cannot) or symlink. Labels are always copied.")] = "copy",
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier output of dataset-doctor at --out "
                                                        "(never a folder it did not write).")] = False,
) -> None:
    """Split a dataset so every class's instances follow the ratios, with near-duplicates kept in one split."""
    from dataset_doctor.dataset.classify_index import TASK_CLASSIFY, detect_task
    from dataset_doctor.split import split_dataset  # pandas, SciPy and OpenCV load only when needed
    from dataset_doctor.split.summary import render_summary

    detected, why = detect_task(source)
    if detected == TASK_CLASSIFY:
        _split_classify(source, out, ratios, seed, link.lower(), force, why)
        return

    result = split_dataset(source, out, ratios=ratios, seed=seed, link=link.lower(), force=force,
                           progress=console.is_terminal)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    console.print(render_summary(result.summary, str(result.out)))


def _split_classify(source: Path, out: Path, ratios: str, seed: int, link: str, force: bool, why: str) -> None:
    """A folder-per-class dataset: stratified by class, duplicates together (split/classify.py)."""
    from rich.table import Table
    from rich.text import Text

    from dataset_doctor.split.classify import split_classify_dataset

    console.print(why, highlight=False, markup=False)
    result = split_classify_dataset(source, out, ratios=ratios, seed=seed, link=link, force=force)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    table = Table(title=f"images per class in {result.out}", title_justify="left", header_style="bold")
    table.add_column("class")
    for split in result.splits:
        table.add_column(split, justify="right")
    for k, name in enumerate(result.names):
        table.add_row(Text(name), *(str(result.counts[split][k]) for split in result.splits))
    console.print(table)
    console.print(f"{result.groups_kept_together} group(s) of duplicate images kept in one split",
                  highlight=False, markup=False)
