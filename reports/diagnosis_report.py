"""`doctor diagnose`: the training report's train-vs-val diagnosis for any detector, from its saved predictions.

    from reports.diagnosis_report import diagnose_predictions
    outcome = diagnose_predictions("data.yaml", "preds/train", "preds/val", results="results.csv")
    outcome.page.write(outcome.target); outcome.document   # the --json document

The predictions are YOLO txt with confidence (`doctor evaluate`'s format: Ultralytics `save_txt=True,
save_conf=True`), made at a low confidence. Train predictions may cover any subset of the train split: the
images with a prediction file are the ones evaluated. Both splits are evaluated by trainer/evaluation (the same
COCO-protocol code as `doctor val` and our trainer), and the page is built by reports/training_report.py's one
builder: this module only turns predictions into a `ReportSource`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataset_doctor.dataset.index import DatasetIndex, build_index
from dataset_doctor.errors import DoctorError
from reports.audit_link import default_audit_candidates, find_audit_report, reports_dir
from reports.audit_report import default_audit_report_path
from reports.html import Page
from reports.results_curves import read_results_curves
from reports.training_report import ReportSource, build_report_page, diagnosis_json, resolve_audit
from reports.training_run import Confusion
from trainer.diagnosis import ClassNumbers, Diagnosis, RunFacts
from trainer.evaluation.dataset import PredictionEvaluation, evaluate_prediction_dir


@dataclass
class DiagnosisOutcome:
    page: Page
    target: Path  # where the page goes (--out, else doctor_reports/<dataset>-diagnosis.html)
    document: dict[str, Any]  # the --json document
    classes: list[ClassNumbers]
    diagnosis: Diagnosis
    warnings: list[str]


def default_diagnosis_path(data_yaml: str | Path, name: str | None = None) -> Path:
    """`doctor_reports/<dataset>[-<name>]-diagnosis.html`, beside the dataset's audit report."""
    audit = default_audit_report_path(data_yaml)
    stem = audit.name.removesuffix("-audit.html")
    return reports_dir() / f"{stem}{'-' + _safe(name) if name else ''}-diagnosis.html"


def diagnose_predictions(data_yaml: str | Path, train_predictions: str | Path, val_predictions: str | Path, *,
                         results: str | Path | None = None, target: str | Path | None = None,
                         name: str | None = None, audit_report: str | Path | None = None,
                         search_dirs: Sequence[Path] | None = None, predictions_by: str | None = None,
                         index: DatasetIndex | None = None,
                         save_predictions_command: str | None = None) -> DiagnosisOutcome:
    """Evaluate both prediction directories and build the page and the JSON document (nothing written)."""
    index = index if index is not None else build_index(data_yaml, progress=False)
    for split in ("train", "val"):
        if split not in index.splits:
            raise DoctorError(f"the dataset has no '{split}' split: doctor diagnose compares train with val",
                              index.config.yaml_path)
    if audit_report is not None and not Path(audit_report).is_file():
        raise DoctorError("audit report not found", audit_report)
    train = _evaluate(index, "train", Path(train_predictions), "--train-predictions")
    val = _evaluate(index, "val", Path(val_predictions), "--val-predictions")
    if not val.result.measurable.any():
        raise DoctorError("the val split has no usable box: there is nothing to measure AP on", index.config.yaml_path)
    warnings = []
    for flag, outcome in (("--train-predictions", train), ("--val-predictions", val)):
        if outcome.unmatched_files:
            warnings.append(f"{flag}: {len(outcome.unmatched_files)} prediction file(s) named after no "
                            f"{outcome.ground_truth.split} image were ignored, e.g. '{outcome.unmatched_files[0]}'")
    curves, curve_rows = None, []
    if results is not None:
        curves = read_results_curves(results)
        curve_rows = curves.rows
        if curves.note:
            warnings.append(curves.note)

    dataset = index.config.yaml_path
    target = Path(target).expanduser() if target is not None else default_diagnosis_path(dataset, name)
    audit = Path(audit_report) if audit_report is not None else find_audit_report(
        default_audit_candidates([dataset], search_dirs if search_dirs is not None else [Path.cwd()]))
    audit, notes = resolve_audit(audit, index.names)
    train_total = int(index.images_in("train")["readable"].sum())
    label = name or dataset.parent.name
    by = predictions_by or name or "the model"
    temporary = save_predictions_command is not None  # the folders are gone once the page is built: not named
    train_from = f"predicted by {by}" if temporary else str(train_predictions)
    val_from = f"predicted by {by}" if temporary else str(val_predictions)
    result = val.result
    source = ReportSource(
        title=f"Diagnosis: {label}",
        subtitle=f"{dataset} - {index.nc} classes - train {train.result.images:,} of {train_total:,} images, "
                 f"val {result.images:,} images",
        target=target, dataset=dataset, classes=list(index.names),
        train_rows={row["class_id"]: row for row in train.result.per_class_rows()},
        val_rows={row["class_id"]: row for row in result.per_class_rows()},
        facts=_facts(index, dataset, train.result.images, audit, curve_rows), index=index, index_problem=None,
        results=curve_rows,
        confusion=Confusion(list(result.confusion_labels), result.confusion.astype(int).tolist()),
        pr_curves=result.pr_curves_json(), val_predictions=Path(val_predictions), audit=audit, audit_notes=notes,
        predictions_by=by, notes=warnings, save_predictions_command=save_predictions_command,
        key_numbers=[("train images evaluated", f"{train.result.images:,} of {train_total:,}")],
        overview_rows=[("train predictions", f"{train_from} ({train.files_read:,} files; the "
                                             f"{train.result.images:,} train images with a file are evaluated)"),
                       ("val predictions", f"{val_from} ({val.files_read:,} files for {result.images:,} "
                                           "val images)")]
        + ([("results", f"{results} ({curves.layout or 'layout not recognised'})")] if curves is not None else []))
    page, classes, diagnosis = build_report_page(source)
    return DiagnosisOutcome(page=page, target=target, document=diagnosis_json(source, classes, diagnosis),
                            classes=classes, diagnosis=diagnosis, warnings=warnings)


def _evaluate(index: DatasetIndex, split: str, directory: Path, flag: str) -> PredictionEvaluation:
    """One split's predictions evaluated; a directory with no prediction file of this split is an error."""
    if not directory.is_dir():
        raise DoctorError(f"{flag}: predictions directory not found", directory)
    outcome = evaluate_prediction_dir(index, split, directory, only_predicted=split == "train")
    if outcome.files_read == 0:
        raise DoctorError(f"{flag}: no prediction file here is named after a {split} image (expected "
                          f"<image stem>.txt, lines 'class cx cy w h confidence')", directory)
    return outcome


def _facts(index: DatasetIndex, dataset: Path, train_images: int, audit: Path | None,
           rows: list[dict[str, Any]]) -> RunFacts:
    """What is known of another trainer's run: the dataset, the images evaluated, the logged val curve."""
    epochs = max((int(row["epoch"]) for row in rows), default=0)
    curve = tuple((int(row["epoch"]), float(row["train_map50_95"]), float(row["val_map50_95"])) for row in rows
                  if row.get("train_map50_95") is not None and row.get("val_map50_95") is not None)
    return RunFacts(dataset=str(dataset), num_classes=index.nc, epochs_done=epochs, epochs_planned=epochs,
                    iterations_per_epoch=0, train_images=train_images, model_scale="?",
                    audit_report=str(audit) if audit else None, curve=curve, own_trainer=False)


def _safe(name: str) -> str:
    """A name usable in a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "model"
