"""`split_dataset`: the whole `doctor split` as one Python call (the CLI only parses options and prints)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataset_doctor.atomic import staged_directory
from dataset_doctor.dataset.folder_dataset import load_dataset_source, with_inferred_names
from dataset_doctor.dataset.index import build_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.split.output import LINK_MODES, check_destination
from dataset_doctor.split.plan import SplitPlan, plan_split
from dataset_doctor.split.ratios import parse_ratios
from dataset_doctor.split.summary import split_summary
from dataset_doctor.split.write import write_data_yaml, write_split_files

SUMMARY_FILE = "split.json"


@dataclass
class SplitResult:
    out: Path  # the new dataset's root
    data_yaml: Path
    plan: SplitPlan
    summary: dict[str, Any]  # the content of split.json
    notes: list[str]  # about reading the source (where class names came from, layout surprises)


def split_dataset(source: str | Path, out: str | Path, ratios: str | list[float] = "0.8,0.2", seed: int = 0,
                  link: str = "copy", force: bool = False, progress: bool = False,
                  workers: int | None = None) -> SplitResult:
    """Pool a dataset's images, split them stratified and leak-free, and write the result as a new dataset.

    source: a data.yaml, a directory holding one, or a plain folder of images with YOLO labels.
    Raises DoctorError on bad input or an unsafe `out`; the source is only read.
    """
    ratio_map = parse_ratios(ratios)
    if link not in LINK_MODES:
        raise DoctorError(f"--link must be one of {', '.join(LINK_MODES)}, got {link!r}")
    config, notes = load_dataset_source(source)
    config.require_valid_names()
    # Before the scan, so it fails fast: the folders and files the source reads are known from the config.
    destination = check_destination(out, config, force)
    index, name_notes = with_inferred_names(build_index(config, workers=workers, progress=progress))
    plan = plan_split(index, ratio_map, seed)
    _require_every_split_filled(plan)

    source_name = str(config.yaml_path)
    with staged_directory(destination, "split") as staging:
        written = write_split_files(plan, staging, link, progress)
        write_data_yaml(plan, staging, source_name)
        summary = split_summary(plan, written, source_name, link)
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return SplitResult(destination, destination / "data.yaml", plan, summary, notes + name_notes)


def _require_every_split_filled(plan: SplitPlan) -> None:
    counts = plan.images["split"].value_counts()
    empty = [split for split in plan.split_names if counts.get(split, 0) == 0]
    if empty:
        groups = plan.images["group"].nunique()
        raise DoctorError(f"split {', '.join(empty)} would get no image: {len(plan.images)} image(s) in {groups} "
                          f"group(s) of (near-)duplicates cannot fill {len(plan.split_names)} splits at ratios "
                          f"{', '.join(f'{v:g}' for v in plan.ratios.values())}", plan.index.config.yaml_path)
