"""The training report: run_dir/report.html, one self-contained page that says in a minute whether the model is
good, which classes fail, and whether the data or the training is to blame.

One page builder for every source of predictions (`build_report_page(ReportSource)`): a run directory of
`doctor train` is one source (`run_source`), any detector's saved train and val predictions another
(reports/diagnosis_report.py, `doctor diagnose`). Sections that need a run directory (overview of the settings,
training batches) appear only for a run.

    from reports.training_report import build_training_report
    build_training_report(run_dir)                      # any time: `doctor report RUN_DIR`
    write_training_report(run_dir, console)             # after a run: what `doctor train` and `doctor demo` call

The trainer does not build this page (it never imports reports/): whoever starts a run writes its report when
`trainer.launch.launch_training` (or `trainer.loop.train`) returns, as the CLI does.

Reads the run directory (reports/training_run.py), the dataset through its index (for the val images, box sizes
and counts; the report is still written, with a note, if the dataset has moved), the audit report of the same
dataset when one is found (reports/audit_link.py), and applies the diagnosis rules (trainer/diagnosis.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from rich.console import Console

from dataset_doctor.dataset.images import read_image_file
from dataset_doctor.dataset.index import DatasetIndex, build_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.rebalance import SUGGESTED_COPY_PASTE
from reports.audit_gallery import ImageLookup
from reports.audit_link import (
    audit_json_for,
    default_audit_candidates,
    find_audit_report,
    relative_link,
    scale_shift_notes,
)
from reports.html import Page, escape, image_data_uri, thumbnail_figure
from reports.label_errors_section import label_errors_html, suspect_counts, suspects_link
from reports.thumbnails import encode_jpeg
from reports.training_figures import (
    MANY_CLASSES,
    confusion_figure,
    loss_figure,
    map_figure,
    most_confused_pairs,
    per_class_ap_figure,
    pr_figure,
)
from reports.training_run import Confusion, TrainingRun, load_training_run
from reports.val_examples import CONFIDENCE_THRESHOLD, IOU_THRESHOLD, draw_image_errors, score_val_images
from trainer import run_dir as files
from trainer.diagnosis import (
    STATUS_LABELS,
    ClassNumbers,
    Diagnosis,
    RunFacts,
    RunFinding,
    diagnose_run,
    diagnosis_id,
)

WORST_IMAGES = 12  # val images shown, worst first
BATCH_MAX_SIDE = 1280  # training batch grids are re-encoded at most this wide/high (the page stays small)
MIN_BOXES_FOR_SIZE = 5  # boxes a class needs in train and in val before their median sizes are compared
CONFUSED_SHARE = 0.2  # a class "is predicted as" another when at least this share of its val boxes are
CONFUSED_MIN_BOXES = 2  # ... and at least this many (one box is an accident)
SUSPECTS_SHOWN = 30  # label-error suspects shown with a picture, best score first (the rest as table rows)
SUSPECTS_ANCHOR = "label-suspects"  # their section; #label-suspects?class=ID opens it filtered to a class

_EXTRA_STYLE = """<style>
.finding { border-left: 4px solid var(--line); padding: 4px 12px; margin: 10px 0; }
.finding.error { border-color: var(--error); } .finding.warning { border-color: var(--warning); }
.finding.info { border-color: var(--info); } .finding.good { border-color: var(--good); }
.finding p { margin: 2px 0; }
.level { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
         margin-right: 6px; }
