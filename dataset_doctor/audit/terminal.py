"""The audit as Rich renderables: per-split class tables, findings grouped by check, a verdict with the most
important problems.

User strings (class names, paths, messages) go into Text objects, never into markup, so a class called
"[bold]x" prints as it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from dataset_doctor.audit.checks_classes import TRAIN
from dataset_doctor.audit.input_size import advice_sentence, input_size_table, suggest_imgsz
from dataset_doctor.audit.label_errors import LABEL_ERROR_CHECKS
from dataset_doctor.audit.priorities import fix_command, top_problems, verdict_level, verdict_sentence
from dataset_doctor.audit.rebalanced import max_min_ratio
from dataset_doctor.audit.result import AuditResult
from dataset_doctor.findings import ERROR, INFO, WARNING, display_name

SEVERITY_STYLE = {ERROR: "bold red", WARNING: "yellow", INFO: "cyan"}
MANY_CLASSES = 25  # above this many classes a split's table shows its top and bottom classes only
SHOWN_EACH_END = 10
_MESSAGE_WIDTH = 240  # longer messages (a pathological label value) are cut


def render_audit(result: AuditResult, examples: int = 3) -> list[RenderableType]:
    """Everything `doctor audit` prints, top to bottom."""
    parts: list[RenderableType] = [_header(result)]
    parts.extend(class_table(result, split) for split in result.splits)
    if result.rebalance is not None:
        parts.append(rebalance_table(result))
    small = input_size_note(result)
    if small is not None:
        parts.append(small)
    parts.append(findings_table(result, examples))
    parts.append(verdict(result))
    return parts


def _header(result: AuditResult) -> Text:
    text = Text("audit of ", style="bold")
    text.append(result.dataset, style="bold")
    summary = result.split_summary.set_index("split")
    sizes = ", ".join(f"{split} {int(summary.at[split, 'images'])} images" for split in result.splits)
    text.append(f"\n{len(result.classes)} classes; {sizes}; ")
    listed = int(summary["images"].sum())
    if result.task == "classify":
        scanned = f"{result.files_read} images read"
    elif not result.files_read:
        scanned = "every file from the cache"
    elif result.files_read >= listed:
        scanned = f"{result.files_read} image/label pairs read"
    else:
        scanned = f"{result.files_read} image/label pairs read, the rest from the cache"
    text.append(scanned, style="dim")
    return text


def class_table(result: AuditResult, split: str) -> Table:
    """Images, usable instances and share per class in one split; the train table adds the suggested weights."""
    summary = result.split_summary.set_index("split").loc[split]
    counts = result.class_counts[result.class_counts["split"] == split]
    with_weights = split == TRAIN
    title = Text(split, style="bold")
    if result.task == "classify":  # every instance is an image (audit/classify.py)
        title.append(f": {int(summary['images'])} images in class folders"
                     + (f" ({int(summary['unusable_boxes'])} unreadable)" if summary["unusable_boxes"] else ""))
    else:
        share = f" ({100 * summary['backgrounds'] / summary['readable']:.1f}%)" if summary["readable"] else ""
        title.append(f": {int(summary['images'])} images, {int(summary['backgrounds'])} backgrounds{share}, "
                     f"{int(summary['instances'])} boxes"
                     + (f" (+{int(summary['unusable_boxes'])} unusable)" if summary["unusable_boxes"] else ""))
    table = Table(title=title, title_justify="left", show_footer=True, header_style="bold")
    table.add_column("id", justify="right", footer="")
    table.add_column("class", footer="total")
    table.add_column("images", justify="right", footer=str(int(counts["images"].sum())))
    table.add_column("instances", justify="right", footer=str(int(counts["instances"].sum())))
    table.add_column("share", justify="right", footer="100%" if counts["instances"].sum() else "")
    if with_weights:
        table.add_column("weight", justify="right", footer=result.class_weights.method)
    few = result.options.min_instances
    rows = counts.rename(columns={"class": "name"})
    hidden = None
    if len(rows) > MANY_CLASSES:  # top and bottom classes by instances, the middle summarised in one row
        rows = rows.sort_values(["instances", "class_id"], ascending=[False, True], kind="stable")
        hidden = rows.iloc[SHOWN_EACH_END:-SHOWN_EACH_END]
        rows = pd.concat([rows.iloc[:SHOWN_EACH_END], rows.iloc[-SHOWN_EACH_END:]])
    for position, row in enumerate(rows.itertuples(index=False)):
        if hidden is not None and position == SHOWN_EACH_END:
            table.add_row("", Text(f"... {len(hidden)} more classes", style="dim"),
                          Text(f"{int(hidden['images'].min())}-{int(hidden['images'].max())}", style="dim"),
                          Text(f"{int(hidden['instances'].min())}-{int(hidden['instances'].max())} "
                               f"({int(hidden['instances'].sum())})", style="dim"),
                          Text(f"{100 * hidden['share'].sum():.1f}%", style="dim"), *([""] if with_weights else []))
        style = "red" if row.instances == 0 else ("yellow" if split == TRAIN and row.instances < few else "")
        cells = [str(row.class_id), Text(str(row.name)), str(row.images), Text(str(row.instances), style=style),
                 f"{100 * row.share:.1f}%"]
        if with_weights:
            cells.append(f"{result.class_weights.weights[row.class_id]:.2f}")
        table.add_row(*cells)
    if hidden is not None:
        table.caption = Text(f"{len(counts)} classes: the {SHOWN_EACH_END} with the most and the {SHOWN_EACH_END} "
                             f"with the fewest instances; every class is in --json and the HTML report",
                             style="dim")
        table.caption_justify = "left"
    return table


def rebalance_table(result: AuditResult) -> Table:
    """A rebalance output: train instances before, per method (the one written in bold), written and now."""
    frame = result.rebalance
    table = Table(title=f"train instances: made by doctor rebalance --method {result.rebalance_method} "
                        "(expected counts per method; rebalance.json)", title_justify="left")
    columns = [c for c in frame.columns if c != "class"]
    table.add_column("class")
    for column in columns:
        table.add_column(column, justify="right", style="bold" if column == result.rebalance_method else None)
    for _, row in frame.iterrows():
        table.add_row(Text(display_name(str(row["class"]))), *[_number(row[c]) for c in columns])
    table.add_section()
    table.add_row("max/min ratio", *[f"{max_min_ratio(frame[c], frame['before']):.2f}" for c in columns])
    return table


def _number(value) -> str:
    value = round(float(value), 1)
    return str(int(value)) if value.is_integer() else f"{value:.1f}"


def input_size_note(result: AuditResult) -> Text | None:
    """The small-object advice (audit/input_size.py) when some class's median train box is under 16 px."""
    table = input_size_table(result.box_geometry, result.classes)
    advice = suggest_imgsz(table, result.options.imgsz)
    if advice is None:
        return None
    text = Text("input size: ", style="bold yellow")
    text.append(advice_sentence(advice, table))
    return text


