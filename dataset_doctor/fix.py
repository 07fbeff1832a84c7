"""`doctor fix`: a repaired copy of a dataset, and a CSV log of every change. The source is never written.

What changes, line by line (never the whole image for one bad line):
- lines with an error (malformed, class out of range, zero or negative size) are dropped;
- boxes overhanging the image are clipped to it when the overhang is under `clip_max` of the image side, and
  dropped (an error the audit reports as out-of-bounds) when it is more: such a box is mostly guesswork;
- polygons become their bounding boxes;
- exact repeats of an earlier line of the same file are dropped (same class and coordinates to 1e-6);
- corrupt images are left out with their labels, as are images whose label file cannot be read whole;
  orphan label files are not copied;
- with `suggestions` (`--apply-suggestions`, fix_suggestions.py): the label-error suspects a person accepted in
  the review CSV of `doctor audit --predictions` (boxes added, classes changed, boxes moved or dropped).
Images are copied byte for byte; label files without changes too. The decisions use the same box rules
(`box_rules`) as the audit, so the copy audits without errors.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from dataset_doctor.atomic import check_output_folder, staged_directory
from dataset_doctor.dataset.box_rules import OUT_OF_BOUNDS_TOLERANCE, box_error_message
from dataset_doctor.dataset.datayaml import folders_read, label_path_for
from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.errors import DoctorError
from dataset_doctor.fix_suggestions import ADD_BOX, CHANGE_CLASS, Suggestion, suggestions_by_image

FIX_LOG_FILE = "fix_log.csv"
LOG_COLUMNS = ["file", "line", "action", "before", "after", "reason"]
DROP_LINE, CLIP_BOX, POLYGON_TO_BOX, DROP_DUPLICATE = "drop-line", "clip-box", "polygon-to-box", "drop-duplicate-line"
DROP_IMAGE, DROP_ORPHAN = "drop-image", "drop-orphan-label"
_CLIP_EPSILON = 1e-6  # overhangs below this are float formatting noise, not something to rewrite a line for
_LINE_ERRORS = ("malformed-line", "class-out-of-range")  # parse-level problems with a line number
_EXTERNAL = "external"  # where images from outside the dataset root go in the copy


@dataclass(frozen=True)
class FixOptions:
    """How far `doctor fix` goes."""

    clip_max: float = 0.05  # clip boxes overhanging by less than this fraction of the image side, drop the rest
    out_of_bounds_tolerance: float = OUT_OF_BOUNDS_TOLERANCE  # the audit's tolerance: what counts as an error

    def __post_init__(self) -> None:
        if not 0 <= self.clip_max <= 1:
            raise DoctorError("--clip-max must be in [0, 1]")
        if self.out_of_bounds_tolerance < 0:
            raise DoctorError("--bounds-tolerance must not be negative")


@dataclass
class FixResult:
    data_yaml: Path  # the copy's data.yaml
    log: pd.DataFrame  # LOG_COLUMNS, one row per change
    images: int  # images copied
    label_files: int  # label files written
    changed_label_files: int

    @property
    def log_file(self) -> Path:
        return self.data_yaml.parent / FIX_LOG_FILE

    def action_counts(self) -> dict[str, int]:
        return {str(action): int(count) for action, count in self.log["action"].value_counts(sort=False).items()}


@dataclass
class _Change:
    line: int
    action: str
    after: str  # the new line text ('' when dropped)
    reason: str
    new_class: int | None = None  # change-class: the line as it stands (or `after`), with this class id


def fix_dataset(index: DatasetIndex, out_dir: str | Path, options: FixOptions | None = None,
                suggestions: list[Suggestion] | None = None) -> FixResult:
    """Write a repaired copy of the indexed dataset to `out_dir` (new or empty), atomically; `suggestions`
    (fix_suggestions.read_suggestions) are applied to the copy too."""
    options = options or FixOptions()
    index.config.require_valid_names()
    out = check_output_folder(Path(out_dir).expanduser().resolve(), can_force=False,
                              source_folders=folders_read(index.config))
    with staged_directory(out, "fix") as staging:
        result = _write_copy(index, out, staging, options, suggestions or [])
    return result


def _write_copy(index: DatasetIndex, out: Path, staging: Path, options: FixOptions,
                suggestions: list[Suggestion]) -> FixResult:
    images = index.images.drop_duplicates("path")  # an image listed in two splits is copied once
    changes = _line_changes(index, images, options)
    additions = _merge_suggestions(changes, suggestions)
    log_rows: list[tuple] = []
    kept_paths: dict[str, str] = {}  # source image path -> path relative to the copy's root
    label_files = changed_files = 0

    unreadable_labels = _images_with_unreadable_labels(index)
    for image in images.itertuples(index=False):
        if not image.readable or image.image in unreadable_labels:
            reason = image.image_error or unreadable_labels[image.image]
            log_rows.append((image.image, None, DROP_IMAGE, "", "", f"{reason}; left out with its label file"))
            continue
        relative_image = _mirrored(image.image)
        relative_label = _label_in_copy(out, relative_image)
        target = staging / relative_image
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image.path, target)
        kept_paths[image.path] = relative_image
        added = additions.get(image.image_id, [])
        if not image.label_exists and not added:
            continue
        label_target = staging / relative_label
        label_target.parent.mkdir(parents=True, exist_ok=True)
        label_files += 1
        file_changes = changes.get(image.image_id, [])
        if not file_changes and not added:
            shutil.copyfile(image.label_path, label_target)
            continue
        changed_files += 1
        source = Path(image.label_path) if image.label_exists else None
        before, after = _rewrite_label(source, label_target, file_changes, [change.after for change in added])
        log_rows.extend((image.label, change.line, change.action, before.get(change.line, ""),
                         after.get(change.line, change.after), change.reason) for change in file_changes)
        log_rows.extend((image.label, None, change.action, "", change.after, change.reason) for change in added)

    orphans = index.problems[index.problems["check"] == "orphan-label"]
    log_rows.extend((label, None, DROP_ORPHAN, "", "", "label file without an image: not copied")
                    for label in orphans["label"])
    log = pd.DataFrame(log_rows, columns=LOG_COLUMNS)
    log["line"] = log["line"].astype("Int64")
    _write_log(staging / FIX_LOG_FILE, log)
    _write_data_yaml(index, images, kept_paths, staging)
    return FixResult(out / "data.yaml", log, len(kept_paths), label_files, changed_files)


def _line_changes(index: DatasetIndex, images: pd.DataFrame, options: FixOptions) -> dict[int, list[_Change]]:
    """Per image id (of `images`), the changes to its label file, in line order."""
    keep_ids = images["image_id"].to_numpy()
    boxes = index.boxes[index.boxes["image_id"].isin(keep_ids)]
    errors = index.box_errors(options.out_of_bounds_tolerance)[boxes.index].to_numpy()
    cx, cy, w, h = (boxes[c].to_numpy() for c in ("cx", "cy", "w", "h"))
    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    overhang = np.maximum.reduce([np.zeros_like(x1), -x1, -y1, x2 - 1, y2 - 1])
    too_far = (errors == "out-of-bounds") & (overhang >= options.clip_max)
    drop = ((errors != "") & (errors != "out-of-bounds")) | too_far
    clip = ~drop & (overhang > _CLIP_EPSILON)
    cx1, cy1, cx2, cy2 = (np.clip(v, 0.0, 1.0) for v in (x1, y1, x2, y2))
    new_w, new_h = np.where(clip, cx2 - cx1, w), np.where(clip, cy2 - cy1, h)
    new_cx, new_cy = np.where(clip, (cx1 + cx2) / 2, cx), np.where(clip, (cy1 + cy2) / 2, cy)
    outside = clip & ((new_w <= 0) | (new_h <= 0))
    polygon = boxes["polygon"].to_numpy()
    # Exact repeats: same class and coordinates (as written, to 1e-6) as an earlier kept line of the file.
    kept = ~drop & ~outside
    final = pd.DataFrame({"image_id": boxes["image_id"].to_numpy(), "cls": boxes["cls"].to_numpy(),
                          **{name: np.round(v, 6) for name, v in
                             (("cx", new_cx), ("cy", new_cy), ("w", new_w), ("h", new_h))}})
    repeat = np.zeros(len(boxes), dtype=bool)
    repeat[kept] = final[kept].duplicated().to_numpy()

    changes: dict[int, list[_Change]] = {}
    attention = np.flatnonzero(drop | outside | repeat | polygon | clip)
    for position, row in zip(attention, boxes.iloc[attention].itertuples(index=False)):
        line = int(row.line)
        values = (new_cx[position], new_cy[position], new_w[position], new_h[position])
        new_line = f"{row.cls} " + " ".join(f"{value:.6f}" for value in values)
        if drop[position]:
            reason = box_error_message(errors[position], row, index.nc)
            if errors[position] == "out-of-bounds":
                reason += f"; overhangs by {overhang[position]:.3f}, clipping limit {options.clip_max:g}"
            change = _Change(line, DROP_LINE, "", reason)
        elif outside[position]:
            change = _Change(line, DROP_LINE, "", "box lies outside the image")
        elif repeat[position]:
            change = _Change(line, DROP_DUPLICATE, "", "exact repeat of an earlier line")
        elif polygon[position]:
            reason = "polygon converted to its bounding box" + ("; clipped to the image" if clip[position] else "")
            change = _Change(line, POLYGON_TO_BOX, new_line, reason)
        else:
            reason = f"overhang of {overhang[position]:.4f} of the image side clipped"
            change = _Change(line, CLIP_BOX, new_line, reason)
        changes.setdefault(row.image_id, []).append(change)

    label_ids = dict(zip(images["image"], images["image_id"]))
    problems = index.problems[index.problems["check"].isin(_LINE_ERRORS) & index.problems["line"].notna()]
    for problem in problems.drop_duplicates(["image", "line"]).itertuples(index=False):
        image_id = label_ids.get(problem.image)
        if image_id is not None:
            changes.setdefault(image_id, []).append(_Change(int(problem.line), DROP_LINE, "", problem.message))
    for file_changes in changes.values():
        file_changes.sort(key=lambda change: change.line)
    return changes


def _merge_suggestions(changes: dict[int, list[_Change]], suggestions: list[Suggestion]) -> dict[int, list[_Change]]:
    """Put the accepted suggestions among the fix's own line changes (in place); return the lines to add per
    image id. A line the fix drops anyway (an exact repeat) stays dropped, the suggestion noted in its reason;
    a line the fix clips or converts gets the suggestion on top (change-class) or instead (move, drop)."""
    additions: dict[int, list[_Change]] = {}
    for image_id, accepted in suggestions_by_image(suggestions).items():
        file_changes = changes.setdefault(image_id, [])
        by_line = {change.line: position for position, change in enumerate(file_changes)}
        for suggestion in accepted:
            if suggestion.action == ADD_BOX:
                additions.setdefault(image_id, []).append(_Change(0, ADD_BOX, suggestion.new_line(None),
                                                                  suggestion.reason))
                continue
            assert suggestion.line is not None
            position = by_line.get(suggestion.line)
            existing = file_changes[position] if position is not None else None
            if existing is not None and not existing.after:
                file_changes[position] = _Change(existing.line, existing.action, "",
                                                 f"{existing.reason}; the accepted {suggestion.reason} is moot")
                continue
            reason = suggestion.reason + (f"; also {existing.reason}" if existing is not None else "")
            if suggestion.action == CHANGE_CLASS:
                change = _Change(suggestion.line, CHANGE_CLASS, existing.after if existing else "", reason,
                                 new_class=suggestion.cls)
            else:
                change = _Change(suggestion.line, suggestion.action, suggestion.new_line(None), reason)
            if position is None:
                by_line[suggestion.line] = len(file_changes)
                file_changes.append(change)
            else:
                file_changes[position] = change
        file_changes.sort(key=lambda change: change.line)
        if not file_changes:
            del changes[image_id]
    return additions


def _images_with_unreadable_labels(index: DatasetIndex) -> dict[str, str]:
    """Images whose label file exists but could not be read (a directory, no permission) or was too large to
    read whole: the index reports them as a malformed-line finding without a line number. A repaired copy
    cannot vouch for such a file, so the image is left out."""
    problems = index.problems
    hit = problems[(problems["check"] == "malformed-line") & problems["line"].isna()]
    return {image: message for image, message in zip(hit["image"], hit["message"])
            if message.startswith(("cannot read label file", "label file is larger than"))}


def _rewrite_label(source: Path | None, target: Path, changes: list[_Change],
                   added: list[str] | None = None) -> tuple[dict[int, str], dict[int, str]]:
    """Write the label file with the changes applied and `added` lines appended (source None: a new file);
    return the original and the new text of every changed line.

    Unchanged lines are kept byte for byte (CRLF endings included).
    """
    raw_lines = source.read_bytes().split(b"\n") if source is not None else []
    by_line = {change.line: change for change in changes}
    before: dict[int, str] = {}
    after: dict[int, str] = {}
    kept: list[bytes] = []
    for number, raw in enumerate(raw_lines, start=1):
        change = by_line.get(number)
        if change is None:
            kept.append(raw)
            continue
        before[number] = raw.decode("utf-8", errors="replace").strip()
        new = change.after
        if change.new_class is not None:  # the class id swapped, the rest of the line as it is (or as fixed)
            fields = (new or before[number]).split()
            new = " ".join([str(change.new_class), *fields[1:]])
        after[number] = new
        if new:
            kept.append(new.encode() + (b"\r" if raw.endswith(b"\r") else b""))
    content = b"\n".join(kept)
    if added:
        if content and not content.endswith(b"\n"):
            content += b"\n"
        content += b"".join(line.encode() + b"\n" for line in added)
    target.write_bytes(content)
    return before, after


def _mirrored(relative: str) -> str:
    """Where a file goes in the copy: the same path under the new root; files from outside the root (absolute
    paths in a .txt list) under `external/`."""
    if os.path.isabs(relative):
        return f"{_EXTERNAL}/{Path(relative).as_posix().lstrip('/')}"
    return relative


def _label_in_copy(out: Path, relative_image: str) -> str:
    """The copy's label path for an image, by the images -> labels rule applied to the copy's own paths."""
    label = label_path_for(out / relative_image)
    try:
        return label.relative_to(out).as_posix()
    except ValueError:
        raise DoctorError(f"the label of {relative_image} would fall outside the output directory "
                          "(its path has 'images' above the output): choose another --out", out) from None


def _write_log(path: Path, log: pd.DataFrame) -> None:
    # backslashreplace: a file name that is not UTF-8 in its display form (findings.display_name)
    with open(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as handle:
        writer = csv.writer(handle)
        writer.writerow(LOG_COLUMNS)
        for row in log.itertuples(index=False):
            writer.writerow(["" if pd.isna(value) else value for value in row])


def _write_data_yaml(index: DatasetIndex, images: pd.DataFrame, kept_paths: dict[str, str], staging: Path) -> None:
    """The copy's data.yaml: the source's keys, paths relative to the copy (no `path` key: the yaml's folder
    is the root, for us and for Ultralytics), names as a list."""
    config = index.config
    raw = {key: value for key, value in config.raw.items() if key not in ("path", "download")}
    raw["names"] = list(config.names)
    if "nc" in raw:
        raw["nc"] = config.nc
    for split, sources in config.splits.items():
        if all(source.is_dir() for source in sources):
            mirrored = [_mirrored(_relative(source, config.root)) for source in sources]
            raw[split] = mirrored[0] if len(mirrored) == 1 else mirrored
            continue
        listed = index.images.loc[index.images["split"] == split, "path"]
        list_name = f"{split}.txt"
        listing = "".join(f"./{kept_paths[path]}\n" for path in listed if path in kept_paths)
        # An image list names files: each name keeps its original bytes (surrogateescape).
        (staging / list_name).write_bytes(listing.encode("utf-8", "surrogateescape"))
        raw[split] = list_name
    (staging / "data.yaml").write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)