.level.error { background: #fde8e8; color: var(--error); } .level.warning { background: #fefcbf; color: #744210; }
.level.info { background: #ebf8ff; color: var(--info); } .level.good { background: #e6fffa; color: var(--good); }
.numbers span { display: inline-block; margin: 0 18px 6px 0; } .numbers b { font-size: 18px; }
.batches figure { margin: 0 0 12px; }
.batches img { max-width: 100%; border: 1px solid var(--line); border-radius: 4px; }
.gallery.worst figure { width: 360px; }
table.settings th { position: static; width: 190px; cursor: default; vertical-align: top; }
.class-block { margin: 14px 0 18px; } .class-block h3 { margin-bottom: 4px; }
</style>"""


@dataclass
class ReportSource:
    """Everything the page is built from, whoever made the predictions (a run directory, or any detector's
    saved predictions for `doctor diagnose`)."""

    title: str
    subtitle: str
    target: Path  # where the page is written (links are relative to it)
    dataset: Path | None  # the data.yaml
    classes: list[str]
    train_rows: dict[int, dict[str, Any]]  # per-class metrics on the train images evaluated, by class id
    val_rows: dict[int, dict[str, Any]]  # (EvaluationResult.per_class_rows' keys: images, instances, ap50, ...)
    facts: RunFacts
    index: DatasetIndex | None
    index_problem: str | None  # why index is None
    results: list[dict[str, Any]] = field(default_factory=list)  # curve rows in results.csv's columns (ours)
    confusion: Confusion | None = None  # val
    pr_curves: dict[str, Any] | None = None  # val, pr_curves.json's shape
    val_predictions: Path | None = None  # YOLO txt with confidence, for the worst images and the label suspects
    # a command that saves the val predictions for good, when val_predictions is a temporary folder
    # (`doctor diagnose --model`): the review command then points there
    save_predictions_command: str | None = None
    audit: Path | None = None  # the dataset's audit report (HTML when there is one)
    audit_notes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    train_instances: list[int] | None = None  # boxes per class in the whole train split (default: the index's)
    class_weights: list[float] | None = None  # in the loss (default: 1 each)
    run: TrainingRun | None = None  # only for a run directory: its settings and batches
    predictions_by: str = "weights/best.pt"  # who made the predictions, in captions
    notes: list[str] = field(default_factory=list)  # said under the verdict (skipped curves, ignored files)
    key_numbers: list[tuple[str, str]] = field(default_factory=list)  # extra numbers beside the mAPs
    overview_rows: list[tuple[str, str]] = field(default_factory=list)  # predictions only: what was read

    def best_epoch(self) -> int | None:
        rows = [row for row in self.results if _value(row.get("val_map50_95")) is not None]
        return int(max(rows, key=lambda row: row["val_map50_95"])["epoch"]) if rows else None


def write_training_report(run_dir: str | Path, console: Console | None = None) -> Path | None:
    """The report of a run that has just finished, with the audit report it was trained with (args.yaml).

    A problem with the report must not fail a finished run (`doctor report` can redo it): it is printed as a
    warning and None returned.
    """
    console = console or Console()
    run_dir = Path(run_dir)
    try:
        audit = files.read_args(run_dir).get("train", {}).get("audit_report")
        path = build_training_report(run_dir, audit_report=Path(audit) if audit else None)
    except (DoctorError, OSError) as error:
        console.print(f"[yellow]warning:[/] training report not written ({error}); rebuild it with "
                      f"doctor report {run_dir}")
        return None
    console.print(f"training report: [bold]{path}[/]")
    return path


def write_live_report(run_dir: str | Path, progress: dict[str, Any], console: Console | None = None) -> Path | None:
    """report.html of a run still training (trainer.loop's on_evaluation hook): a banner "training in progress:
    epoch k of N, ETA" and a meta refresh on top of everything written so far. Like write_training_report a
    problem is a warning, never the end of the run; the final write_training_report drops the banner."""
    run_dir = Path(run_dir)
    try:
        audit = files.read_args(run_dir).get("train", {}).get("audit_report")
        return build_training_report(run_dir, audit_report=Path(audit) if audit else None, progress=progress)
    except (DoctorError, OSError, ValueError, KeyError, TypeError) as error:
        (console or Console()).print(f"[yellow]warning:[/] live training report not written ({error})")
        return None


LIVE_REFRESH_SECONDS = 30


def live_banner(progress: dict[str, Any]) -> str:
    """The in-progress banner's markup (numbers only: nothing of the user's in it)."""
    eta = progress.get("eta_s")
    eta_text = "ETA " + _duration(eta) if eta is not None else "ETA after the first evaluation"
    return (f'<div class="live-banner" role="status"><strong>training in progress</strong>: epoch '
            f'{int(progress["epoch"])} of {int(progress["epochs"])}, {escape(eta_text)}; this page reloads every '
            f'{LIVE_REFRESH_SECONDS} s until the run ends</div>')


def _duration(seconds: float) -> str:
    minutes = max(0, round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def build_training_report(run_dir: str | Path, audit_report: Path | None = None,
                          search_dirs: Sequence[Path] | None = None, progress: dict[str, Any] | None = None) -> Path:
    """Write run_dir/report.html (atomically) and return its path.

    audit_report: the audit report (HTML, or its JSON) of the dataset; by default it is looked for in
    doctor_reports/ of `search_dirs` (default: the working directory and the directory the run's project
    folder sits in).
    """
    run = load_training_run(run_dir)
    if audit_report is not None and not Path(audit_report).is_file():
        raise DoctorError("audit report not found", audit_report)
    index, index_problem = _load_index(run)
    audit = Path(audit_report) if audit_report is not None else _find_audit(run, search_dirs)
    source = run_source(run, index, index_problem, audit)
    page, _, _ = build_report_page(source, progress)
    return page.write(source.target)


def run_source(run: TrainingRun, index: DatasetIndex | None, index_problem: str | None,
               audit: Path | None) -> ReportSource:
    """A run directory as a source of the page."""
    audit, notes = resolve_audit(audit, run.classes)
    weights = run.class_weights or {}
    predictions = run.dir / files.PREDICTIONS_DIR / "val"
    best = run.best
    return ReportSource(
        title=f"Training report: {run.dir.name}", subtitle=_subtitle(run), target=run.dir / files.REPORT_FILE,
        dataset=run.dataset, classes=run.classes, train_rows=run.per_class_rows("train"),
        val_rows=run.per_class_rows("val"), facts=run_facts(run, index, audit), index=index,
        index_problem=index_problem, results=run.results, confusion=run.confusion, pr_curves=run.pr_curves,
        val_predictions=predictions if predictions.is_dir() else None, audit=audit, audit_notes=notes,
        train_instances=weights.get("instances"), class_weights=weights.get("weights"), run=run,
        key_numbers=[("best epoch", f"{best['epoch']} of {run.epochs_done}" if best else "-"),
                     ("training time", _duration(run.seconds))])


def resolve_audit(audit: Path | None, classes: Sequence[str]) -> tuple[Path | None, dict[str, tuple[str, ...]]]:
    """The audit report to link (its HTML when the JSON was given) and its scale-shift notes per class."""
    notes = scale_shift_notes(audit_json_for(audit) if audit else None, classes)
    if audit is not None and audit.suffix.lower() == ".json" and audit.with_suffix(".html").is_file():
        audit = audit.with_suffix(".html")  # link the page a person reads, not its JSON
    return audit, notes


def build_report_page(source: ReportSource, progress: dict[str, Any] | None = None
                      ) -> tuple[Page, list[ClassNumbers], Diagnosis]:
    """The page (not yet written), the per-class numbers and their diagnosis: one builder for every source."""
    classes = source_class_numbers(source)
    diagnosis = diagnose_run(classes, source.facts)
    suspects, suspects_problem = val_label_suspects(source)
    counts = suspect_counts(suspects, len(source.classes)) if suspects is not None else None
    page = Page(source.title, subtitle=source.subtitle)
    page.html(_EXTRA_STYLE)
    if progress is not None:  # a run still training: see write_live_report
        page.head(f'<meta http-equiv="refresh" content="{LIVE_REFRESH_SECONDS}">')
        page.style(".live-banner{background:#fff3cd;border:1px solid #e0b84c;padding:.6em 1em;margin:0 0 1em;"
                   "border-radius:4px}")
        page.html(live_banner(progress))
    _verdict_section(page, source, diagnosis)
    if source.run is not None:
        _overview_section(page, source.run, source.facts, source.index, source.audit, source.target)
    else:
        _predictions_overview_section(page, source)
    _curves_section(page, source)
    _per_class_section(page, source, classes, diagnosis, counts)
    if source.run is not None:
        _forgetting_section(page, source.run)
    _class_diagnosis_section(page, classes, diagnosis, counts)
    _confusion_section(page, source)
    _pr_section(page, source)
    _val_images_section(page, source)
    _label_suspects_section(page, source, suspects, suspects_problem)
    if source.run is not None:
        _batches_section(page, source.run)
    return page, classes, diagnosis


def diagnosis_json(source: ReportSource, classes: list[ClassNumbers], diagnosis: Diagnosis) -> dict[str, Any]:
    """Per-class numbers and diagnosis for CI pipelines (`doctor diagnose --json`): verdict, train and val
    means, per class its metrics, a short diagnosis id (fine, overfitting, labels-or-capacity, unmeasurable, ...)
    and the finding's sentence."""
    def split(rows: dict[int, dict[str, Any]], images: int | None) -> dict[str, Any]:
        return {"map50": _mean_value(rows, "ap50"), "map50_95": _mean_value(rows, "ap50_95"), "images": images}

    def metrics(row: dict[str, Any]) -> dict[str, Any]:
        return {"instances": int(row.get("instances") or 0),
                **{key: _value(row.get(key)) for key in ("precision", "recall", "ap50", "ap50_95")}}

    per_class = []
    for position, numbers in enumerate(classes):
        status = diagnosis.status(position)
        per_class.append({"class": numbers.name, "train": metrics(source.train_rows.get(position, {})),
                          "val": metrics(source.val_rows.get(position, {})), "diagnosis": diagnosis_id(status),
                          "message": f"{status.title}: {status.detail}" if status is not None else ""})
    val_images = (int(source.index.images_in("val")["readable"].sum())
                  if source.index is not None and "val" in source.index.splits else None)
    return {"verdict": diagnosis.verdict.title, "verdict_level": diagnosis.verdict.level,
            "train": split(source.train_rows, source.facts.train_images if source.run is None else None),
            "val": split(source.val_rows, val_images), "per_class": per_class,
            "overall": [{"rule": f.rule, "level": f.level, "title": f.title, "detail": f.detail}
                        for f in diagnosis.overall]}


# --- gathering the numbers ---------------------------------------------------------------------------------------

def _load_index(run: TrainingRun) -> tuple[DatasetIndex | None, str | None]:
    """The dataset's index, or None and why (the report is still useful without the images)."""
    if run.dataset is None:
        return None, "args.yaml does not name the dataset"
    try:
        return build_index(run.dataset, progress=False), None
    except DoctorError as error:
        return None, f"the dataset cannot be read any more ({error})"


def _find_audit(run: TrainingRun, search_dirs: Sequence[Path] | None) -> Path | None:
    if search_dirs is None:
        search_dirs = [Path.cwd(), run.dir.resolve().parent.parent]
    source = (run.rebalance or {}).get("source")  # a rebalanced copy: the original's audit covers its labels and val
    datasets = [path for path in (run.dataset, Path(source) if source else None) if path is not None]
    return find_audit_report(default_audit_candidates(datasets, search_dirs)) if datasets else None


def class_numbers(run: TrainingRun, index: DatasetIndex | None,
                  audit_notes: dict[str, tuple[str, ...]] | None = None) -> list[ClassNumbers]:
    """Per class: the run's train-subset and val metrics with the dataset facts that explain them."""
    source = run_source(run, index, None, None)
    source.audit_notes = audit_notes or {}
    return source_class_numbers(source)


def source_class_numbers(source: ReportSource) -> list[ClassNumbers]:
    """Per class: the train and val metrics of the source with the dataset facts that explain them."""
    if not source.val_rows and not source.train_rows:
        return []
    names, index, audit_notes = source.classes, source.index, source.audit_notes
    train_rows, val_rows = source.train_rows, source.val_rows
    train_instances = source.train_instances or (index.instances("train").tolist()
                                                 if index is not None and "train" in index.splits
                                                 else [0] * len(names))
    class_weights = source.class_weights or [1.0] * len(names)
    sizes = _size_ratios(index) if index is not None else {}
    confused = _confused_with(source.confusion)
    result = []
    for class_id, name in enumerate(names):
        train, val = train_rows.get(class_id, {}), val_rows.get(class_id, {})
        result.append(ClassNumbers(
            name=name, train_instances=int(train_instances[class_id]), val_instances=int(val.get("instances") or 0),
            train_ap50=_value(train.get("ap50")), val_ap50=_value(val.get("ap50")),
            train_ap50_95=_value(train.get("ap50_95")), val_ap50_95=_value(val.get("ap50_95")),
            val_precision=_value(val.get("precision")), val_recall=_value(val.get("recall")),
            class_weight=float(class_weights[class_id]), size_ratio=sizes.get(class_id),
            confused_with=confused.get(class_id), audit_notes=(audit_notes or {}).get(name, ()),
            train_subset_instances=int(train["instances"]) if train.get("instances") is not None else None))
    return result


def _size_ratios(index: DatasetIndex) -> dict[int, float]:
    """Per class, median box side (sqrt of the area in original pixels) in val / in train."""
    if "val" not in index.splits:
        return {}
    boxes = index.usable_boxes()
    sizes = index.images[["width", "height"]].to_numpy(np.float64)[boxes["image_id"].to_numpy()]
    side = np.sqrt(boxes["w"].to_numpy() * sizes[:, 0] * boxes["h"].to_numpy() * sizes[:, 1])
    table = pd.DataFrame({"split": boxes["split"].astype(str).to_numpy(), "cls": boxes["cls"].to_numpy(),
                          "side": side})
    medians = table.groupby(["split", "cls"])["side"].agg(["median", "size"])
    ratios = {}
    for class_id in range(index.nc):
        if ("train", class_id) in medians.index and ("val", class_id) in medians.index:
            train, val = medians.loc[("train", class_id)], medians.loc[("val", class_id)]
            if min(train["size"], val["size"]) >= MIN_BOXES_FOR_SIZE and train["median"] > 0:
                ratios[class_id] = float(val["median"] / train["median"])
    return ratios


def _confused_with(confusion: Confusion | None) -> dict[int, tuple[str, float]]:
    """Per true class: the other class its val boxes are most often predicted as, when that is frequent."""
    if confusion is None:
        return {}
    counts, labels = np.array(confusion.counts), confusion.labels
    classes = len(labels) - 1  # the last row and column are background
    found = {}
    for true in range(classes):
        column = counts[:classes, true].copy()
        column[true] = 0
        total = counts[:, true].sum()
        other = int(column.argmax()) if classes else 0
        if total and column[other] >= CONFUSED_MIN_BOXES and column[other] / total >= CONFUSED_SHARE:
            found[true] = (labels[other], float(column[other] / total))
    return found


def run_facts(run: TrainingRun, index: DatasetIndex | None, audit: Path | None) -> RunFacts:
    train, data, resolved = run.train_settings, run.data_settings, run.resolved
    batch = int(train.get("batch") or 16)
    train_images = resolved.get("train_images")
    if train_images is None:
        train_images = int(index.images_in("train")["readable"].sum()) if index is not None else 0
    iterations = resolved.get("iterations_per_epoch") or math.ceil(train_images / max(batch, 1))
    options = [("model", str(train.get("model", "n"))), ("imgsz", str(data.get("imgsz", 640))),
               ("batch", str(batch)), ("epochs", str(train.get("epochs", run.epochs_done)))]
    for key, default in (("class_weights", "auto"), ("class_weight_method", "inverse")):
        if train.get(key, default) != default:
            options.append((key.replace("_", "-"), str(train[key])))
    if data.get("sampler", "uniform") != "uniform":
        options.append(("sampler", str(data["sampler"])))
    copy_paste = float(run.augment_settings.get("copy_paste", 0.0) or 0.0)  # absent: a run from before it existed
    if copy_paste != SUGGESTED_COPY_PASTE:  # doctor train's default; a suggestion must not turn it back on
        options.append(("copy-paste", f"{copy_paste:g}"))
    rebalance = run.rebalance or {}
    return RunFacts(
        dataset=str(run.dataset or train.get("data", "data.yaml")), num_classes=len(run.classes),
        epochs_done=run.epochs_done, epochs_planned=int(train.get("epochs") or run.epochs_done),
        iterations_per_epoch=int(iterations), train_images=int(train_images), model_scale=str(train.get("model", "n")),
        class_weights_method=str((run.class_weights or {}).get("method", "none")),
        sampler=str(data.get("sampler", "uniform")), rebalanced_from=rebalance.get("source"),
        rebalance_target=rebalance.get("target"), rebalance_method=rebalance.get("method"),
        audit_report=str(audit) if audit else None,
        run_dir=str(run.dir), train_options=tuple(options), zoom=float(run.augment_settings.get("scale", 0.5)),
        copy_paste=copy_paste,
        curve=tuple((int(row["epoch"]), float(row.get("train_map50_95") or 0.0), float(row["val_map50_95"]))
                    for row in run.evaluated))


# --- sections ------------------------------------------------------------------------------------------------------

def _subtitle(run: TrainingRun) -> str:
    dataset = str(run.dataset) if run.dataset else "unknown dataset"
    return f"{dataset} - {len(run.classes)} classes - run directory {run.dir}"


def _verdict_section(page: Page, source: ReportSource, diagnosis: Diagnosis) -> None:
    audit, target = source.audit, source.target
    page.section("Verdict", "verdict")
    verdict = diagnosis.verdict
    css = {"good": "good", "info": "good", "warning": "warning", "error": "error"}[verdict.level]
    page.html(f'<div class="verdict {css}">{escape(verdict.title)}</div>')
    page.html(_key_numbers(source))
    if verdict.next_steps:
        page.html("<h3>What to do first</h3>" + _steps_html(verdict.next_steps))
    for note in source.notes:
        page.paragraph(note, note=True)
    if audit is not None:
        page.html(f'<p>Audit report of this dataset: <a href="{escape(relative_link(audit, target))}">'
                  f"{escape(audit.name)}</a></p>")
    page.heading("Overall diagnosis")
    if not diagnosis.overall:
        page.paragraph("No run-level finding.", note=True)
    for finding in diagnosis.overall:
        page.html(_finding_html(finding))


def _key_numbers(source: ReportSource) -> str:
    val, train = source.val_rows, source.train_rows
    items = [("val mAP50", _mean_metric(val, "ap50")), ("val mAP50-95", _mean_metric(val, "ap50_95")),
             ("train mAP50", _mean_metric(train, "ap50")), *source.key_numbers]
    return '<div class="numbers">' + "".join(f"<span>{escape(label)} <b>{escape(value)}</b></span>"
                                             for label, value in items) + "</div>"


def _overview_section(page: Page, run: TrainingRun, facts: RunFacts, index: DatasetIndex | None,
                      audit: Path | None, target: Path) -> None:
    page.section("Overview", "overview")
    train, data, augment, resolved = run.train_settings, run.data_settings, run.augment_settings, run.resolved
    weights = run.class_weights or {}
    rows = [("dataset", str(run.dataset or "-")), ("classes", str(len(run.classes)))]
    if index is not None:
        for split in index.splits:
            listed = index.images_in(split)
            rows.append((f"{split} images", f"{int(listed['readable'].sum()):,} ({int(index.instances(split).sum()):,} "
                                            "boxes)"))
    if run.rebalance:
        rows.append(("train set", f"a rebalanced copy (doctor rebalance) of {run.rebalance.get('source')}, target "
                                  f"{run.rebalance.get('target')} instances per class"))
    else:
        rows.append(("train set", "the dataset's own train split (not a rebalanced copy)"))
    rows += [
        ("model", f"scale {train.get('model', '?')}" + (f", initialised from {train['weights']}"
                                                         if train.get("weights") else ", from scratch")),
        ("epochs", f"{run.epochs_done} of {train.get('epochs', '?')}"
                   + (" (stopped early: no val improvement)" if run.epochs_done < int(train.get("epochs") or 0)
                      else "")),
        ("iterations", f"{facts.iterations:,} ({facts.iterations_per_epoch:,} per epoch; rule of thumb "
                       f"{facts.recommended_iterations:,})"),
        ("batch / image size", f"{train.get('batch', '?')} / {data.get('imgsz', '?')} px"
                               + (" (multi-scale)" if data.get("multi_scale") else "")),
        ("optimizer", f"{resolved.get('optimizer', train.get('optimizer', '?'))}, lr0 "
                      f"{resolved.get('lr0', train.get('lr0'))}, final lr x{train.get('lrf', '?')}, "
                      f"{'cosine' if train.get('cos_lr') else 'linear'} decay, warmup "
                      f"{resolved.get('warmup_epochs', train.get('warmup_epochs'))} epochs"),
        ("freeze", (f"YOLOv8 layers 0-{int(resolved['freeze_layers']) - 1} ({train.get('freeze')}), BatchNorm "
                    "statistics too, " + (f"for {train['freeze_epochs']} epochs" if train.get("freeze_epochs")
                                           else "for the whole run")) if resolved.get("freeze_layers") else "none"),
        ("class weights (loss)", _weights_text(weights, train)),
        ("sampler", "balanced: images drawn by their boxes' class weights "
                    f"({data.get('image_weight', 'max')} over boxes)" if data.get("sampler") == "balanced"
         else "uniform: every image once per epoch"),
        ("augmentation", ", ".join(f"{key} {value}" for key, value in augment.items())
         + ("; no mosaic in this run (close_mosaic covers every epoch)"
            if augment.get("mosaic", 0) > 0 and augment.get("close_mosaic", 0) >= train.get("epochs", 0) else "")),
        ("device", f"{resolved.get('device', train.get('device') or '?')}"
                   + (f" x{resolved['world_size']}" if resolved.get("world_size", 1) > 1 else "")
                   + (f", {resolved['amp']} mixed precision" if resolved.get("amp") else "")),
        ("EMA", "on (evaluated and saved weights are the moving average)" if train.get("ema") else "off"),
        ("evaluation", f"val and a fixed subset of {_train_subset_size(run, facts, index)} train images, same "
                       f"thresholds (conf {train.get('conf')}, NMS IoU {train.get('iou')}), every "
                       f"{train.get('eval_every', 1)} epoch(s); final numbers from weights/best.pt"),
        ("training time", _duration(run.seconds)),
    ]
    best = run.best
    if best is not None:
        rows.append(("best epoch", f"{best['epoch']}: val mAP50 {best['val_map50']:.3f}, mAP50-95 "
                                   f"{best['val_map50_95']:.3f} (weights/best.pt)"))
    page.html('<table class="data settings"><tbody>' + "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in rows) + "</tbody></table>")
    if audit is not None:
        page.html(f'<p>Audit report: <a href="{escape(relative_link(audit, target))}">{escape(audit)}</a></p>')
    else:
        dataset = str(run.dataset) if run.dataset else "data.yaml"
        page.html(f"<p>No audit report of this dataset was found (looked in doctor_reports/). Run "
                  f"<code>doctor audit {escape(dataset)}</code>, then <code>doctor report {escape(run.dir)}</code> "
                  "to link it.</p>")


def _train_subset_size(run: TrainingRun, facts: RunFacts, index: DatasetIndex | None) -> str:
    """How many train images were evaluated like val: recorded in args.yaml, else the trainer's rule
    min(train_eval_images, val images, train images)."""
    recorded = run.resolved.get("train_eval_images")
    if recorded is not None:
        return f"{int(recorded):,}"
    if index is None or "val" not in index.splits:
        return "?"
    val_images = int(index.images_in("val")["readable"].sum())
    return f"{min(int(run.train_settings.get('train_eval_images', 500)), val_images, facts.train_images):,}"


def _weights_text(weights: dict, train: dict) -> str:
    method = weights.get("method", "unknown")
    if method == "none":
        return "none (every class weighs 1)"
    source = train.get("class_weights", "auto")
    text = f"{method}" + (f" (auto, capped at a {train.get('class_weight_max_ratio')}x ratio)"
                          if source == "auto" else f" (from {source})")
    values = weights.get("weights") or []
    if values:
        text += f"; from {min(values):.2f} to {max(values):.2f}, per class in the table below"
    if train.get("focal_gamma"):
        text += f"; focal gamma {train['focal_gamma']}"
    return text


def _curves_section(page: Page, source: ReportSource) -> None:
    page.section("Curves", "curves")
    if not source.results:
        page.paragraph("results.csv has no epoch yet." if source.run is not None else
                       "No results.csv given (--results): no loss or mAP curves.", note=True)
        return
    if any(_value(row.get(name)) is not None for row in source.results for name in ("box_loss", "cls_loss")):
        page.figure(loss_figure(source.results))
    if any(_value(row.get("val_map50")) is not None for row in source.results):
        with_train = any(_value(row.get("train_map50")) is not None for row in source.results)
        page.figure(map_figure(source.results, source.best_epoch()),
                    caption="Dashed: the fixed train subset; solid: val; both evaluated the same way. Train pulling "
                            "away from val is overfitting; both low is underfitting." if with_train else
                            "Val mAP per epoch as the trainer logged it (it logs no train mAP: the per-class train "
                            "vs val comparison below is measured here from your predictions).")


def _per_class_section(page: Page, source: ReportSource, classes: list[ClassNumbers], diagnosis: Diagnosis,
                       suspects_per_class: list[int] | None = None) -> None:
    page.section("Per class", "per-class")
    if not classes:
        page.paragraph("per_class.csv is missing: the run has not finished (it is written by the final "
                       "evaluation of weights/best.pt).", note=True)
        return
    page.figure(per_class_ap_figure([c.name for c in classes], [c.train_ap50 for c in classes],
                                    [c.val_ap50 for c in classes], [c.train_ap50_95 for c in classes],
                                    [c.val_ap50_95 for c in classes]))
    train_rows, val_rows = source.train_rows, source.val_rows
    frame = pd.DataFrame({
        "class": [c.name for c in classes],
        "diagnosis": [STATUS_LABELS.get(status.rule, status.rule) if (status := diagnosis.status(i)) else ""
                      for i in range(len(classes))],
        "train AP50": [c.train_ap50 for c in classes], "val AP50": [c.val_ap50 for c in classes],
        "train AP50-95": [c.train_ap50_95 for c in classes], "val AP50-95": [c.val_ap50_95 for c in classes],
        "val P": [c.val_precision for c in classes], "val R": [c.val_recall for c in classes],
        "train instances": [c.train_instances for c in classes],
        "train subset instances": [int(train_rows.get(i, {}).get("instances") or 0) for i in range(len(classes))],
        "val instances": [c.val_instances for c in classes],
        "val images": [int(val_rows.get(i, {}).get("images") or 0) for i in range(len(classes))],
        "class weight": [c.class_weight for c in classes],
    }).astype({"train AP50": float, "val AP50": float, "train AP50-95": float, "val AP50-95": float,
               "val P": float, "val R": float})
    if suspects_per_class is not None:  # the val predictions were read against the labels
        frame["val label suspects"] = suspects_per_class[:len(classes)]
    if source.run is None:
        frame = frame.drop(columns=["class weight"]).rename(columns={"train subset instances":
                                                                     "train instances evaluated"})
    page.table(frame, filterable=True)
    subset = ("a fixed subset of the train images" if source.run is not None else
              f"the {source.facts.train_images:,} train images with a prediction file")
    page.paragraph(f"Train AP is measured on {subset}, exactly like val (same thresholds, COCO's protocol), from "
                   f"the predictions of {source.predictions_by}; P and R are at each class's best-F1 confidence. "
                   "Empty cells: the class has no box there, so its AP cannot be measured. val label suspects: the "
                   "label errors the model-assisted audit suspects in the class's val labels (below). Click a "
                   "header to sort.",
                   note=True)


def _forgetting_section(page: Page, run: TrainingRun) -> None:
    """--replay runs: what fine-tuning cost the base classes on the base val set (forgetting.json)."""
    forgetting = files.read_json(run.dir, files.FORGETTING_FILE)
    if not isinstance(forgetting, dict) or not forgetting.get("classes"):
        return
    page.section("Forgetting (base classes)", "forgetting")
    rows = forgetting["classes"]
    frame = pd.DataFrame({
        "base class": [row.get("class") for row in rows],
        "base val instances": [row.get("instances") for row in rows],
        "AP50-95 before": [row.get("ap50_95_before") for row in rows],
        "AP50-95 after": [row.get("ap50_95_after") for row in rows],
        "forgetting (AP50-95 drop)": [row.get("ap50_95_drop") for row in rows],
        "AP50 before": [row.get("ap50_before") for row in rows], "AP50 after": [row.get("ap50_after") for row in rows],
    }).astype({"AP50-95 before": float, "AP50-95 after": float, "forgetting (AP50-95 drop)": float,
               "AP50 before": float, "AP50 after": float})
    page.table(frame, filterable=True)
    page.paragraph(f"The val split of {escape(str(forgetting.get('dataset')))}, evaluated like val by the --weights "
                   "model (before) and by weights/best.pt (after), classes matched by name; a positive drop is "
                   "forgetting. A base class this run's data.yaml dropped scores 0 after.", note=True)


def _class_diagnosis_section(page: Page, classes: list[ClassNumbers], diagnosis: Diagnosis,
                             suspects_per_class: list[int] | None = None) -> None:
    page.section("Diagnosis per class", "class-diagnosis")
    if not classes:
        page.paragraph("No per-class results yet.", note=True)
        return
    # Findings that only repeat the run-level diagnosis ("low like every class of this run") are listed once.
    pairs = list(zip(classes, diagnosis.per_class))
    like_the_run = [c.name for c, findings in pairs if any(_like_the_run(f) for f in findings)]
    fine = [c.name for c, findings in pairs if all(f.level == "good" for f in findings)]
    if like_the_run:
        page.html('<div class="finding info"><p><span class="level info">info</span><b>low on train and val like every '
                  f"class of this run: {escape(', '.join(like_the_run))}</b></p><p>The run as a whole is "
                  "undertrained (see the verdict): train it longer before judging classes one by one.</p></div>")
    ordered = sorted(enumerate(pairs), key=lambda item: -max((f.severity for f in item[1][1]), default=0))
    for class_id, (numbers, all_findings) in ordered:
        findings = [f for f in all_findings if not _like_the_run(f)]
        if all(f.level == "good" for f in all_findings) or not findings:
            continue
        page.html(_class_block(numbers.name, findings,
                               _suspects_line(numbers.name, class_id, findings, suspects_per_class)))
    if fine:
        page.html('<div class="finding good"><p><span class="level good">good</span><b>fine: '
                  f"{escape(', '.join(fine))}</b></p><p>High on train and on val. If they fail on real images, the "
                  "data is not representative of them.</p></div>")


def _confusion_section(page: Page, source: ReportSource) -> None:
    page.section("Confusion matrix", "confusion")
    if source.confusion is None:
        page.paragraph("confusion_matrix.csv is missing: the run has not finished.", note=True)
        return
    pairs = most_confused_pairs(source.confusion)
    if len(source.confusion.labels) - 1 > MANY_CLASSES or pairs:
        page.heading("Most confused pairs")
        if pairs:
            page.table(pd.DataFrame(pairs), filterable=True, float_format="{:.1%}")
        else:
            page.paragraph("No val box of one class was predicted as another.", note=True)
    page.figure(confusion_figure(source.confusion),
                caption=f"Val, {source.predictions_by}, detections with confidence > {CONFIDENCE_THRESHOLD} paired "
                        f"one to one with boxes at IoU >= {IOU_THRESHOLD}. Columns: true class; rows: predicted. The "
                        "background row holds missed boxes, the background column false alarms. Colour: share of "
                        "the column.")


def _pr_section(page: Page, source: ReportSource) -> None:
    page.section("Precision-recall curves", "pr-curves")
    if not source.pr_curves or not source.pr_curves.get("precision"):
        page.paragraph("pr_curves.json is missing or holds no measurable class.", note=True)
        return
    ap50 = {str(row["class"]): _value(row.get("ap50")) for row in source.val_rows.values()}
    page.figure(pr_figure(source.pr_curves, ap50),
                caption="Interpolated precision at each recall (COCO's 101-point envelope); the area under a curve "
                        "is the class's AP50. Click a legend entry to hide a class.")


def _val_images_section(page: Page, source: ReportSource) -> None:
    page.section("Worst val images", "val-images")
    predictions, index = source.val_predictions, source.index
    if index is None:
        page.paragraph(f"Val images cannot be shown: {source.index_problem}.", note=True)
        return
    if predictions is None:
        page.paragraph("predictions/val is missing: the run has not finished.", note=True)
        return
    try:
        scored = score_val_images(index, predictions)
    except DoctorError as error:
        page.paragraph(f"Val images cannot be shown: {error}", note=True)
        return
    wrong = [errors for errors in scored if errors.score > 0][:WORST_IMAGES]
    page.paragraph(f"Score of an image: missed boxes + false alarms + wrong classes, at confidence > "
                   f"{CONFIDENCE_THRESHOLD} and IoU >= {IOU_THRESHOLD} (the confusion matrix's pairing). "
                   f"{sum(e.score > 0 for e in scored):,} of {len(scored):,} val images have at least one error; "
                   f"the worst {len(wrong)} are shown. Green: ground truth; red: a missed box; blue: a correct "
                   "detection; magenta: a false alarm or a wrong class.", note=True)
    if not wrong:
        page.paragraph("Every val box is found, with no false alarm, at these thresholds.")
        return
    names = source.classes
    page.html('<div class="gallery worst">' + "".join(thumbnail_figure(encode_jpeg(draw_image_errors(e, names)),
                                                                 e.caption()) for e in wrong) + "</div>")


def _predictions_overview_section(page: Page, source: ReportSource) -> None:
    """What was evaluated, for predictions made by another trainer (a run has its settings table instead)."""
    page.section("Overview", "overview")
    rows = [("dataset", str(source.dataset or "-")), ("classes", str(len(source.classes)))]
    index = source.index
    if index is not None:
        for split in index.splits:
            rows.append((f"{split} images", f"{int(index.images_in(split)['readable'].sum()):,} "
                                            f"({int(index.instances(split).sum()):,} boxes)"))
    rows += source.overview_rows
    rows.append(("evaluation", "COCO's protocol (pycocotools' numbers), the same for train and val; an image "
                               "without a prediction file has no detection"))
    page.html('<table class="data settings"><tbody>' + "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in rows) + "</tbody></table>")
    if source.audit is not None:
        page.html(f'<p>Audit report: <a href="{escape(relative_link(source.audit, source.target))}">'
                  f"{escape(source.audit)}</a></p>")
    else:
        page.html("<p>No audit report of this dataset was found (looked in doctor_reports/). Run "
                  f"<code>doctor audit {escape(source.dataset or 'data.yaml')}</code> to write one; this page then "
                  "links it.</p>")


def val_label_suspects(source: ReportSource) -> tuple[pd.DataFrame | None, str | None]:
    """The model-assisted label audit (dataset_doctor/audit/label_errors.py) of the val labels against the
    source's val predictions: (suspects, None), or (None, why there are none to show)."""
    index, predictions = source.index, source.val_predictions
    if index is None or predictions is None:
        return None, "No val images or predictions to read the labels against."
    from dataset_doctor.audit.checks_predictions import label_suspects, split_audit_predictions

    try:
        read = split_audit_predictions(index, predictions, "val")
        return label_suspects(index, index.usable_boxes(), read), None
    except DoctorError as error:
        return None, f"Label suspects cannot be listed: {error}"


def _label_suspects_section(page: Page, source: ReportSource, suspects: pd.DataFrame | None,
                            problem: str | None) -> None:
    """The val labels' suspects, as the audit report shows them (reports/label_errors_section.py)."""
    page.section("Label-error suspects", SUSPECTS_ANCHOR)
    if suspects is None or source.index is None or source.val_predictions is None:
        page.paragraph(problem or "No val images or predictions to read the labels against.", note=True)
        return
    dataset = str(source.dataset or "data.yaml")
    page.paragraph(f"The val labels read against the predictions (the model-assisted audit of doctor audit "
                   f"--predictions): {len(suspects):,} suspect(s), best score first; the first "
                   f"{min(len(suspects), SUSPECTS_SHOWN)} with a picture. A class that is low on train and val with "
                   "many suspects more likely has label problems than too little capacity.", note=True)
    page.html(label_errors_html(suspects, ImageLookup(source.index), source.classes, SUSPECTS_ANCHOR,
                                pictures=SUSPECTS_SHOWN))
    if suspects.empty:
        return
    kept = source.val_predictions
    if source.save_predictions_command:
        kept = Path("preds") / "labels"
        page.html(f"<p>Save the val predictions first: <code>{escape(source.save_predictions_command)}</code>.</p>")
    page.html(f"<p>Review them all and apply the accepted fixes: <code>doctor audit {escape(dataset)} "
              f"--predictions {escape(kept)} --review-csv label_review.csv</code>, mark the rows to apply "
              f"with yes, then <code>doctor fix {escape(dataset)} --out FIXED_DIR --apply-suggestions "
              "label_review.csv</code>.</p>")


def _batches_section(page: Page, run: TrainingRun) -> None:
    page.section("Training batches", "batches")
    if not run.batches:
        page.paragraph("No saved batch (training was started with save_batches 0).", note=True)
        return
    page.paragraph("The first augmented batches of the run as the network saw them, boxes drawn: labels should sit "
                   "on their objects after mosaic, zoom and flips.", note=True)
    figures = []
    for path in run.batches:
        image = read_image_file(str(path))
        if image is None:
            continue
        scale = BATCH_MAX_SIDE / max(image.shape[:2])
        if scale < 1:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        figures.append(f'<figure><img src="{image_data_uri(encode_jpeg(image, 85))}" alt="{escape(path.name)}" '
                       f'loading="lazy"><figcaption>{escape(path.name)}</figcaption></figure>')
    page.html('<div class="batches">' + "".join(figures) + "</div>")


# --- markup helpers ------------------------------------------------------------------------------------------------

def _finding_html(finding: RunFinding) -> str:
    return (f'<div class="finding {escape(finding.level)}"><p><span class="level {escape(finding.level)}">'
            f"{escape(finding.level)}</span><b>{escape(finding.title)}</b></p><p>{escape(finding.detail)}</p>"
            f"{_steps_html(finding.next_steps)}</div>")


def _like_the_run(finding: RunFinding) -> bool:
    return finding.rule == "both-low" and finding.level == "info"


def _suspects_line(name: str, class_id: int, findings: list[RunFinding],
                   suspects_per_class: list[int] | None) -> str:
    """For a class low on train and val (labels likely wrong, or too little capacity): a link to its val label
    suspects, filtered to it, or that the model-assisted audit found none."""
    if suspects_per_class is None or not any(f.rule == "both-low" for f in findings):
        return ""
    count = suspects_per_class[class_id] if class_id < len(suspects_per_class) else 0
    if not count:
        return (f"<p>No label-error suspect of '{escape(name)}' among its val labels: the labels the model sees look "
                "right, so capacity or too few examples is the likelier cause.</p>")
    return (f'<p class="suspects-link"><a href="{escape(suspects_link(SUSPECTS_ANCHOR, class_id))}">{count:,} '
            f"label-error suspect{'' if count == 1 else 's'} of '{escape(name)}'</a> among the val labels: look at "
            "them first, wrong labels keep even the train AP low.</p>")


def _class_block(name: str, findings: list[RunFinding], extra: str = "") -> str:
    """One class: each finding as a line (level, title, numbers), then its next steps together, without repeats."""
    worst = max(findings, key=lambda f: f.severity).level
    lines = "".join(f'<p><span class="level {escape(f.level)}">{escape(f.level)}</span><b>{escape(f.title)}</b>: '
                    f"{escape(f.detail)}</p>" for f in findings)
    steps, seen = [], set()
    for finding in findings:
        for step in finding.next_steps:
            if (step.command or step.text) not in seen:
                seen.add(step.command or step.text)
                steps.append(step)
    return (f'<div class="class-block"><h3>{escape(name)}</h3><div class="finding {escape(worst)}">{lines}{extra}'
            f"{_steps_html(steps)}</div></div>")


def _steps_html(steps) -> str:
    if not steps:
        return ""
    items = "".join(f"<li>{escape(step.text)}" + (f": <code>{escape(step.command)}</code>" if step.command else "")
                    + "</li>" for step in steps)
    return f'<ul class="actions">{items}</ul>'


def _mean_metric(rows: dict[str, dict], key: str) -> str:
    values = [row[key] for row in rows.values() if _value(row.get(key)) is not None]
    return f"{sum(values) / len(values):.3f}" if values else "-"


def _mean_value(rows: dict[int, dict], key: str) -> float | None:
    values = [v for row in rows.values() if (v := _value(row.get(key))) is not None]
    return sum(values) / len(values) if values else None


def _value(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"