def findings_table(result: AuditResult, examples: int = 3) -> RenderableType:
    """Findings grouped by check in design.md order: severity, check and count, then the first `examples` of
    them as `file:line  message` (dataset-level findings show their message alone)."""
    by_check = result.findings_by_check()
    if by_check.empty:
        return Text("findings: none", style="bold green")
    grouped = result.findings.groupby("check", sort=False)
    width = max(len(check) for check in by_check["check"])
    lines = [Text("findings", style="bold")]
    for row in by_check.itertuples(index=False):
        style = SEVERITY_STYLE[row.severity]
        header = Text(f"{row.severity:<8}", style=style)
        header.append(f" {row.check:<{width}}", style=f"{style} bold")
        header.append(f" {row.count:>7}")
        lines.append(header)
        group = grouped.get_group(row.check)
        suspects = row.check in LABEL_ERROR_CHECKS  # the top suspects, not the first files
        first = _top_scores(group, examples) if suspects else group.head(examples)
        for finding in first.itertuples(index=False):
            line = Text("    ")
            if suspects:
                line.append(f"{float(finding.score):.2f} ", style="bold")
            where = location(finding.image, finding.label, finding.line)
            if where:
                line.append(where, style="bold")
                line.append("  ")
            line.append(_shorten(finding.message))
            lines.append(line)
        if row.count > len(first):
            lines.append(Text(f"    ... and {row.count - len(first)} more", style="dim"))
    return Group(*lines)


def _top_scores(findings: pd.DataFrame, count: int) -> pd.DataFrame:
    order = np.argsort(-findings["score"].to_numpy(dtype=np.float64), kind="stable")
    return findings.iloc[order[:count]]


def location(image: str | None, label: str | None, line) -> str:
    """`label:line` for a line, else the label or image file, else '' (a dataset-level finding); names that are
    not UTF-8 in their display form (findings.display_name)."""
    has_line = line is not None and not pd.isna(line)
    if label and has_line:
        return f"{display_name(label)}:{int(line)}"
    return display_name(image or label or "")


def verdict(result: AuditResult, problems: int = 3) -> RenderableType:
    """The one-line verdict, then the most important problems in plain words (the ranking the HTML report's
    verdict uses too: priorities.top_problems)."""
    level = verdict_level(result)
    sentence = verdict_sentence(result)
    if level == ERROR:
        text = Text("✗ ", style="bold red")
        text.append(f"{sentence}; ", style="bold")
        if result.task == "classify":
            text.append("remove or replace the files listed as errors")
        else:
            text.append(f"repair a copy with `{fix_command(result)}`")
    elif level == WARNING:
        text = Text("! ", style="bold yellow")
        text.append(sentence, style="bold")
        if result.failed():
            text.append(" (--fail-on warning)")
    else:
        text = Text("✓ ", style="bold green")
        text.append(sentence, style="bold")
    top = top_problems(result, problems) if level != "good" else []
    if not top:
        return text
    lines = [text, Text("most important:", style="bold")]
    for number, problem in enumerate(top, 1):
        line = Text(f"  {number}. ")
        label = problem.check if len(problem.checks) == 1 else "errors"
        line.append(label, style=f"{SEVERITY_STYLE[problem.severity]} bold")
        line.append(f": {_shorten(problem.summary)}")
        lines.append(line)
    return Group(*lines)


def _shorten(message: str) -> str:
    return message if len(message) <= _MESSAGE_WIDTH else message[: _MESSAGE_WIDTH - 1] + "…"

