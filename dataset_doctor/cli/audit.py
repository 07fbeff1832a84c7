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


class Task(str, Enum):
    classify = "classify"
    detect = "detect"


CLASSIFY_IMGSZ = 224  # YOLOv5-cls's training size


class FailOn(str, Enum):
    error = "error"
    warning = "warning"


_DEFAULTS = AuditOptions()
_THRESHOLDS = "Thresholds"
_LABEL_ERRORS = "Label errors (--predictions or --model)"
DEFAULT_PREDICT_CONF = 0.001  # --model: predictions this low let spurious-box tell "barely seen" from "not there"
REVIEW_CSV = "label_review.csv"


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
    task: Annotated[Task | None, typer.Option(
        help="classify (folder-per-class: ROOT/train/<class>/*.jpg) or detect (YOLO labels); default: detected "
             "from the layout.")] = None,
    imgsz: Annotated[int | None, typer.Option(
        help=f"Training image size (long side after letterboxing): tiny-box and box sizes use it; with --model "
             f"also the prediction size [default: {_DEFAULTS.imgsz}, {CLASSIFY_IMGSZ} for classification, the "
             f"checkpoint's training size with --model].", show_default=False,
        rich_help_panel=_THRESHOLDS)] = None,
    tiny_image_px: Annotated[int, typer.Option(
        help="tiny-image (classification): an image whose short side is under this many pixels.",
        rich_help_panel=_THRESHOLDS)] = _DEFAULTS.tiny_image_px,
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
    max_pixels: Annotated[int, typer.Option(
        help="huge-image: width x height above which an image is reported (and never decoded in full).",
        rich_help_panel=_THRESHOLDS)] = _DEFAULTS.max_pixels,
    predictions: Annotated[Path | None, typer.Option(
        metavar="DIR", help="A detector's predictions, one YOLO txt per image (class cx cy w h confidence), flat "
                            "(matched by image stem) or in DIR/<split>/: adds the checks missing-box, wrong-class, "
                            "mislocated-box and spurious-box. Predict at a low confidence (0.001-0.05), or what the "
                            "model barely sees is taken for nothing.", rich_help_panel=_LABEL_ERRORS)] = None,
    model: Annotated[Path | None, typer.Option(
        "--model", metavar="WEIGHTS",
        help="Instead of --predictions: one of our checkpoints (best.pt, or a doctor export .onnx) predicts every "
             "split first, as doctor predict does. A model predicting its own train images has learnt their "
             "errors: the audit says so; doctor crossval gives out-of-sample predictions.",
        rich_help_panel=_LABEL_ERRORS)] = None,
    predictions_out: Annotated[Path | None, typer.Option(
        "--predictions-out", metavar="DIR",
        help="--model: keep its predictions in this new directory (DIR/<split>/, for --predictions later); "
             "default: a temporary folder.", rich_help_panel=_LABEL_ERRORS)] = None,
    conf: Annotated[float | None, typer.Option(
        help=f"--model: the prediction confidence threshold (not --confidence, the audit's) [default: "
             f"{DEFAULT_PREDICT_CONF}].", show_default=False, rich_help_panel=_LABEL_ERRORS)] = None,
    device: Annotated[str | None, typer.Option(
        help="--model: cpu, cuda or a GPU id [default: cuda if available].", show_default=False,
        rich_help_panel=_LABEL_ERRORS)] = None,
    review_csv: Annotated[Path | None, typer.Option(
        metavar="FILE", help=f"Where to write the suspects to review (default: {REVIEW_CSV} beside the --json file, "
                             f"else beside the HTML report); mark rows accept=yes, then doctor fix "
                             f"--apply-suggestions FILE.", rich_help_panel=_LABEL_ERRORS)] = None,
    confidence: Annotated[float | None, typer.Option(
        help="One confidence threshold for every class (default: per class, learnt from the predictions that "
             "match a label).", rich_help_panel=_LABEL_ERRORS)] = None,
    class_confidence: Annotated[list[str] | None, typer.Option(
        metavar="CLASS=CONF", help="The threshold of one class, by name or id (repeatable), e.g. dog=0.2.",
        rich_help_panel=_LABEL_ERRORS)] = None,
    examples: Annotated[int, typer.Option(min=0, help="Findings shown per check in the summary.")] = 3,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes scanning files (default: all cores).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Read every file again and run every check, "
                                                              "ignoring the caches.")] = False,
) -> None:
    """Check a YOLO dataset for everything that hurts training, without changing it, and write an HTML report.

    Exit code 0 when no finding reaches --fail-on, 1 when one does, 2 for bad usage or an unreadable dataset.
    """
    if html_file is not None and no_html:
        raise DoctorError("--html FILE and --no-html contradict each other: give one")
    if predictions is not None and model is not None:
        raise DoctorError("give either --predictions DIR or --model WEIGHTS, not both")
    if model is None and (predictions_out is not None or conf is not None or device is not None):
        raise DoctorError("--predictions-out, --conf and --device need --model WEIGHTS")
    if predictions is None and model is None and (review_csv is not None or confidence is not None
                                                  or class_confidence):
        raise DoctorError("--review-csv, --confidence and --class-confidence need --predictions DIR or --model "
                          "WEIGHTS")
    from dataset_doctor.dataset.classify_index import TASK_CLASSIFY, detect_task

    detected, why = detect_task(data_yaml, task.value if task is not None else None)
    model_names = None
    if model is not None and detected != TASK_CLASSIFY:
        from dataset_doctor.cli.audit_model import check_model

        model_names, trained_size = check_model(model)
        imgsz = imgsz if imgsz is not None else trained_size
    if imgsz is None:
        imgsz = CLASSIFY_IMGSZ if detected == TASK_CLASSIFY else _DEFAULTS.imgsz
    options = AuditOptions(
        imgsz=imgsz, tiny_image_px=tiny_image_px, tiny_box_px=tiny_px, out_of_bounds_tolerance=bounds_tolerance,
        duplicate_box_iou=duplicate_iou,
        max_aspect=max_aspect, imbalance_ratio=imbalance_ratio, min_instances=min_instances,
        near_duplicate_bits=near_duplicate_bits, shift_min_instances=shift_min_instances, shift_alpha=shift_alpha,
        shift_min_effect=shift_min_effect, max_pixels=max_pixels, ignore=_split_ids(ignore), fail_on=fail_on.value)
    from dataset_doctor.audit.result import write_json  # pandas / OpenCV load only when a command runs
    from dataset_doctor.audit.result_cache import audit_with_cache
    from dataset_doctor.audit.terminal import render_audit
    from dataset_doctor.dataset.index import build_index
    from dataset_doctor.findings import display_name
    from reports.audit_report import check_report_path, default_audit_report_path, write_audit_report

    if html_file is not None:
        check_report_path(html_file)  # fail before the scan, not after it
    to_stdout = json_file is not None and str(json_file) == "-"
    out = error_console if to_stdout else console
    if detected == TASK_CLASSIFY:
        if predictions is not None or model is not None:
            raise DoctorError("--predictions and --model (the model-assisted label audit) work on detection "
                              "datasets only")
        _audit_classify(data_yaml, options, why, out, json_file, html_file, no_html, examples, workers)
    index = build_index(data_yaml, workers=workers, use_cache=not no_cache, progress=out.is_terminal)
    read = None
    if predictions is not None or model is not None:
        from dataset_doctor.audit.checks_predictions import read_audit_predictions
        from dataset_doctor.audit.label_errors import LabelErrorOptions

        overrides = _class_confidences(class_confidence, index.names)
        label_options = LabelErrorOptions(confidence=confidence, class_confidence=overrides)
        if model is not None:
            from dataset_doctor.cli.audit_model import check_classes

            check_classes(model, model_names, index)
            read = _predict_and_read(model, index, predictions_out, imgsz=imgsz,
                                     conf=conf if conf is not None else DEFAULT_PREDICT_CONF, device=device or "",
                                     options=label_options, out=out)
        else:
            read = read_audit_predictions(index, predictions, label_options)
        for warning in read.warnings():
            error_console.print(f"warning: {warning}", style="yellow", highlight=False, markup=False)
    from dataset_doctor.audit.rebalanced import read_rebalance_origin

    origin = read_rebalance_origin(index.config.yaml_path, index.names)
    if read is not None:  # the predictions' files are not in the index: never from the cache
        from dataset_doctor.audit.runner import run_audit

        result = run_audit(index, options, predictions=read, origin=origin)
    else:
        result = audit_with_cache(index, options, origin=origin, use_cache=not no_cache)
    in_sample_warning = None
    if read is not None:
        result.label_audit, in_sample_warning = _label_audit_record(read, model, predictions_out, index, data_yaml,
                                                                    imgsz, conf)
    for part in render_audit(result, examples):
        out.print(part)
    if read is not None:
        from dataset_doctor.audit.checks_predictions import write_review_csv

        audited = ", ".join(read.splits) or "none"
        out.print(f"label errors: {read.files_read} prediction files read; splits audited: {audited}",
                  highlight=False, markup=False)
        if in_sample_warning is not None:
            out.print(f"warning: {in_sample_warning}", style="yellow", highlight=False, markup=False)
        target = review_csv if review_csv is not None else _default_review_csv(json_file, html_file, data_yaml)
        written = write_review_csv(result.label_suspects, target, options.ignore)
        out.print(f"review CSV written to {written} (mark accept=yes, then doctor fix {data_yaml} --out DIR "
                  f"--apply-suggestions {written})", highlight=False, markup=False)
    if to_stdout:
        # display_name: a name that is not UTF-8 as \\u escapes, which in a JSON string read back as that name
        sys.stdout.write(display_name(json.dumps(result.to_json_dict(), indent=2, ensure_ascii=False)) + "\n")
    elif json_file is not None:
        write_json(result.to_json_dict(), json_file)
        out.print(f"JSON written to {json_file}", highlight=False, markup=False)
    if not no_html:
        target = html_file if html_file is not None else default_audit_report_path(data_yaml)
        written = write_audit_report(result, index, target, create_dirs=html_file is None)
        out.print(f"HTML report written to {written}", highlight=False, markup=False)
    raise typer.Exit(result.exit_code())


