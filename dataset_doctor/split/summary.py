"""What a split did, as `split.json` and as a Rich table: per-class instances and images per split, the
deviation from the ratios, classes that could not be placed in every split, and what was kept as it was.

split.json:
{"source": str, "ratios": {split: float}, "seed": int, "link": str, "classes": [names],
 "splits": {split: {"images": int, "backgrounds": int, "instances": [per-class ints],   (as `audit --json`)
                    "class_images": [per class, images holding it]}},
 "deviation": {split: {"images": float, "instances": [float or null per class]}},   (share - ratio)
 "missing": [{"class": str, "instances": int, "images": int, "groups": int, "splits": [splits without it]}],
 "unused_classes": [names without a usable instance],
 "duplicate_groups": {"groups": int, "images": int, "across_source_splits": int},
 "corrupt_images": [str], "not_found": [listed images without a file: not placed],
 "label_errors": {"lines": int, "files": int},
 "renamed": [{"image": str, "output": str}], "link_fallbacks": int,
 "images": [{"image": str, "source_split": str, "split": str, "output": str}]}
Image paths are relative to the source root; outputs relative to the new dataset. A "group" is a set of
duplicate / near-duplicate images placed together: a class in fewer groups than there are splits cannot be
in every split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from dataset_doctor.findings import CHECKS, ERROR
from dataset_doctor.split.plan import SplitPlan
from dataset_doctor.split.write import WrittenFiles

WARN_DEVIATION = 0.05  # an absolute share deviation above this is highlighted in the table
_SHOWN = 5  # paths listed in the terminal per kind of note


def split_summary(plan: SplitPlan, written: WrittenFiles, source: str, link: str) -> dict[str, Any]:
    """The split.json content (see the module docstring)."""
    images, names = plan.images, list(plan.index.names)
    per_image = np.asarray(plan.counts.sum(axis=1)).ravel()
    totals = np.asarray(plan.counts.sum(axis=0), dtype=np.int64).ravel()
    nonzero = plan.counts.tocoo()
    holders = pd.DataFrame({"cls": nonzero.col, "group": images["group"].to_numpy()[nonzero.row]})
    images_with_class = np.bincount(nonzero.col, minlength=len(names))
    groups_with_class = holders.groupby("cls")["group"].nunique().reindex(range(len(names)), fill_value=0)
    splits, deviation = {}, {}
    for split, ratio in plan.ratios.items():
        mask = (images["split"] == split).to_numpy()
        instances = plan.instances(split)
        splits[split] = {"images": int(mask.sum()), "backgrounds": int((per_image[mask] == 0).sum()),
                         "instances": instances.tolist(),
                         "class_images": np.bincount(nonzero.col[mask[nonzero.row]], minlength=len(names)).tolist()}
        shares = [None if total == 0 else round(float(count / total - ratio), 4)
                  for count, total in zip(instances, totals)]
        deviation[split] = {"images": round(float(mask.mean() - ratio), 4) if len(images) else None,
                            "instances": shares}
    missing = [{"class": name, "instances": int(totals[cls]), "images": int(images_with_class[cls]),
                "groups": int(groups_with_class[cls]),
                "splits": [split for split in plan.ratios if splits[split]["instances"][cls] == 0]}
               for cls, name in enumerate(names) if totals[cls] > 0]
    not_found = set(written.not_found)  # vanished while writing
    group_sizes = images["group"].value_counts()
    shared = images[images["group"].isin(group_sizes[group_sizes > 1].index)]
    across = shared.groupby("group")["source_split"].nunique()
    return {
        "source": source, "ratios": dict(plan.ratios), "seed": plan.seed, "link": link, "classes": names,
        "splits": splits, "deviation": deviation,
        "missing": [entry for entry in missing if entry["splits"]],
        "unused_classes": [name for cls, name in enumerate(names) if totals[cls] == 0],
        "duplicate_groups": {"groups": int((group_sizes > 1).sum()), "images": len(shared),
                             "across_source_splits": int((across > 1).sum())},
        "corrupt_images": [image for image, readable in zip(images["image"], images["readable"])
                           if not readable and image not in not_found],
        "not_found": plan.not_found + written.not_found,
        "label_errors": _label_errors(plan),
        "renamed": [{"image": image, "output": output} for image, output in written.renamed],
        "link_fallbacks": written.link_fallbacks,
        "images": [{"image": image, "source_split": source_split, "split": split, "output": output}
                   for image, source_split, split, output in zip(images["image"], images["source_split"],
                                                                 images["split"], written.outputs)],
    }


def _label_errors(plan: SplitPlan) -> dict[str, int]:
    """Label lines with an error-level finding (unusable boxes), counted once per file and line."""
    index, kept = plan.index, set(plan.images["image_id"])
    problems = index.problems
    line_checks = [check for check, severity in CHECKS.items()
                   if severity == ERROR and check not in ("corrupt-image", "names-mismatch")]
    bad = problems[problems["check"].isin(line_checks) & problems["label"].notna()]
    records = set(zip(bad["label"], bad["line"].fillna(0).astype(int)))
    errors = index.box_errors().to_numpy() != ""
    boxes = index.boxes[errors & index.boxes["image_id"].isin(kept).to_numpy()]
    labels = index.images["label"].to_numpy()[boxes["image_id"].to_numpy()]
    records.update(zip(labels, boxes["line"].astype(int)))
    return {"lines": len(records), "files": len({label for label, _ in records})}


def render_summary(summary: dict[str, Any], out: str) -> RenderableType:
    """The per-class table and the notes a user should read, for the terminal."""
    return Group(_class_table(summary), *_notes(summary, out))


def _class_table(summary: dict[str, Any]) -> Table:
    """Per class: instances (share of the class) and images holding it, per split; then images, backgrounds."""
    ratios = summary["ratios"]
    table = Table(title="instances per split (share of the class), images holding them, and the largest "
                        "deviation from the ratios", title_justify="left")
    table.add_column("class", overflow="fold")
    table.add_column("total", justify="right", no_wrap=True)
    for split, ratio in ratios.items():
        table.add_column(f"{split} {ratio:.0%}", justify="right", no_wrap=True)
        table.add_column("img", justify="right", style="dim", no_wrap=True)
    table.add_column("max dev", justify="right", no_wrap=True)
    splits, deviation = summary["splits"], summary["deviation"]
    for cls, name in enumerate(summary["classes"]):
        counts = [splits[split]["instances"][cls] for split in ratios]
        cells = []
        for split, count in zip(ratios, counts):
            cells += [_cell(count, sum(counts), deviation[split]["instances"][cls]),
                      str(splits[split]["class_images"][cls])]
        table.add_row(escape(name), str(sum(counts)), *cells,
                      _max_deviation([deviation[split]["instances"][cls] for split in ratios]))
    table.add_section()
    image_counts = [splits[split]["images"] for split in ratios]
    cells = []
    for split, count in zip(ratios, image_counts):
        cells += [_cell(count, sum(image_counts), deviation[split]["images"]), ""]
    table.add_row("images", str(sum(image_counts)), *cells,
                  _max_deviation([deviation[split]["images"] for split in ratios]))
    backgrounds = [splits[split]["backgrounds"] for split in ratios]
    cells = []
    for count in backgrounds:
        cells += [_cell(count, sum(backgrounds), None), ""]
    table.add_row("backgrounds", str(sum(backgrounds)), *cells, "")
    return table


def _cell(count: int, total: int, shift: float | None) -> Text:
    """`count (share)`: red when none, yellow when further than WARN_DEVIATION from the ratio."""
    if total == 0:
        return Text("-", style="dim")
    text = Text(f"{count} ({count / total:.0%})")
    if count == 0:
        text.stylize("bold red")
    elif shift is not None and abs(shift) > WARN_DEVIATION:
        text.stylize("yellow")
    return text


def _max_deviation(shifts: list[float | None]) -> str:
    values = [abs(shift) for shift in shifts if shift is not None]
    return f"{max(values) * 100:.1f} pp" if values else "-"


def _notes(summary: dict[str, Any], out: str) -> list[Text]:
    notes: list[Text] = []

    def note(text: str, style: str = "") -> None:
        notes.append(Text.from_markup(text, style=style))

    for entry in summary["missing"]:
        why = "is too rare to appear in every split" if entry["groups"] < len(summary["ratios"]) else \
            "could not be placed in every split without taking another class out of one"
        note(f"[yellow]class '{escape(entry['class'])}' {why}[/]: {entry['instances']} instance(s) in "
             f"{entry['images']} image(s), none in {', '.join(entry['splits'])}")
    if summary["unused_classes"]:
        note(f"[yellow]no usable instance at all[/] of: {escape(', '.join(summary['unused_classes']))}")
    groups = summary["duplicate_groups"]
    if groups["groups"]:
        across = groups["across_source_splits"]
        note(f"{groups['groups']} group(s) of duplicate / near-duplicate images ({groups['images']} images) each "
             f"kept in one split" + (f"; {across} of them straddled the source's splits (a leak, now closed)"
                                     if across else ""))
    if summary["corrupt_images"]:
        note(f"[yellow]{len(summary['corrupt_images'])} corrupt image(s)[/] assigned and copied as they are: "
             + _listed(summary["corrupt_images"]))
    if summary["not_found"]:
        note(f"[yellow]{len(summary['not_found'])} listed image(s) do not exist[/] and were skipped: "
             + _listed(summary["not_found"]))
    errors = summary["label_errors"]
    if errors["lines"]:
        note(f"[yellow]{errors['lines']} label line(s) with errors in {errors['files']} file(s)[/] were copied as "
             "they are (splitting is not fixing): run [bold]doctor fix[/] on the new dataset to repair them")
    if summary["renamed"]:
        note(f"{len(summary['renamed'])} image(s) renamed where names clashed: "
             + _listed([f"{entry['image']} -> {entry['output']}" for entry in summary["renamed"]]))
    if summary["link_fallbacks"]:
        note(f"{summary['link_fallbacks']} image(s) copied instead of hardlinked (another filesystem, or no "
             "hardlink support there)")
    note(f"wrote [bold]{escape(out)}[/] (data.yaml, split.json)")
    return notes


def _listed(paths: list[str]) -> str:
    shown = ", ".join(escape(path) for path in paths[:_SHOWN])
    return shown + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")

