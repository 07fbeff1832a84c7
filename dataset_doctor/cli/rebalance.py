"""`doctor rebalance data.yaml --target N --out DIR`: oversample rare classes with augmented copies."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dataset_doctor.cli.app import app, console
from dataset_doctor.errors import DoctorError
from dataset_doctor.rebalance import DEFAULT_MAX_COPIES, MAX_PASTES_PER_HOST


class Method(str, Enum):
    images = "images"
    paste = "paste"
    auto = "auto"


class Blend(str, Enum):
    feather = "feather"
    seamless = "seamless"


class LinkMode(str, Enum):
    symlink = "symlink"
    hardlink = "hardlink"
    copy = "copy"


@app.command(rich_help_panel="Check and fix data")
def rebalance(
    data_yaml: Annotated[Path, typer.Argument(help="The dataset's data.yaml (or the folder holding it).")],
    target: Annotated[int, typer.Option(min=1, help="Instances every train class should reach.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the rebalanced dataset (new, or empty).")] = None,
    max_copies: Annotated[int, typer.Option(min=0, help="At most this many new images from one source image.")]
    = DEFAULT_MAX_COPIES,
    seed: Annotated[int, typer.Option(help="Seed of the augmentations: the same seed writes the same files.")] = 0,
    link: Annotated[LinkMode, typer.Option(
        help="How the original train files get into DIR. symlink and hardlink share the files with the source: "
             "edit a copy, never a link.")] = LinkMode.symlink,
    flip: Annotated[bool, typer.Option(help="Allow horizontal flips in the augmentation (turn off for text, digits, "
                                            "left/right signs).")] = True,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and write nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier output of dataset-doctor at DIR "
                                                        "(never a folder it did not write).")] = False,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: all cores).")] = None,
    method: Annotated[Method, typer.Option(
        help="images: augmented copies of whole images; paste: rare-class instances pasted into other train "
             "images (no neighbours copied with them); auto: the plan picks per class, whichever adds less "
             "surplus.")] = Method.auto,
    max_pastes: Annotated[int, typer.Option(min=1, help="At most this many instances pasted into one train "
                                                        "image.")] = MAX_PASTES_PER_HOST,
    blend: Annotated[Blend, typer.Option(help="Edges of pasted instances: feathered alpha, or OpenCV's "
                                              "seamlessClone.")] = Blend.feather,
) -> None:
    """Plan extra copies of train images so every class reaches --target, and write them as augmented images.

    The plan accounts for classes appearing together in an image and is compared with naive oversampling and
    LVIS repeat-factor sampling. Val and test are referenced unchanged; the source dataset is never modified.
    """
    from dataset_doctor.dataset.classify_index import TASK_CLASSIFY, detect_task

    detected, why = detect_task(data_yaml)
    if detected == TASK_CLASSIFY:
        _rebalance_classify(data_yaml, target, out, max_copies, seed, flip, dry_run, force, why)
        return
    from dataset_doctor.dataset.datayaml import load_data_yaml
    from dataset_doctor.dataset.index import build_index
    from dataset_doctor.rebalance.materialize import check_output_dir, write_rebalanced_dataset
    from dataset_doctor.rebalance.paste import PasteOptions
    from dataset_doctor.rebalance.paste_plan import assign_pastes, paste_goals, plan_methods
    from dataset_doctor.rebalance.plan import make_rebalance_plan
    from dataset_doctor.rebalance.report import (
        methods_record,
        methods_table,
        rebalance_json,
        rebalance_record,
        summary_notes,
        summary_table,
    )
    from dataset_doctor.rebalance.sources import collect_train_sources

    config = load_data_yaml(data_yaml)
    if out is None and not dry_run:
        raise DoctorError("--out DIR is required (or use --dry-run to only print the plan)")
    if out is not None:
        check_output_dir(out, config, force)  # refuse before any work is done (read-only, so dry runs too)
    index = build_index(config, workers=workers)
    sources = collect_train_sources(index)
    if sources.boxes.empty:
        raise DoctorError("no usable train box: there is no class to rebalance", config.yaml_path)
    started = time.perf_counter()
    counts = sources.count_matrix()
    plan = make_rebalance_plan(counts, target, max_copies)
    comparison = plan_methods(sources.boxes, counts, plan, method.value, max_pastes)
    chosen = comparison.outcomes[method.value]
    planning_seconds = time.perf_counter() - started

    if dry_run:
        console.print(summary_table(sources.names, plan))
        console.print(methods_table(sources.names, comparison))
        for note in summary_notes(sources, plan):
            console.print(note, highlight=False)
        console.print(f"dry run: planned in {planning_seconds:.2f}s, nothing written.")
        return

    def record(written):
        entry = rebalance_record(sources, plan, seed=seed, link=link.value, flip=flip,
                                 result=written if method is Method.images else None)
        entry["method"] = method.value
        entry["object_methods"] = methods_record(comparison, sources.names, written)
        return rebalance_json(entry)

    started = time.perf_counter()
    jobs = assign_pastes(sources.boxes, len(sources.images), chosen.pastes, seed, max_pastes, chosen.clean_pastes)
    result = write_rebalanced_dataset(
        sources, chosen.copies, out, seed=seed, link=link.value, flip=flip, force=force, workers=workers,
        extra_files={"rebalance.json": record}, pastes=jobs,
        paste_options=PasteOptions(blend=blend.value, flip=flip),
        paste_goals=paste_goals(chosen, counts.sum(axis=0), target), max_pastes=max_pastes,
    )
    seconds = time.perf_counter() - started
    console.print(summary_table(sources.names, plan, written=result.instances if method is Method.images else None))
    console.print(methods_table(sources.names, comparison, written=result.instances))
    for note in summary_notes(sources, plan, result):
        console.print(note, highlight=False)
    rate = result.added_images / seconds if seconds > 0 else 0.0
    console.print(f"wrote [bold]{escape(str(result.out_dir / 'data.yaml'))}[/]: {len(result.files)} train images "
                  f"({result.added_images} new, {rate:.0f}/s) in {seconds:.1f}s; details in rebalance.json, "
                  "manifest.csv.")


def _rebalance_classify(root: Path, target: int, out: Path | None, max_copies: int, seed: int, flip: bool,
                        dry_run: bool, force: bool, why: str) -> None:
    """A folder-per-class dataset: augmented copies of rare-class train images (rebalance/classify.py)."""
    from rich.table import Table
    from rich.text import Text

    from dataset_doctor.rebalance.classify import plan_classify, rebalance_classify

    console.print(why, highlight=False, markup=False)
    if dry_run:
        result = plan_classify(root, target, max_copies=max_copies)
    elif out is None:
        raise DoctorError("--out DIR is required (or use --dry-run to only print the plan)")
    else:
        result = rebalance_classify(root, out, target, seed=seed, flip=flip, max_copies=max_copies, force=force)
    where = "planned for" if dry_run else "in"
    table = Table(title=f"train images per class {where} {escape(str(result.out))}", title_justify="left",
                  header_style="bold")
    for column in ("class", "before", "after"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, before, after in zip(result.names, result.before, result.after):
        table.add_row(Text(name), str(before), str(after))
    console.print(table)
    if dry_run:
        console.print(f"dry run: {result.written} augmented images would be written; nothing written.",
                      highlight=False, markup=False)
        return
    console.print(f"{result.written} augmented images written; val and test copied unchanged; "
                  f"rebalance_manifest.csv lists every new image", highlight=False, markup=False)