def _predict_and_read(model: Path, index, predictions_out: Path | None, *, imgsz: int, conf: float, device: str,
                      options, out):
    """--model: predict every split (into --predictions-out, else a temporary folder), then read it back exactly
    as --predictions reads a folder, so both give the same findings."""
    import tempfile

    from dataset_doctor.audit.checks_predictions import read_audit_predictions
    from dataset_doctor.cli.audit_model import check_predictions_out, predict_for_audit

    def warn(message: str) -> None:
        error_console.print(f"warning: {message}", style="yellow", highlight=False, markup=False)

    target = check_predictions_out(predictions_out, index) if predictions_out is not None else None
    with tempfile.TemporaryDirectory(prefix="doctor-audit-") as scratch:
        folder = target if target is not None else Path(scratch) / "predictions"
        out.print(f"predicting every split with {model} (imgsz {imgsz}, conf {conf:g})", highlight=False,
                  markup=False)
        predict_for_audit(model, index, folder, imgsz=imgsz, conf=conf, device=device, warn=warn)
        read = read_audit_predictions(index, folder, options)
    if target is not None:
        out.print(f"predictions written to {target}", highlight=False, markup=False)
    return read


def _label_audit_record(read, model: Path | None, predictions_out: Path | None, index, data_yaml: Path,
                        imgsz: int, conf: float | None) -> tuple[dict, str | None]:
    """The JSON's label_audit (where the predictions came from, which splits are in-sample) and the in-sample
    warning for the summary (None when no audited image was trained on, or the model does not say)."""
    record: dict = {"splits": list(read.splits), "files_read": read.files_read,
                    "min_confidence": read.min_confidence}
    if model is None:
        return {"predictions": read.directory, **record}, None
    from dataset_doctor.cli.audit_model import in_sample, in_sample_message

    counts = in_sample(model, index, list(read.splits))
    message = in_sample_message(counts, data_yaml)
    return {"predictions": str(predictions_out) if predictions_out is not None else None, "model": str(model),
            "imgsz": imgsz, "conf": conf if conf is not None else DEFAULT_PREDICT_CONF, **record,
            "in_sample": counts, "in_sample_warning": message}, message


