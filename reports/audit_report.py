"""The audit report: one self-contained HTML page a person reads top-down to understand a dataset in a minute.

    from reports.audit_report import write_audit_report, default_audit_report_path
    write_audit_report(result, index, default_audit_report_path("data.yaml"))

Top to bottom: the verdict (counts, the three most important problems, what to do next), classes (counts per
split, imbalance, the class weights training would use), box geometry (sizes and aspects per class with train
and val side by side, centres, boxes per image, image sizes, COCO size classes, scale shift), findings (a
filterable table and pictures of the first few of each check, the offending box in red), and train/val
comparison (duplicates and leaks next to their match). Built only from the AuditResult and the DatasetIndex
it came from: nothing is re-checked here.

Where reports live: `doctor audit` writes `doctor_reports/<dataset>-audit.html` in the working directory
unless told otherwise (`default_audit_report_path`); the training report links to that file when it exists.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dataset_doctor.audit.label_errors import LABEL_ERROR_CHECKS
from dataset_doctor.audit.priorities import Problem, next_steps, top_problems, verdict_level, verdict_sentence
from dataset_doctor.audit.result import AuditResult
from dataset_doctor.audit.terminal import location
from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.errors import DoctorError
from dataset_doctor.findings import CHECKS, ERROR, INFO, WARNING, NextStep
from reports import audit_figures
from reports.audit_gallery import (
    ImageLookup,
    finding_pictures,
    gallery_html,
    highlight_note,
    pair_pictures,
    pairs_html,
)
from reports.audit_link import dataset_report_name, reports_dir
from reports.html import Page, escape
from reports.label_errors_section import SUSPECT_PICTURES, label_errors_html, suspects_link

EXAMPLES_PER_CHECK = 4  # pictures per check in the findings gallery
PAIRS_PER_CHECK = 6  # duplicate / leak pairs shown as pictures
MAX_TABLE_ROWS = 5000  # findings table rows; the JSON output has them all
MAX_SCATTER_POINTS = 4000  # boxes per split in the per-box scatter
LABEL_ERRORS_ANCHOR = "label-errors"  # the section's id; links filter it with #label-errors?class=ID&check=CHECK
SECTION_OF_CHECK = {"unused-class": "classes", "missing-in-val": "classes", "class-imbalance": "classes",
                    "few-instances": "classes", "scale-shift": "geometry"}
_SYMBOL = {ERROR: "✗", WARNING: "!", "good": "✓"}
_CSS = """
ol.problems li { margin: 6px 0; }
ol.problems a, ul.dataset-findings a { color: var(--info); }
ul.actions code { display: inline-block; margin-top: 3px; white-space: pre-wrap; word-break: break-all; }
.pairs .pair-row { margin: 0 0 14px; padding-bottom: 10px; border-bottom: 1px solid var(--line); }
.pairs .pair { gap: 14px; }
.pairs .pair figure { width: 300px; margin: 0; }
.pairs figcaption { font-size: 12px; color: var(--muted); word-break: break-all; }
h3.check { scroll-margin-top: 12px; }
.badges span.none { background: #edf2f7; color: var(--muted); }
.findings-gallery .gallery img, .pairs img { width: auto; max-width: 100%; max-height: 240px; display: block; }
p.check-index a { display: inline-block; margin: 3px 6px 3px 0; padding: 2px 10px; border-radius: 12px;
                  text-decoration: none; font-size: 13px; font-weight: 600; }
"""


def default_audit_report_path(data_yaml: str | Path, base_dir: Path | None = None) -> Path:
    """`<base_dir>/<dataset>-audit.html`: where `doctor audit` writes its report unless given --html, and where
    the training report looks for it (audit_link.default_audit_candidates).

    <dataset> is audit_link.dataset_report_name: the name of the folder holding the data.yaml (or of the folder
    given instead of the yaml), plus the yaml's stem when it is neither `data` nor the folder's name
    (`coco/coco128.yaml` -> `coco-coco128`). Relative paths are taken from the working directory, so
    `data.yaml`, `./data.yaml` and the absolute path give the same name. base_dir defaults to `reports_dir()`:
    $DOCTOR_REPORTS_DIR, else `doctor_reports` (relative to the working directory).
    """
    path = Path(data_yaml).expanduser()
    if path.is_dir() or path.suffix.lower() not in (".yaml", ".yml"):  # the folder holding data.yaml
        path = next((path / name for name in ("data.yaml", "data.yml") if (path / name).is_file()), path / "data.yaml")
    return (base_dir if base_dir is not None else reports_dir()) / f"{dataset_report_name(path)}-audit.html"


def check_report_path(path: str | Path) -> Path:
    """Refuse, before any work is done, a report path that cannot be written: its folder is missing, or it is
    a folder itself."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise DoctorError("cannot write the HTML report: this is a directory; give a file name", path)
    if not path.parent.is_dir():
        raise DoctorError("cannot write the HTML report: the directory does not exist", path)
    return path


def write_audit_report(result: AuditResult, index: DatasetIndex, path: str | Path, *,
                       create_dirs: bool = False, suspect_pictures: int = SUSPECT_PICTURES) -> Path:
    """Build the report and write it atomically (temporary file, then rename); returns the path.
    create_dirs makes the missing folders (as for the default doctor_reports/); otherwise they must exist.
    suspect_pictures: label-error suspects shown with a picture (the rest as table rows)."""
    path = Path(path).expanduser()
    try:
        if create_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
        check_report_path(path)
        return build_audit_report(result, index, suspect_pictures=suspect_pictures).write(path)
    except OSError as error:
        raise DoctorError(f"cannot write the HTML report: {error.strerror or error}", path) from None


def build_audit_report(result: AuditResult, index: DatasetIndex, *,
                       suspect_pictures: int = SUSPECT_PICTURES) -> Page:
    """The whole report as a Page (render() gives the HTML). With predictions (result.label_suspects) it has a
    "likely label errors" section whose first `suspect_pictures` suspects get a picture."""
    name = Path(result.root).name or result.dataset
    page = Page(f"Dataset audit: {name}", subtitle=f"{result.dataset} · {_overview(result)}")
    page.style(_CSS)
    lookup = ImageLookup(index)
    _verdict_section(page, result)
    _classes_section(page, result)
    if result.task == "classify":
        _image_size_section(page, result, index)
    else:
        _geometry_section(page, result, index)
    _findings_section(page, result, lookup)
    if result.label_suspects is not None and result.task == "detect":
        _label_errors_section(page, result, lookup, suspect_pictures)
    _comparison_section(page, result, lookup)
    _settings_section(page, result)
    return page


def _overview(result: AuditResult) -> str:
    summary = result.split_summary.set_index("split")
    splits = ", ".join(f"{split} {int(summary.at[split, 'images']):,} images{_background_share(summary, split)}"
                       for split in result.splits)
    if result.task == "classify":
        return f"image classification, {len(result.classes)} class folders; {splits}"
    return f"{len(result.classes)} classes; {splits}; {int(summary['instances'].sum()):,} usable boxes"


def _background_share(summary, split: str) -> str:
    """' (N backgrounds, x%)': the negatives of a split, which the next steps ask for when train has too few."""
    readable, backgrounds = int(summary.at[split, "readable"]), int(summary.at[split, "backgrounds"])
    return f" ({backgrounds:,} backgrounds, {100 * backgrounds / readable:.1f}%)" if readable else ""


def _verdict_section(page: Page, result: AuditResult) -> None:
    page.section("Verdict", "verdict")
    level = verdict_level(result)
    summary = result.summary
    page.html(f'<div class="verdict {level}">{_SYMBOL[level]} {escape(verdict_sentence(result))}</div>')
    labels = ((ERROR, "errors"), (WARNING, "warnings"), (INFO, "info"))
    badges = "".join(f'<span class="sev-{severity}{"" if summary[severity] else " none"}">{summary[severity]:,} '
                     f"{label}</span>" for severity, label in labels)
    page.html(f'<div class="badges">{badges}</div>')
    problems = top_problems(result)
    if problems:
        page.heading("Most important problems")
        page.html(f'<ol class="problems">{"".join(_problem_item(p) for p in problems)}</ol>')
    steps = next_steps(result)
    if steps:
        page.heading("What to do next")
        page.html(f'<ul class="actions">{"".join(_step_item(s) for s in steps)}</ul>')


def _problem_item(problem: Problem) -> str:
    links = ", ".join(f'<a class="check" href="#check-{escape(check)}">{escape(check)}</a>'
                      for check in problem.checks)
    return (f'<li data-checks="{escape(" ".join(problem.checks))}"><span class="sev-{escape(problem.severity)}">'
            f'{escape(problem.severity)}</span> {links}: {escape(problem.summary)}</li>')


def _step_item(step: NextStep) -> str:
    command = f"<br><code>{escape(step.command)}</code>" if step.command else ""
    return f"<li>{escape(step.text)}{command}</li>"


def _classes_section(page: Page, result: AuditResult) -> None:
    page.section("Classes", "classes")
    figure = audit_figures.class_distribution(result)
    page.figure(figure.figure, figure.caption)
    page.paragraph(_imbalance_sentence(result))
    page.table(_class_table(result), float_format="{:.3g}", filterable=len(result.classes) > 1)
    weights = result.class_weights
    notes = " ".join(weights.warnings)
    page.paragraph(f"weight: the per-class loss weights `doctor weights` computes from the train instances "
                   f"(method {weights.method}) and `doctor train --class-weights auto` applies. Rare classes "
                   f"weigh more; the instance-weighted mean is 1. {notes}", note=True)
    if result.rebalance is not None:
        _rebalance_part(page, result)


def _rebalance_part(page: Page, result: AuditResult) -> None:
    """A `doctor rebalance` output: train instances before, per method, as written and now (rebalance.json)."""
    from dataset_doctor.audit.rebalanced import max_min_ratio

    frame = result.rebalance.copy()
    totals = {column: (f"{max_min_ratio(frame[column], frame['before']):.2f}" if column != "class"
                       else "max/min ratio") for column in frame.columns}
    frame = pd.concat([frame.astype(object), pd.DataFrame([totals])], ignore_index=True)
    page.heading(f"Rebalanced: doctor rebalance --method {result.rebalance_method}")
    page.table(frame, float_format="{:.1f}")
    page.paragraph("Train instances per class: before (the source), what each method would give (expected "
                   "counts; the one written is named above), as written, and as this audit counts them. From "
                   "rebalance.json beside data.yaml. The scale-shift test counts a class's train boxes as the "
                   "distinct source boxes they were made from.", note=True)


def _imbalance_sentence(result: AuditResult) -> str:
    if "train" not in result.splits:
        return "No train split: class balance cannot be judged."
    train = result.class_counts[result.class_counts["split"] == "train"]
    present = train[train["instances"] > 0]
    absent = len(train) - len(present)
    if len(present) < 2:
        return f"{len(present)} class with train instances: no imbalance to measure."
    most = present.loc[present["instances"].idxmax()]
    least = present.loc[present["instances"].idxmin()]
    ratio = most["instances"] / least["instances"]
    limit = result.options.imbalance_ratio
    verdict = "above" if ratio > limit else "within"
    absent_text = f" {absent} classes have no train instance at all." if absent else ""
    return (f"Imbalance ratio (most / least frequent class in train): {ratio:.1f}x, '{most['class']}' "
            f"{int(most['instances']):,} vs '{least['class']}' {int(least['instances']):,}; {verdict} the "
            f"{limit:g}x the class-imbalance check allows.{absent_text}")


def _class_table(result: AuditResult) -> pd.DataFrame:
    table = pd.DataFrame({"id": range(len(result.classes)), "class": result.classes})
    for split in result.splits:
        counts = result.class_counts[result.class_counts["split"] == split].reset_index(drop=True)
        table[f"{split} instances"] = counts["instances"].astype(int).tolist()
        table[f"{split} images"] = counts["images"].astype(int).tolist()
        if split == "train":
            table["train share"] = (counts["share"] * 100).round(1).tolist()
    table["weight"] = [round(w, 3) for w in result.class_weights.weights]
    return table


def _geometry_section(page: Page, result: AuditResult, index: DatasetIndex) -> None:
    page.section("Box geometry", "geometry")
    if result.box_geometry.empty:
        page.paragraph("No usable box: nothing to measure.")
        return
    for figure in (audit_figures.box_distribution(result, "side"), audit_figures.box_distribution(result, "aspect"),
                   audit_figures.box_scatter(result, MAX_SCATTER_POINTS)):
        page.figure(figure.figure, figure.caption)
    page.heading("Scale shift between train and val")
    page.table(_shift_table(result), float_format="{:.3g}")
    page.paragraph(f"Kolmogorov-Smirnov test per class on log box area at --imgsz; flagged when p is below "
                   f"{result.options.shift_alpha:g} / classes tested and D is at least "
                   f"{result.options.shift_min_effect:g} (classes with fewer than "
                   f"{result.options.shift_min_instances} boxes on a side are not tested).", note=True)
    sizes = audit_figures.size_categories(result)
    page.figure(sizes.figure, sizes.caption)
    page.table(_size_table(result))
    for figure in (audit_figures.centre_heatmap(result), audit_figures.objects_per_image(result, index.images),
                   audit_figures.image_sizes(result, index.images)):
        page.figure(figure.figure, figure.caption)


def _image_size_section(page: Page, result: AuditResult, index) -> None:
    """Classification datasets: image sizes per split, and the train vs val size shift per class."""
    page.section("Image sizes", "geometry")
    figure = audit_figures.image_sizes(result, index.images)
    page.figure(figure.figure, figure.caption)
    page.heading("Size shift between train and val")
    page.table(_shift_table(result, unit="images", flag="size shift"), float_format="{:.3g}")
    page.paragraph(f"Kolmogorov-Smirnov test per class on image area (side = its square root); flagged when p is "
                   f"below {result.options.shift_alpha:g} / classes tested and D is at least "
                   f"{result.options.shift_min_effect:g} (classes with fewer than "
                   f"{result.options.shift_min_instances} images on a side are not tested).", note=True)


def _shift_table(result: AuditResult, unit: str = "boxes", flag: str = "scale shift") -> pd.DataFrame:
    """The KS test per class as a table: box sizes for detection, image sizes (unit "images") for classification."""
    shift = result.scale_shift
    return pd.DataFrame({
        "class": shift["class"], f"train {unit}": shift["train_instances"].astype(int),
        f"val {unit}": shift["val_instances"].astype(int),
        "train median side px": shift["train_median_side"].round(1),
        "val median side px": shift["val_median_side"].round(1), "val / train": shift["side_ratio"].round(2),
        "KS D": shift["statistic"].round(3), "p-value": [f"{p:.1e}" if p == p else "" for p in shift["p_value"]],
        flag: ["yes" if flagged else "" for flagged in shift["flagged"]],
    })


def _size_table(result: AuditResult) -> pd.DataFrame:
    pooled = result.box_stats[result.box_stats["class_id"] == -1]
    return pd.DataFrame({
        "split": pooled["split"], "boxes": pooled["instances"].astype(int),
        "small": pooled["small"].astype(int), "medium": pooled["medium"].astype(int),
        "large": pooled["large"].astype(int), f"small at {result.options.imgsz}": pooled["small_imgsz"].astype(int),
        f"medium at {result.options.imgsz}": pooled["medium_imgsz"].astype(int),
        f"large at {result.options.imgsz}": pooled["large_imgsz"].astype(int),
    })


def _findings_section(page: Page, result: AuditResult, lookup: ImageLookup) -> None:
    page.section("Findings", "findings")
    findings = result.findings
    if findings.empty:
        page.paragraph("No finding: every check passed.")
        return
    by_check = result.findings_by_check()
    links = " ".join(f'<a class="sev-{escape(row.severity)}" href="#check-{escape(row.check)}">{escape(row.check)} '
                     f"{row.count:,}</a>" for row in by_check.itertuples(index=False))
    page.html(f'<p class="badges check-index">{links}</p>')
    page.heading("Every finding")
    page.paragraph("Type in the box to filter (a check id, a severity, a file name); click a column to sort.",
                   note=True)
    page.table(_findings_table(findings), filterable=True, max_rows=MAX_TABLE_ROWS)
    page.heading("By check")
    pictures = finding_pictures(result, lookup, EXAMPLES_PER_CHECK)
    parts = ['<div class="findings-gallery">']
    for row in by_check.itertuples(index=False):
        parts.append(f'<h3 class="check" id="check-{escape(row.check)}"><span class="sev-{escape(row.severity)}">'
                     f'{escape(row.severity)}</span> {escape(row.check)}: {row.count:,}</h3>')
        of_check = findings[findings["check"] == row.check]
        if row.check in pictures:
            shown = len(pictures[row.check])
            parts.append(gallery_html(pictures[row.check]))
            more = f"First {shown} of {row.count:,}. " if row.count > shown else ""
            parts.append(f'<p class="note">{escape(more + highlight_note(row.check))}</p>')
        elif row.check in LABEL_ERROR_CHECKS:
            parts.append(f'<p class="note">Pictures of the label and of the model&#x27;s box side by side under <a '
                         f'href="{escape(suspects_link(LABEL_ERRORS_ANCHOR, check=row.check))}">likely label '
                         "errors</a>.</p>")
        elif row.check in ("duplicate-image", "split-leak"):
            parts.append('<p class="note">Shown next to their match under '
                         '<a href="#comparison">train/val comparison</a>.</p>')
        else:
            items = "".join(f"<li>{escape(message)}</li>" for message in of_check["message"].head(10))
            section = SECTION_OF_CHECK.get(row.check)
            link = f'<p class="note">More under <a href="#{section}">{section}</a>.</p>' if section else ""
            parts.append(f'<ul class="dataset-findings">{items}</ul>{link}')
    parts.append("</div>")
    page.html("".join(parts))


def _findings_table(findings: pd.DataFrame) -> pd.DataFrame:
    lines = [None if pd.isna(line) else int(line) for line in findings["line"]]
    files = [location(image, label, None) if line is None else (label or image or "")
             for image, label, line in zip(findings["image"], findings["label"], lines)]
    return pd.DataFrame({"check": findings["check"].tolist(), "severity": findings["severity"].tolist(),
                         "split": [split or "" for split in findings["split"]], "file": files,
                         "line": pd.Series(lines, dtype=object), "message": findings["message"].tolist()})


def _label_errors_section(page: Page, result: AuditResult, lookup: ImageLookup, pictures: int) -> None:
    """The model-assisted label audit (--predictions): the suspects of the checks that ran, best score first."""
    page.section("Likely label errors", LABEL_ERRORS_ANCHOR)
    suspects = result.label_suspects
    suspects = suspects[[result.options.runs(check) for check in suspects["check"]]]
    page.paragraph(f"The labels read against a detector's predictions: {len(suspects):,} suspect(s). A suspect is "
                   "where the model and the label disagree; the model can be the one that is wrong, so look before "
                   "you accept. Filter by type and by class; label_review.csv (beside the JSON or this report) "
                   "lists them all for doctor fix --apply-suggestions.", note=True)
    page.html(label_errors_html(suspects, lookup, result.classes, LABEL_ERRORS_ANCHOR, pictures=pictures,
                                max_rows=MAX_TABLE_ROWS))


def _comparison_section(page: Page, result: AuditResult, lookup: ImageLookup) -> None:
    page.section("Train/val comparison", "comparison")
    pairs = result.duplicate_pairs
    leaks = int((pairs["check"] == "split-leak").sum())
    duplicates = int((pairs["check"] == "duplicate-image").sum())
    if pairs.empty:
        page.paragraph("No image appears twice, within a split or across splits (exact copies and "
                       f"near-identical pictures, up to {result.options.near_duplicate_bits} perceptual-hash bits "
                       "apart).")
        return
    page.paragraph(f"{_count(leaks, 'image')} repeating a picture of an earlier split (split-leak), "
                   f"{_count(duplicates, 'image')} repeating a picture of their own split (duplicate-image). Leaks "
                   "make evaluation scores look better than the model is; duplicates make a picture count twice.")
    table = pairs.rename(columns={"split_a": "split", "image_a": "image", "split_b": "repeated in",
                                  "image_b": "repeat"})[["check", "match", "distance", "split", "image",
                                                         "repeated in", "repeat"]]
    page.table(table.astype({"distance": int}), filterable=True, max_rows=MAX_TABLE_ROWS)
    shown = pair_pictures(result, lookup, PAIRS_PER_CHECK)
    page.heading("Side by side")
    page.paragraph(f"The earlier image on the left, its repeat on the right (first {PAIRS_PER_CHECK} of each "
                   "check). Boxes drawn in their class colours: do the labels agree?", note=True)
    page.html(pairs_html(shown))


def _count(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _settings_section(page: Page, result: AuditResult) -> None:
    page.section("Settings", "settings")
    options = result.options.to_dict()
    options["ignore"] = ", ".join(options["ignore"]) or "(none)"
    rows = [("dataset", result.dataset), ("root", result.root)] + [(key, str(value)) for key, value in
                                                                   options.items()]
    page.table(pd.DataFrame(rows, columns=["setting", "value"]), sortable=False)
    page.paragraph(f"Checks: {', '.join(CHECKS)} (design.md section 2). `doctor audit --json FILE` writes every "
                   "finding as JSON.", note=True)
