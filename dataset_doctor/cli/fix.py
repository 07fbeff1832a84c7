"""`doctor fix data.yaml --out DIR`: a repaired copy with a CSV log of every change; the source stays untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dataset_doctor.cli.app import app, console

_CLIP_MAX = 0.05  # = fix.FixOptions.clip_max (fix.py loads pandas; `doctor --help` must not)
_BOUNDS_TOLERANCE = 0.01  # = box_rules.OUT_OF_BOUNDS_TOLERANCE


@app.command(rich_help_panel="Check and fix data")
def fix(
    data_yaml: Annotated[Path, typer.Argument(help="The dataset's data.yaml (or the directory holding it).")],
    out: Annotated[Path, typer.Option(help="Where to write the repaired copy (must not exist, or be empty).")],
    clip_max: Annotated[float, typer.Option(
        help="Clip boxes overhanging the image by less than this fraction of its side; drop those overhanging more."
    )] = _CLIP_MAX,
    bounds_tolerance: Annotated[float, typer.Option(
        help="Overhang that is not an error (as in doctor audit).")] = _BOUNDS_TOLERANCE,
    apply_suggestions: Annotated[Path | None, typer.Option(
        metavar="REVIEWED.csv", help="Also apply the rows marked accept=yes in the label_review.csv of doctor audit "
                                     "--predictions: add missing boxes, change wrong classes, move mislocated boxes, "
                                     "drop spurious ones.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes scanning files (default: all cores).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Read every file again, ignoring the cache.")] = False,
) -> None:
    """Write a repaired copy, every change logged to fix_log.csv; the dataset itself is not touched.

    Bad lines are dropped (not whole images), overhanging boxes clipped, polygons converted, exact duplicate
    lines removed, corrupt images left out; with --apply-suggestions, the label fixes a person accepted."""
    from dataset_doctor.dataset.index import build_index
    from dataset_doctor.fix import FixOptions, fix_dataset  # pandas / OpenCV load only when a command runs

    options = FixOptions(clip_max=clip_max, out_of_bounds_tolerance=bounds_tolerance)
    index = build_index(data_yaml, workers=workers, use_cache=not no_cache, progress=console.is_terminal)
    suggestions = None
    if apply_suggestions is not None:
        from dataset_doctor.fix_suggestions import read_suggestions

        suggestions = read_suggestions(apply_suggestions, index)  # every row checked before anything is written
        console.print(f"{len(suggestions)} accepted suggestions in {apply_suggestions}", highlight=False,
                      markup=False)
    result = fix_dataset(index, out, options, suggestions)

    console.print(f"wrote {result.data_yaml} ({result.images} images, {result.label_files} label files, "
                  f"{result.changed_label_files} of them changed)", highlight=False, markup=False)
    counts = result.action_counts()
    if counts:
        table = Table("change", "count", title="changes", title_justify="left", header_style="bold")
        for action, count in counts.items():
            table.add_row(action, str(count))
        console.print(table)
    else:
        console.print("nothing needed fixing: the copy equals the source")
    console.print(f"every change with file, line, before and after: {result.log_file}", highlight=False,
                  markup=False)
    console.print(f"next: doctor audit {result.data_yaml}", highlight=False, markup=False)
