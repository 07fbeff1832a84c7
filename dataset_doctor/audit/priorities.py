"""Which audit problems matter most, said in plain words, and what to do next.

One ranking for every place that summarises an audit (the terminal verdict, the HTML report's verdict), so the
two never disagree about what "the most important problem" is. The strings are plain text with user strings
(class names) unescaped: each renderer escapes for its own medium.

Ranking: severity first (an error loses data), then, within a severity, IMPORTANCE below, then count. The
order says what distorts the result of training most: a val set that shares pictures with train measures
nothing; a class the model never sees or that val cannot measure is a blind spot; imbalance and shift bias
what is learned; the rest cost a few boxes each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dataset_doctor.audit.backgrounds import background_step
from dataset_doctor.audit.checks_classes import TRAIN, VAL
from dataset_doctor.audit.input_size import advice_sentence, input_size_table, suggest_imgsz
from dataset_doctor.audit.result import AuditResult
from dataset_doctor.findings import CHECKS, ERROR, INFO, SEVERITY_RANK, WARNING, NextStep
from dataset_doctor.rebalance import (
    COPY_PASTE_EVIDENCE,
    DEFAULT_MAX_COPIES,
    LONGER_TRAINING_FACTOR,
    PASTE_REBALANCE_EVIDENCE,
    SUGGESTED_COPY_PASTE,
    TRAIN_LONGER_EVIDENCE,
)

IMPORTANCE: tuple[str, ...] = (
    # errors: whole images lost first, then whole label files' meaning, then single boxes
    "names-mismatch", "corrupt-image", "class-out-of-range", "malformed-line", "out-of-bounds", "degenerate-box",
    # warnings: what invalidates measurement, then blind spots, then bias, then per-box noise
    "split-leak", "unused-class", "missing-in-val", "class-imbalance", "scale-shift", "size-shift",
    "few-instances",
    "wrong-class", "missing-box", "spurious-box", "mislocated-box",
    "missing-label", "duplicate-image", "symlink-loop", "huge-image", "duplicate-box", "tiny-box", "extreme-aspect",
    "orphan-label", "mixed-label-types", "non-utf8-name",
    "misplaced-image", "tiny-image", "color-mode-mix",
    # information
    "empty-label", "segment-label", "non-image-file",
)
assert set(IMPORTANCE) == set(CHECKS), "every check needs a place in the ranking"
FIXABLE = ("corrupt-image", "class-out-of-range", "malformed-line", "out-of-bounds", "degenerate-box")
_SHORT = {  # check -> (singular, plural) of what one finding is, for the merged error sentence
    "corrupt-image": ("corrupt image", "corrupt images"),
    "class-out-of-range": ("box with an unknown class id", "boxes with an unknown class id"),
    "malformed-line": ("unreadable label line", "unreadable label lines"),
    "out-of-bounds": ("box outside its image", "boxes outside their image"),
    "degenerate-box": ("box of zero size", "boxes of zero size"),
}
_LABEL_ERROR_SUMMARY = {  # check -> (singular, plural) of a suspect, completed by "by the model's predictions"
    "missing-box": ("object nobody boxed, suggested", "objects nobody boxed, suggested"),
    "wrong-class": ("box probably of the wrong class, judged", "boxes probably of the wrong class, judged"),
    "mislocated-box": ("box probably misplaced, judged", "boxes probably misplaced, judged"),
    "spurious-box": ("box around nothing, judged", "boxes around nothing, judged"),
}
_NAMES_SHOWN = 4  # class names listed in one sentence before "and N more"


@dataclass(frozen=True)
class Problem:
    """Findings of one check (or of several related checks) summarised: the sentence a person reads first."""

    checks: tuple[str, ...]  # the check ids it is about, most important first
    severity: str
    count: int  # findings
    summary: str  # plain text, user strings unescaped

    @property
    def check(self) -> str:
        return self.checks[0]


def ranked_problems(result: AuditResult) -> list[Problem]:
    """Every check with findings, most important first."""
    by_check = result.findings_by_check()
    rank = {check: position for position, check in enumerate(IMPORTANCE)}
    problems = [Problem((row.check,), row.severity, int(row.count), _summary(result, row.check, int(row.count)))
                for row in by_check.itertuples(index=False)]
    return sorted(problems, key=lambda p: (SEVERITY_RANK[p.severity], rank[p.check], -p.count))


def top_problems(result: AuditResult, count: int = 3) -> list[Problem]:
    """The `count` most important problems; information counts only when nothing is wrong.

    The errors `doctor fix` repairs (FIXABLE) are one problem with one remedy, so they share one entry when
    several of those checks fire: three entries that all say "run doctor fix" would hide the warnings after them.
    """
    ranked = ranked_problems(result)
    fixable = [problem for problem in ranked if problem.check in FIXABLE]
    if len(fixable) >= 2:
        merged = Problem(tuple(p.check for p in fixable), ERROR, sum(p.count for p in fixable),
                         _fixable_summary(fixable))
        at = ranked.index(fixable[0])
        ranked = [p for p in ranked[:at] if p not in fixable] + [merged] + [p for p in ranked[at:] if p not in fixable]
    serious = [problem for problem in ranked if problem.severity != INFO]
    return (serious or ranked)[:count]


def verdict_level(result: AuditResult) -> str:
    """error, warning or good: the colour of the verdict."""
    summary = result.summary
    return ERROR if summary[ERROR] else WARNING if summary[WARNING] else "good"


def verdict_sentence(result: AuditResult) -> str:
    """The counts and what they mean, in one line (without the suggested command)."""
    summary = result.summary
    counts = f"{summary[ERROR]} errors, {summary[WARNING]} warnings, {summary[INFO]} info"
    level = verdict_level(result)
    if level == ERROR:
        return f"{counts}: errors make lines or images unusable"
    if level == WARNING:
        return f"{counts}: no errors, but the warnings are worth a look before training"
    return f"{counts}: ready to train"


def fix_command(result: AuditResult) -> str:
    """`doctor fix` for this dataset, writing a sibling folder (the dataset itself is never changed)."""
    root = Path(result.root)
    return f"doctor fix {result.dataset} --out {root.parent / (root.name + '-fixed')}"


def suggested_rebalance_target(train_instances: list[int] | np.ndarray, min_instances: int,
                               max_copies: int = DEFAULT_MAX_COPIES) -> int | None:
    """A `doctor rebalance --target` that lifts the tail without multiplying the dataset.

    The median class count (of classes present in train): rarer classes are raised to the typical class,
    common ones are left alone. At least `min_instances`, so few-instances goes quiet. At most what the
    rarest class can reach under rebalance's `max_copies` (each of its images copied that many times), unless
    that is below `min_instances`. Rounded up to two significant digits. None when nothing needs raising.
    """
    counts = np.asarray(train_instances, dtype=np.int64)
    present = counts[counts > 0]
    if not len(present):
        return None
    target = max(float(np.median(present)), float(min_instances))
    reachable = float(present.min()) * (max_copies + 1)
    target = min(target, max(reachable, float(min_instances)))
    if target <= present.min():
        return None
    return _round_up(target)


def next_steps(result: AuditResult) -> list[NextStep]:
    """What to do about this audit, most effective first (empty when there is nothing to do)."""
    checks = set(result.findings["check"].unique())
    steps: list[NextStep] = []
    errors = result.findings[result.findings["severity"] == ERROR]
    if len(errors) and result.task == "classify":
        steps.append(NextStep(
            f"Delete or replace the {_plural(len(errors), 'image')} that cannot be decoded (listed with the "
            "findings): training skips them, and doctor fix repairs detection datasets only."))
    elif len(errors):
        steps.append(NextStep(
            f"Repair a copy: {_fix_effect(errors)}. Every change is logged to fix_log.csv; the dataset itself is "
            "not touched.", fix_command(result)))
    if "split-leak" in checks:
        leaks = int((result.findings["check"] == "split-leak").sum())
        steps.append(NextStep(
            f"Remove {'the image' if leaks == 1 else f'the {leaks} images'} repeating a picture of an earlier split "
            "(listed with the match), or re-split the dataset so near-duplicates stay on one side.",
            f"doctor split {result.dataset} --out {_sibling(result, 'resplit')}"))
    train = _counts(result, TRAIN)
    names = result.classes
    if {"class-imbalance", "few-instances"} & checks and len(train):
        target = suggested_rebalance_target(train, result.options.min_instances)
        if target is not None:
            below = np.flatnonzero((train > 0) & (train < target))
            steps.append(NextStep(
                f"Paste boxes of the rare classes into other train images until every class has {target} train "
                f"instances ({_plural(len(below), 'class', 'classes')} below that now; the median class has "
                f"{int(np.median(train[train > 0]))}): doctor rebalance --method paste writes that copy for any "
                f"trainer ({PASTE_REBALANCE_EVIDENCE}). doctor train already pastes rare boxes as it trains "
                f"(--copy-paste {SUGGESTED_COPY_PASTE:g}, the default: {COPY_PASTE_EVIDENCE}) and weights the loss by "
                "class (--class-weights auto, the weights doctor weights prints).",
                f"doctor rebalance {result.dataset} --target {target} --method paste "
                f"--out {_sibling(result, 'rebalanced')}"))
            steps.append(NextStep(
                f"Train about {LONGER_TRAINING_FACTOR}x longer with class weights rather than writing image copies "
                f"of the rare classes (doctor rebalance --method images): their gain is the extra steps "
                f"({TRAIN_LONGER_EVIDENCE})."))
    rare = sorted(np.flatnonzero(train < result.options.min_instances).tolist(), key=lambda k: train[k])
    if rare and ({"few-instances", "unused-class"} & checks):
        listed = _name_list([f"'{names[k]}' ({int(train[k])})" for k in rare])
        steps.append(NextStep(
            f"Collect and label more images of {listed}: copies of the same pictures help less than new ones; "
            f"aim for at least {result.options.min_instances} train instances per class."))
    if "missing-in-val" in checks:
        val = _counts(result, VAL)
        missing = [f"'{names[k]}'" for k in np.flatnonzero((train > 0) & (val == 0))] if len(val) else []
        if missing:
            steps.append(NextStep(f"Put images of {_name_list(missing)} into val, so their accuracy can be "
                                  "measured (or re-split with doctor split, which stratifies by class)."))
    if "scale-shift" in checks:
        shifted = result.scale_shift[result.scale_shift["flagged"]]
        described = _name_list([f"'{row['class']}' ({row['side_ratio']:.2f}x)" for _, row in shifted.iterrows()])
        steps.append(NextStep(
            f"Val boxes of {described} differ in size from train (median val side / train side). Check how val "
            "was collected, and add train images at the val scale, or the val AP of these classes will "
            "understate (or overstate) the model."))
    if "size-shift" in checks:
        shifted = result.scale_shift[result.scale_shift["flagged"]]
        described = _name_list([f"'{row['class']}' ({row['side_ratio']:.2f}x)" for _, row in shifted.iterrows()])
        steps.append(NextStep(
            f"Val images of {described} differ in size from train (median val side / train side): often a "
            "different camera or crop. Check how val was collected, or its accuracy will not predict the field."))
    if "misplaced-image" in checks:
        steps.append(NextStep("Move the images outside class folders (or in nested folders) into the class folder "
                              "they belong to: training reads train/<class>/ only."))
    if "missing-label" in checks:
        steps.append(NextStep("Label the images without a label file, or confirm they are truly empty: every "
                              "object in them is trained as background."))
    sizes = input_size_table(result.box_geometry, result.classes)
    advice = suggest_imgsz(sizes, result.options.imgsz)
    if advice is not None and advice.suggested > advice.imgsz:
        steps.append(NextStep(advice_sentence(advice, sizes),
                              f"doctor train {result.dataset} --imgsz {advice.suggested}"))
    if not steps and not result.summary[ERROR] and not result.summary[WARNING]:
        steps.append(NextStep("Nothing stands in the way: train.", f"doctor train {result.dataset}"))
    backgrounds = background_step(result.split_summary)  # advice, not a blocker: after "train"
    if backgrounds is not None:
        steps.append(backgrounds)
    return steps


@dataclass(frozen=True)
class _Facts:
    """What a check's sentence may use: the audit, the check's findings and count, the train counts per class."""

    result: AuditResult
    findings: pd.DataFrame
    count: int
    train: np.ndarray

    @property
    def options(self):
        return self.result.options

    @property
    def names(self) -> list[str]:
        return self.result.classes


def _summary(result: AuditResult, check: str, count: int) -> str:
    """One plain sentence per check, counted and with its consequence (the table _SUMMARIES below)."""
    sentence = _SUMMARIES.get(check)
    if sentence is None:
        return f"{count} {check} finding(s)"
    return sentence(_Facts(result, result.findings[result.findings["check"] == check], count,
                           _counts(result, TRAIN)))


def _class_out_of_range(f: _Facts) -> str:
    valid = f"outside 0..{len(f.names) - 1}" if f.names else "and no class names in data.yaml to match it"
    return f"{_plural(f.count, 'box', 'boxes')} with a class id {valid}: no class to train them as"


def _unused_class(f: _Facts) -> str:
    listed = _name_list([f"'{f.names[k]}'" for k in np.flatnonzero(f.train == 0)]) if len(f.train) else ""
    return f"{listed or _plural(f.count, 'class', 'classes')} without a usable train instance: the model " \
           "cannot learn them"


def _missing_in_val(f: _Facts) -> str:
    val = _counts(f.result, VAL)
    missing = np.flatnonzero((f.train > 0) & (val == 0)) if len(val) and len(f.train) else []
    listed = _name_list([f"'{f.names[k]}'" for k in missing])
    return f"{listed or _plural(f.count, 'class', 'classes')} without val instances: their accuracy cannot be " \
           "measured"


def _class_imbalance(f: _Facts) -> str:
    train, names = f.train, f.names
    present = np.flatnonzero(train > 0)
    most, least = present[np.argmax(train[present])], present[np.argmin(train[present])]
    return (f"classes are imbalanced: '{names[most]}' has {train[most] / train[least]:.0f}x the train "
            f"instances of '{names[least]}' ({int(train[most])} vs {int(train[least])})")


def _few_instances(f: _Facts) -> str:
    train, minimum = f.train, f.options.min_instances
    few = sorted(np.flatnonzero((train > 0) & (train < minimum)).tolist(), key=lambda k: train[k])
    listed = _name_list([f"'{f.names[k]}' ({int(train[k])})" for k in few])
    return (f"{_plural(len(few), 'class', 'classes')} with fewer than {minimum} train "
            f"instances: {listed}; expect a weak, unstable AP for them")


def _split_leak(f: _Facts) -> str:
    pairs = f.result.duplicate_pairs[f.result.duplicate_pairs["check"] == "split-leak"]
    later = "/".join(dict.fromkeys(pairs["split_b"])) or "val"
    earlier = "/".join(dict.fromkeys(pairs["split_a"])) or "train"
    return (f"{_plural(f.count, f'{later} image')} repeating a {earlier} picture (same or near-identical): "
            "evaluation scores are inflated")


def _scale_shift(f: _Facts) -> str:
    shifted = f.result.scale_shift[f.result.scale_shift["flagged"]]
    listed = _name_list([f"'{row['class']}' (val median side {row['side_ratio']:.2f}x train's)"
                         for _, row in shifted.iterrows()])
    return f"box sizes differ between train and val for {listed or _plural(f.count, 'class', 'classes')}"


def _size_shift(f: _Facts) -> str:
    shifted = f.result.scale_shift[f.result.scale_shift["flagged"]]
    listed = _name_list([f"'{row['class']}' (val median side {row['side_ratio']:.2f}x train's)"
                         for _, row in shifted.iterrows()])
    return f"image sizes differ between train and val for {listed or _plural(f.count, 'class', 'classes')}"


def _label_error(f: _Facts) -> str:
    """The four model-assisted checks (audit/label_errors.py): how many suspects, how many of them confident."""
    check = str(f.findings["check"].iloc[0])
    confident = int((f.findings["score"].astype(float) >= 0.5).sum()) if "score" in f.findings else 0
    return (f"{_plural(f.count, *_LABEL_ERROR_SUMMARY[check])} by the model's predictions ({confident} with "
            "score >= 0.5): review label_review.csv, then doctor fix --apply-suggestions")


# check -> its sentence, in the order of findings.CHECKS
_SUMMARIES: dict[str, Callable[[_Facts], str]] = {
    "corrupt-image": lambda f: f"{_plural(f.count, 'image')} cannot be decoded (truncated, empty or not an image): "
                               "training skips them",
    "malformed-line": lambda f: f"{_plural(f.count, 'label line')} cannot be read as a box: those objects are "
                                "missing from training",
    "class-out-of-range": _class_out_of_range,
    "out-of-bounds": lambda f: f"{_plural(f.count, 'box', 'boxes')} extending outside the image: unusable as "
                               "labelled",
    "degenerate-box": lambda f: f"{_plural(f.count, 'box', 'boxes')} with zero or negative width or height",
    "names-mismatch": lambda f: str(f.findings["message"].iloc[0]),
    "missing-label": lambda f: f"{_plural(f.count, 'image')} without a label file, trained as pure background: any "
                               "object in them teaches the model to ignore it",
    "orphan-label": lambda f: f"{_plural(f.count, 'label file')} without an image, whose boxes are never used",
    "duplicate-box": lambda f: f"{_plural(f.count, 'box', 'boxes')} labelled twice in the same image (same class, "
                               f"IoU >= {f.options.duplicate_box_iou:g})",
    "tiny-box": lambda f: f"{_plural(f.count, 'box', 'boxes')} under {f.options.tiny_box_px:g} px on a side at "
                          f"--imgsz {f.options.imgsz}: too small to learn at that size",
    "extreme-aspect": lambda f: f"{_plural(f.count, 'box', 'boxes')} thinner than 1:{f.options.max_aspect:g}: "
                                "usually a labelling slip",
    "mixed-label-types": lambda f: f"{_plural(f.count, 'label file')} mixing boxes and polygons: likely two "
                                   "annotation tools merged",
    "unused-class": _unused_class,
    "missing-in-val": _missing_in_val,
    "class-imbalance": _class_imbalance,
    "few-instances": _few_instances,
    "duplicate-image": lambda f: f"{_plural(f.count, 'image')} repeating another picture of the same split: it "
                                 "counts twice",
    "split-leak": _split_leak,
    "scale-shift": _scale_shift,
    "non-utf8-name": lambda f: f"{_plural(f.count, 'image')} whose file name is not valid UTF-8: other tools may "
                               "fail to open it (shown with backslash escapes)",
    "symlink-loop": lambda f: f"{_plural(f.count, 'directory link')} to a directory already scanned, not followed: "
                              "each image counts once",
    "huge-image": lambda f: f"{_plural(f.count, 'image')} above {f.options.max_pixels / 1e6:g} megapixels "
                            "(--max-pixels): training decodes them reduced or skips them",
    **dict.fromkeys(_LABEL_ERROR_SUMMARY, _label_error),
    "misplaced-image": lambda f: f"{_plural(f.count, 'image')} outside a class folder (at the root of a split) or "
                                 "in a folder nested inside one: the first are never trained, the second as the "
                                 "outer class",
    "tiny-image": lambda f: f"{_plural(f.count, 'image')} under {f.options.tiny_image_px} px on the short side: "
                            f"upscaled to --imgsz {f.options.imgsz} they are mostly blur",
    "color-mode-mix": lambda f: f"{_plural(f.count, 'image')} in a colour mode (grayscale, RGBA, CMYK...) other than "
                                "the one most of their split has: training converts them, but a model can learn "
                                "the mode instead of the class",
    "size-shift": _size_shift,
    "empty-label": lambda f: f"{_plural(f.count, 'image')} with an empty label file (background images)",
    "segment-label": lambda f: f"{_plural(f.count, 'label file')} with polygons, converted to their bounding boxes",
    "non-image-file": lambda f: f"{_plural(f.count, 'file')} without an image extension in the splits: training "
                                "skips them",
}
assert set(_SUMMARIES) == set(CHECKS), "every check needs a sentence"


def _fixable_summary(problems: list[Problem]) -> str:
    total = sum(p.count for p in problems)
    parts = ", ".join(_plural(p.count, *_SHORT[p.check]) for p in problems)
    return f"{total} errors make images or boxes unusable ({parts}): doctor fix repairs a copy"


def _fix_effect(errors: pd.DataFrame) -> str:
    counts = errors["check"].value_counts()
    parts = []
    lines = int(sum(counts.get(check, 0) for check in ("malformed-line", "class-out-of-range", "degenerate-box")))
    if lines:
        parts.append(f"drops {_plural(lines, 'bad label line')}")
    if counts.get("out-of-bounds", 0):
        parts.append(f"clips or drops {_plural(int(counts['out-of-bounds']), 'overhanging box', 'overhanging boxes')}")
    if counts.get("corrupt-image", 0):
        parts.append(f"leaves out {_plural(int(counts['corrupt-image']), 'corrupt image')}")
    if counts.get("names-mismatch", 0):
        parts.append("cannot repair the class names in data.yaml: edit them by hand")
    return ", ".join(parts) or "repairs what it can"


def _counts(result: AuditResult, split: str) -> np.ndarray:
    return np.asarray(result.instances(split), dtype=np.int64) if split in result.splits else np.zeros(0, np.int64)


def _sibling(result: AuditResult, suffix: str) -> Path:
    root = Path(result.root)
    return root.parent / f"{root.name}-{suffix}"


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def _name_list(items: list[str]) -> str:
    if len(items) <= _NAMES_SHOWN:
        return ", ".join(items)
    return f"{', '.join(items[:_NAMES_SHOWN])} and {len(items) - _NAMES_SHOWN} more"


def _round_up(value: float) -> int:
    """Up to two significant digits: 137 -> 140, 1234 -> 1300, 52 -> 52."""
    digits = max(len(str(int(value))) - 2, 0)
    step = 10**digits
    return int(-(-int(np.ceil(value)) // step) * step)
