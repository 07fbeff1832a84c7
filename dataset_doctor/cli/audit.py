"""`doctor audit data.yaml`: every check, a summary to act on, JSON for pipelines, exit code 0 / 1 / 2."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dataset_doctor.audit.options import AuditOptions
from dataset_doctor.cli.app import app, console, error_console
from dataset_doctor.errors import DoctorError


class FailOn(str, Enum):
    error = "error"
    warning = "warning"


_DEFAULTS = AuditOptions()
_THRESHOLDS = "Thresholds"


@app.command(rich_help_panel="Check and fix data")
def audit(
    data_yaml: Annotated[Path, typer.Argument(help="The dataset's data.yaml (or the directory holding it).")],
    json_file: Annotated[Path | None, typer.Option(
        "--json", metavar="FILE", help="Also write the result as JSON (design.md section 3); '-' for stdout.")] = None,
    html_file: Annotated[Path | None, typer.Option(
        "--html", metavar="FILE", help="Write the HTML report here (default: doctor_reports/<dataset>-audit.html "
                                       "in the working directory, or under $DOCTOR_REPORTS_DIR).")] = None,
    no_html: Annotated[bool, typer.Option("--no-html", help="Write no HTML report.")] = False,
    ignore: Annotated[list[str] | None, typer.Option(
        metavar="CHECK", help="Leave a check out (repeatable, or comma-separated), e.g. --ignore few-instances.")
    ] = None,
    fail_on: Annotated[FailOn, typer.Option(
        help="Exit with code 1 on errors only, or on warnings too.")] = FailOn.error,
    imgsz: Annotated[int, typer.Option(
        help="Training image size (long side after letterboxing): tiny-box and box sizes use it.",
        rich_help_panel=_THRESHOLDS)] = _DEFAULTS.imgsz,
    tiny_px: Annotated[float, typer.Option(
        help="tiny-box: a side shorter than this many pixels at --imgsz.",
        rich_help_panel=_THRESHOLDS)] = _DEFAULTS.tiny_box_px,
    bounds_tolerance: Annotated[float, typer.Option(
        help="out-of-bounds: overhang allowed, as a fraction of the image side.",
        rich_help_panel=_THRESHOLDS)] = _DEFAULTS.out_of_bounds_tolerance,
    duplicate_iou: Annotated[float, typer.Option(
        help="duplicate-box: IoU at or above which two same-class boxes of a file are one object labelled twice.",
        rich_help_panel=_THRESHOLDS)] = _DEFAULTS.duplicate_box_iou,
    max_aspect: Annotated[float, typer.Option(
        help="extreme-aspect: width/height ratio (either way) above which a box is suspicious.",
        rich_help_panel=_THRESHOLDS)] = _DEFAULTS.max_aspect,
    imbalance_ratio: Annotated[float, typer.Option(
        help="class-imbalance: most / least frequent train class ratio above which to warn.",
        rich_help_panel=_THRESHOLDS)] = _DEFAULTS.imbalance_ratio,
    min_instances: Annotated[int, typer.Option(
        help="few-instances: train instances a class needs.",
        rich_help_panel=_THRESHOLDS)] = _DEFAULTS.min_instances,
    near_duplicate_bits: Annotated[int, typer.Option(
        help="duplicate-image / split-leak: perceptual-hash bits (of 256) two near-identical images may differ in.",
        rich_help_panel=_THRESHOLDS)] = _DEFAULTS.near_duplicate_bits,
    shift_min_instances: Annotated[int, typer.Option(
        help="scale-shift: boxes a class needs in train and in val to be tested.",
        rich_help_panel=_THRESHOLDS)] = _DEFAULTS.shift_min_instances,
    shift_alpha: Annotated[float, typer.Option(
        help="scale-shift: significance level over all classes tested (Bonferroni).",
        rich_help_panel=_THRESHOLDS)] = _DEFAULTS.shift_alpha,
    shift_min_effect: Annotated[float, typer.Option(
        help="scale-shift: smallest Kolmogorov-Smirnov statistic (0-1) worth a warning.",
        rich_help_panel=_THRESHOLDS)] = _DEFAULTS.shift_min_effect,
    examples: Annotated[int, typer.Option(min=0, help="Findings shown per check in the summary.")] = 3,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes scanning files (default: all cores).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Read every file again, ignoring the cache.")] = False,
) -> None:
    """Check a YOLO dataset for everything that hurts training, without changing it, and write an HTML report.

    Exit code 0 when no finding reaches --fail-on, 1 when one does, 2 for bad usage or an unreadable dataset.
    """
    if html_file is not None and no_html:
        raise DoctorError("--html FILE and --no-html contradict each other: give one")
    options = AuditOptions(
        imgsz=imgsz, tiny_box_px=tiny_px, out_of_bounds_tolerance=bounds_tolerance, duplicate_box_iou=duplicate_iou,
        max_aspect=max_aspect, imbalance_ratio=imbalance_ratio, min_instances=min_instances,
        near_duplicate_bits=near_duplicate_bits, shift_min_instances=shift_min_instances, shift_alpha=shift_alpha,
        shift_min_effect=shift_min_effect, ignore=_split_ids(ignore), fail_on=fail_on.value)
    from dataset_doctor.audit.result import write_json  # pandas / OpenCV load only when a command runs
    from dataset_doctor.audit.runner import run_audit
    from dataset_doctor.audit.terminal import render_audit
    from dataset_doctor.dataset.index import build_index
    from reports.audit_report import check_report_path, default_audit_report_path, write_audit_report

    if html_file is not None:
        check_report_path(html_file)  # fail before the scan, not after it
    to_stdout = json_file is not None and str(json_file) == "-"
    out = error_console if to_stdout else console
    index = build_index(data_yaml, workers=workers, use_cache=not no_cache, progress=out.is_terminal)
    result = run_audit(index, options)
    for part in render_audit(result, examples):
        out.print(part)
    if to_stdout:
        sys.stdout.write(json.dumps(result.to_json_dict(), indent=2, ensure_ascii=False) + "\n")
    elif json_file is not None:
        write_json(result.to_json_dict(), json_file)
        out.print(f"JSON written to {json_file}", highlight=False, markup=False)
    if not no_html:
        target = html_file if html_file is not None else default_audit_report_path(data_yaml)
        written = write_audit_report(result, index, target, create_dirs=html_file is None)
        out.print(f"HTML report written to {written}", highlight=False, markup=False)
    raise typer.Exit(result.exit_code())


def _split_ids(values: list[str] | None) -> frozenset[str]:
    return frozenset(part.strip() for value in values or [] for part in value.split(",") if part.strip())