def _audit_classify(root: Path, options: AuditOptions, why: str, out, json_file: Path | None,
                    html_file: Path | None, no_html: bool, examples: int, workers: int | None) -> None:
    """The classification audit: the same summary, JSON, report and exit codes as detection."""
    from dataset_doctor.audit.classify import run_classify_audit
    from dataset_doctor.audit.result import write_json
    from dataset_doctor.audit.terminal import render_audit
    from dataset_doctor.dataset.classify_index import build_classify_index
    from dataset_doctor.findings import display_name
    from reports.audit_report import default_audit_report_path, write_audit_report

    out.print(why, highlight=False, markup=False)
    index = build_classify_index(root, workers=workers)
    for note in index.notes:
        out.print(f"note: {note}", highlight=False, markup=False)
    result = run_classify_audit(index, options)
    for part in render_audit(result, examples):
        out.print(part)
    if json_file is not None and str(json_file) == "-":
        sys.stdout.write(display_name(json.dumps(result.to_json_dict(), indent=2, ensure_ascii=False)) + "\n")
    elif json_file is not None:
        write_json(result.to_json_dict(), json_file)
        out.print(f"JSON written to {json_file}", highlight=False, markup=False)
    if not no_html:
        target = html_file if html_file is not None else default_audit_report_path(index.root)
        written = write_audit_report(result, index, target, create_dirs=html_file is None)
        out.print(f"HTML report written to {written}", highlight=False, markup=False)
    raise typer.Exit(result.exit_code())


