"""What `doctor rebalance` tells: the before/after table (plan, naive, repeat-factor) and rebalance.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table

from dataset_doctor.findings import display_name
from dataset_doctor.rebalance.materialize import WriteResult
from dataset_doctor.rebalance.paste_plan import MethodComparison
from dataset_doctor.rebalance.plan import Outcome, RebalancePlan
from dataset_doctor.rebalance.sources import TrainSources

_SHOWN_PROBLEMS = 10  # problem lines printed before "... and N more"


def rebalance_record(sources: TrainSources, plan: RebalancePlan, *, seed: int, link: str | None,
                     flip: bool = True, result: WriteResult | None = None) -> dict:
    """The content of rebalance.json (also what `--dry-run` would write): counts before and after each method."""
    names = list(sources.names)
    methods = {}
    for outcome in plan.outcomes:
        entry = _outcome_record(plan, outcome)
        if outcome.method == "plan" and result is not None:
            entry["written"] = result.instances.tolist()
            entry["written_max_min_ratio"] = _finite(plan.ratio(result.instances))
            entry["boxes_lost_to_augmentation"] = result.lost_boxes
        methods[outcome.method] = entry
    return {
        "source": str(sources.config.yaml_path),
        "output": None if result is None else str(result.out_dir),
        "target": plan.target, "max_copies": plan.max_copies, "seed": seed, "link": link, "flip": flip,
        "classes": names,
        "train_images": len(sources.images),
        "before": plan.before.tolist(),
        "before_max_min_ratio": _finite(plan.ratio(plan.before)),
        "goals": plan.goals.tolist(),
        "methods": methods,
        "capped_classes": [{"class": names[k], "before": int(plan.before[k]), "reaches": int(plan.goals[k]),
                            "target": plan.target} for k in plan.capped_classes],
        "absent_classes": [names[k] for k in plan.absent_classes],
        "dropped_lines": _records(sources.dropped_lines),
        "excluded_images": _records(sources.excluded_images),
    }


def rebalance_json(record: dict) -> bytes:
    return (json.dumps(record, indent=2) + "\n").encode()


def summary_table(names: tuple[str, ...], plan: RebalancePlan, written: np.ndarray | None = None) -> Table:
    """Per class instances before and after each method, then added images, surplus and the max/min ratio."""
    table = Table(title=f"train instances, target {plan.target} (max {plan.max_copies} copies per image)",
                  title_justify="left")
    table.add_column("class")
    table.add_column("before", justify="right")
    table.add_column("goal", justify="right")
    table.add_column("plan", justify="right", style="bold")
    if written is not None:
        table.add_column("written", justify="right")
    table.add_column("naive", justify="right")
    table.add_column("repeat-factor*", justify="right")
    for k, name in enumerate(names):
        goal = plan.goals[k]
        goal_text = "-" if plan.before[k] >= plan.target else (
            f"[yellow]{goal}[/]" if goal < plan.target else str(goal))
        cells = [escape(name), str(plan.before[k]), goal_text, _count(plan.plan.instances[k])]
        if written is not None:
            cells.append(_count(written[k]))
        cells += [_count(plan.naive.instances[k]), _count(plan.repeat_factor.instances[k])]
        table.add_row(*cells)
    table.add_section()

    def summary_row(label: str, before: str, values: list[str], written_value: str = "") -> None:
        cells = [label, before, "", values[0]]
        if written is not None:
            cells.append(written_value)
        table.add_row(*cells, *values[1:])

    summary_row("added images", "", [_count(o.added_images) for o in plan.outcomes],
                _count(plan.plan.added_images))
    summary_row("surplus instances", "", [_count(plan.surplus(o)) for o in plan.outcomes],
                _count(_written_surplus(plan, written)) if written is not None else "")
    ratios = [plan.ratio(o.instances) for o in plan.outcomes]
    best = min(ratios) if all(math.isfinite(r) for r in ratios) else None
    ratio_cells = [f"[green]{r:.2f}[/]" if best is not None and r == best else f"{r:.2f}" for r in ratios]
    summary_row("max/min ratio", f"{plan.ratio(plan.before):.2f}", ratio_cells,
                f"{plan.ratio(written):.2f}" if written is not None else "")
    return table


def summary_notes(sources: TrainSources, plan: RebalancePlan, result: WriteResult | None = None) -> list[str]:
    """Lines (Rich markup) explaining the table: how each baseline was set, caps, what was left out."""
    names = sources.names
    notes = [f"plan: {plan.plan.note}; naive: {plan.naive.note}; repeat-factor* (LVIS, expected counts): "
             f"{plan.repeat_factor.note}.",
             "surplus = instances added to classes already at the target, or past it."]
    for k in plan.capped_classes:
        notes.append(f"[yellow]class '{escape(names[k])}' cannot reach {plan.target}[/]: it gets to "
                     f"{plan.goals[k]} (from {plan.before[k]}) with every image holding it copied "
                     f"{plan.max_copies} times; raise --max-copies or lower --target.")
    for k in plan.absent_classes:
        notes.append(f"[yellow]class '{escape(names[k])}' has no usable train instance[/]: copying cannot help it "
                     "and it is left out of the max/min ratio.")
    if result is not None and result.lost_boxes:
        notes.append(f"{result.lost_boxes} box(es) of copied images were cut off by augmentation (less than "
                     "40% visible) and not written; the 'written' column counts what was written.")
    notes += _problem_lines("train image(s) left out of the output", sources.excluded_images, with_line=False)
    notes += _problem_lines("label line(s) with errors not copied", sources.dropped_lines, with_line=True)
    return notes


def _outcome_record(plan: RebalancePlan, outcome: Outcome) -> dict:
    fractional = outcome.method == "repeat-factor"
    instances = np.round(outcome.instances, 1).tolist() if fractional else outcome.instances.astype(int).tolist()
    return {
        "added_images": round(outcome.added_images, 1) if fractional else int(outcome.added_images),
        "instances": instances,
        "max_min_ratio": _finite(plan.ratio(outcome.instances)),
        "surplus_instances": round(plan.surplus(outcome), 1),
        "note": outcome.note,
        **{key: float(value) for key, value in outcome.params.items()},
    }


def _written_surplus(plan: RebalancePlan, written: np.ndarray) -> float:
    return float(np.maximum(written - np.maximum(plan.before, plan.target), 0).sum())


def _problem_lines(title: str, findings: pd.DataFrame, with_line: bool) -> list[str]:
    if findings.empty:
        return []
    lines = [f"[yellow]{len(findings)} {title}[/] (all listed in rebalance.json):"]
    for row in findings.head(_SHOWN_PROBLEMS).itertuples(index=False):
        where = row.label if with_line and isinstance(row.label, str) else row.image
        if with_line and not pd.isna(row.line):
            where = f"{where}:{row.line}"
        lines.append(f"  {escape(display_name(str(where)))}: {row.check}: {escape(str(row.message))}")
    if len(findings) > _SHOWN_PROBLEMS:
        lines.append(f"  ... and {len(findings) - _SHOWN_PROBLEMS} more")
    return lines


def _records(findings: pd.DataFrame) -> list[dict]:
    records = []
    for row in findings.itertuples(index=False):
        record = row._asdict()
        record["line"] = None if pd.isna(record["line"]) else int(record["line"])
        records.append(record)
    return records


def _count(value: float) -> str:
    """Integers as integers; expectations (repeat-factor) to one decimal."""
    value = round(float(value), 1)
    return str(int(value)) if value.is_integer() else f"{value:.1f}"


def _finite(value: float) -> float | None:
    return round(value, 4) if math.isfinite(value) else None


def methods_record(comparison: MethodComparison, names: tuple[str, ...], result: WriteResult | None = None) -> dict:
    """rebalance.json's `object_methods`: images, paste and auto side by side, and which one was written."""
    record: dict = {"chosen": comparison.chosen, "methods": {}}
    for method, outcome in comparison.outcomes.items():
        record["methods"][method] = {
            "added_images": outcome.added_images,
            "pasted_instances": {names[k]: int(n) for k, n in enumerate(outcome.pastes) if n},
            "instances": np.round(outcome.instances, 1).tolist(),
            "max_min_ratio": _finite(comparison.ratio(outcome.instances)),
            "surplus_instances": round(comparison.surplus(outcome.instances), 1),
            "note": outcome.note,
        }
    if result is not None:
        record["written"] = {"instances": result.instances.tolist(),
                             "max_min_ratio": _finite(comparison.ratio(result.instances)),
                             "surplus_instances": round(comparison.surplus(result.instances), 1),
                             "pasted_instances": result.pasted, "hidden_host_boxes_dropped": result.hidden_boxes}
    return record


def methods_table(names: tuple[str, ...], comparison: MethodComparison, written: np.ndarray | None = None) -> Table:
    """Per class before and after image copies, pasted instances and both (auto), side by side."""
    table = Table(title=f"images vs paste vs auto, target {comparison.target} (expected counts; "
                        f"written: --method {comparison.chosen})", title_justify="left")
    table.add_column("class")
    table.add_column("before", justify="right")
    for method in comparison.outcomes:
        table.add_column(method, justify="right", style="bold" if method == comparison.chosen else None)
    if written is not None:
        table.add_column("written", justify="right")
    outcomes = list(comparison.outcomes.values())
    for k, name in enumerate(names):
        cells = [escape(name), str(comparison.before[k])] + [_count(o.instances[k]) for o in outcomes]
        if written is not None:
            cells.append(str(written[k]))
        table.add_row(*cells)
    table.add_section()
    extra = [""] if written is not None else []
    table.add_row("added images", "", *[str(o.added_images) for o in outcomes], *extra)
    table.add_row("pasted instances", "", *[str(int(o.pastes.sum())) for o in outcomes], *extra)
    table.add_row("surplus instances", "", *[_count(comparison.surplus(o.instances)) for o in outcomes],
                  *([_count(comparison.surplus(written))] if written is not None else []))
    table.add_row("max/min ratio", f"{comparison.ratio(comparison.before):.2f}",
                  *[f"{comparison.ratio(o.instances):.2f}" for o in outcomes],
                  *([f"{comparison.ratio(written):.2f}"] if written is not None else []))
    return table