def _class_confidences(values: list[str] | None, names: tuple[str, ...]) -> dict[int, float]:
    """--class-confidence dog=0.2 or 3=0.2 -> {class id: threshold}."""
    thresholds: dict[int, float] = {}
    for value in values or []:
        key, sep, number = value.rpartition("=")
        ids = {name: position for position, name in enumerate(names)}
        cls = ids.get(key.strip(), int(key) if key.strip().isdigit() else None)
        try:
            threshold = float(number)
        except ValueError:
            threshold = None
        if not sep or cls is None or not 0 <= cls < len(names) or threshold is None:
            raise DoctorError(f"--class-confidence {value!r}: expected CLASS=CONF with a class name or id of this "
                              "dataset and a number, e.g. --class-confidence dog=0.2")
        thresholds[cls] = threshold
    return thresholds


def _default_review_csv(json_file: Path | None, html_file: Path | None, data_yaml: Path) -> Path:
    """label_review.csv beside the JSON when one is written to a file, else beside the HTML report."""
    if json_file is not None and str(json_file) != "-":
        return Path(json_file).expanduser().parent / REVIEW_CSV
    from reports.audit_report import default_audit_report_path

    report = Path(html_file) if html_file is not None else default_audit_report_path(data_yaml)
    report.parent.mkdir(parents=True, exist_ok=True)
    return report.with_name(report.name.removesuffix("-audit.html").removesuffix(".html") + f"-{REVIEW_CSV}")


def _split_ids(values: list[str] | None) -> frozenset[str]:
    return frozenset(part.strip() for value in values or [] for part in value.split(",") if part.strip())
