"""The label-error checks of `doctor audit --predictions DIR`: a detector's saved predictions read against the
labels (the engine is `label_errors`), as findings and as rows of the review CSV `doctor fix` applies.

DIR holds one YOLO txt file per image (`class cx cy w h confidence`, read by `dataset_doctor.dataset.predictions`),
either flat (matched by image stem against every split) or as `DIR/<split>/`. Only the images of splits that
have predictions are audited: a split nobody predicted would otherwise make every one of its labels a
spurious-box. Within an audited split, an image without a file has no detections (Ultralytics writes none).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from dataset_doctor.atomic import atomic_write_text
from dataset_doctor.audit.finding_table import concat_findings, finding_rows
from dataset_doctor.audit.label_errors import LABEL_ERROR_CHECKS, LabelErrorOptions, find_label_errors
from dataset_doctor.audit.options import AuditOptions
from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.dataset.predictions import read_prediction_dir
from dataset_doctor.errors import DoctorError

LOW_CONFIDENCE_ADVICE = 0.1  # predictions whose lowest confidence is above this were filtered too hard
REVIEW_COLUMNS = ["check", "score", "split", "image", "label", "line", "class", "suggested_class", "box",
                  "label_box", "accept"]
SUSPECT_COLUMNS = ["check", "score", "split", "image", "label", "line", "class", "suggested_class", "box",
                   "label_box", "message"]


@dataclass(frozen=True)
class AuditPredictions:
    """Predictions for the audited images, flat: what `run_audit(..., predictions=)` reads labels against."""

    directory: str
    splits: list[str]  # the splits audited (those with predictions)
    image_ids: np.ndarray  # int64: every image of those splits (index image ids)
    prediction_image: np.ndarray  # int64 (M,): image id of each prediction
    predictions: np.ndarray  # float64 (M, 6): class, cx, cy, w, h, confidence (normalized)
    files_read: int
    options: LabelErrorOptions = field(default_factory=LabelErrorOptions)

    @property
    def min_confidence(self) -> float | None:
        return float(self.predictions[:, 5].min()) if len(self.predictions) else None

    def warnings(self) -> list[str]:
        """Advice on the input itself (printed, not a finding)."""
        lowest = self.min_confidence
        if lowest is not None and lowest > LOW_CONFIDENCE_ADVICE:
            return [f"the lowest prediction confidence in {self.directory} is {lowest:.2f}: predictions should be "
                    "made at a low confidence (0.001-0.05), or spurious boxes cannot be told from missed ones"]
        return []


def read_audit_predictions(index: DatasetIndex, directory: str | Path,
                           options: LabelErrorOptions | None = None) -> AuditPredictions:
    """Read DIR (flat, or DIR/<split>/) for the index's images; DoctorError for a bad file (naming file:line),
    a stem that two images share, or a folder that matches nothing."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DoctorError("predictions directory not found", directory)
    images = index.images
    split_dirs = [split for split in index.splits if (directory / split).is_dir()]
    flat = any(path.is_file() for path in directory.glob("*.txt")) or not split_dirs
    groups = [(None, images)] if flat else [(split, images[images["split"] == split]) for split in split_dirs]

    ids, pieces, files_read, splits = [], [], 0, []
    for split, group in groups:
        folder = directory if split is None else directory / split
        stems = [PurePosixPath(image).stem for image in group["image"]]
        _refuse_shared_stems(folder, group, stems)
        unique = list(dict.fromkeys(stems))
        found = read_prediction_dir(folder, unique, index.nc)
        files_read += found.files_read
        by_stem = dict(zip(unique, found.per_image))
        present = {path.stem for path in folder.glob("*.txt") if path.is_file()}
        group_splits = group["split"].astype(str).to_numpy()
        predicted_splits = set(group_splits[[stem in present for stem in stems]]) if len(group) else set()
        for image_id, stem, image_split in zip(group["image_id"].to_numpy(), stems, group_splits):
            if image_split not in predicted_splits:
                continue
            ids.append(image_id)
            pieces.append((image_id, by_stem[stem]))
        splits.extend(s for s in index.splits if s in predicted_splits and s not in splits)
    if not files_read:
        layout = "" if flat else f" in {', '.join(f'{split}/' for split in split_dirs)}"
        raise DoctorError(f"no prediction file{layout} is named after an image of this dataset (expected "
                          "<image stem>.txt, flat or in DIR/<split>/)", directory)
    counts = np.array([len(array) for _, array in pieces], dtype=np.int64)
    return AuditPredictions(
        directory=str(directory), splits=splits, image_ids=np.array(ids, dtype=np.int64),
        prediction_image=np.repeat(np.array([image_id for image_id, _ in pieces], dtype=np.int64), counts),
        predictions=np.concatenate([array for _, array in pieces]) if pieces else np.zeros((0, 6)),
        files_read=files_read, options=options or LabelErrorOptions())


def split_audit_predictions(index: DatasetIndex, directory: str | Path, split: str,
                            options: LabelErrorOptions | None = None) -> AuditPredictions:
    """The predictions of one split's images from a flat DIR (as `doctor diagnose --val-predictions` takes
    them): only that split is audited, whatever other images share a stem with its files."""
    directory = Path(directory).expanduser()
    group = index.images[(index.images["split"] == split).to_numpy() & index.images["readable"].to_numpy()]
    stems = [PurePosixPath(image).stem for image in group["image"]]
    _refuse_shared_stems(directory, group, stems)
    unique = list(dict.fromkeys(stems))
    found = read_prediction_dir(directory, unique, index.nc)
    by_stem = dict(zip(unique, found.per_image))
    pieces = [(int(image_id), by_stem[stem]) for image_id, stem in zip(group["image_id"].to_numpy(), stems)]
    counts = np.array([len(array) for _, array in pieces], dtype=np.int64)
    return AuditPredictions(
        directory=str(directory), splits=[split], image_ids=np.array([i for i, _ in pieces], dtype=np.int64),
        prediction_image=np.repeat(np.array([i for i, _ in pieces], dtype=np.int64), counts),
        predictions=np.concatenate([array for _, array in pieces]) if pieces else np.zeros((0, 6)),
        files_read=found.files_read, options=options or LabelErrorOptions())


def _refuse_shared_stems(folder: Path, group: pd.DataFrame, stems: list[str]) -> None:
    """Two different images with one stem cannot both be `<stem>.txt`: say which, once a file has that name."""
    paths = group["path"].to_numpy()
    distinct = Counter(stem for stem, _ in dict.fromkeys(zip(stems, paths)))
    shared = [stem for stem, count in distinct.items() if count > 1 and (folder / f"{stem}.txt").is_file()]
    if not shared:
        return
    stem = shared[0]
    holders = group[[s == stem for s in stems]]
    where = sorted(set(holders["image"]))
    several = holders["split"].nunique() > 1
    layout = "; put the predictions in DIR/<split>/ folders" if several else ""
    raise DoctorError(f"'{stem}.txt' could be the predictions of {len(where)} images "
                      f"({', '.join(where[:3])}) in {'several splits' if several else 'one split'}{layout}",
                      folder / f"{stem}.txt")


def label_suspects(index: DatasetIndex, usable: pd.DataFrame, predictions: AuditPredictions) -> pd.DataFrame:
    """SUSPECT_COLUMNS, one row per suspect of the audited images, best score first."""
    images = index.images
    audited = usable[usable["image_id"].isin(predictions.image_ids)]
    labels = audited[["cls", "cx", "cy", "w", "h"]].to_numpy(dtype=np.float64)
    found = find_label_errors(audited["image_id"].to_numpy(), labels, predictions.prediction_image,
                              predictions.predictions, index.nc, predictions.options).suspects
    if found.empty:
        return pd.DataFrame(columns=SUSPECT_COLUMNS)
    image_id = found["image"].to_numpy()
    label_row = found["label_row"].to_numpy()
    has_label = label_row >= 0
    line = np.full(len(found), -1, dtype=np.int64)
    line[has_label] = audited["line"].to_numpy()[label_row[has_label]]
    label_box = np.full((len(found), 4), np.nan)
    label_box[has_label] = labels[label_row[has_label], 1:5]
    box = found[["cx", "cy", "w", "h"]].to_numpy()
    names = index.names
    messages = [_message(row, names, options=predictions.options) for row in found.itertuples(index=False)]
    return pd.DataFrame({
        "check": found["check"].to_numpy(), "score": np.round(found["score"].to_numpy(), 4),
        "split": images["split"].astype(str).to_numpy()[image_id], "image": images["image"].to_numpy()[image_id],
        "label": images["label"].to_numpy()[image_id],
        "line": _optional_integers(line), "class": _optional_integers(found["cls"].to_numpy()),
        "suggested_class": _optional_integers(found["suggested_class"].to_numpy()),
        "box": [[round(float(v), 6) for v in b] for b in box],
        "label_box": [[round(float(v), 6) for v in b] if ok else None for b, ok in zip(label_box, has_label)],
        "message": messages,
    }, columns=SUSPECT_COLUMNS)


def _optional_integers(values: np.ndarray) -> pd.arrays.IntegerArray:
    """Int64 with <NA> where the engine wrote -1 (no label line, no class)."""
    return pd.array([int(value) if value >= 0 else None for value in values], dtype="Int64")


def label_error_findings(suspects: pd.DataFrame, options: AuditOptions) -> pd.DataFrame:
    """The suspects as audit findings: the standard columns plus score, box and suggested_class."""
    parts = []
    for check in LABEL_ERROR_CHECKS:
        rows = suspects[suspects["check"] == check]
        if rows.empty or not options.runs(check):
            continue
        part = finding_rows(check, split=rows["split"].to_numpy(), image=rows["image"].to_numpy(),
                            label=rows["label"].to_numpy(),
                            line=None if check == "missing-box" else rows["line"].to_numpy(dtype=np.int64),
                            message=rows["message"].to_numpy())
        part["score"] = rows["score"].to_numpy(dtype=object)
        part["box"] = pd.Series(list(rows["box"]), dtype=object).to_numpy()
        part["suggested_class"] = [None if pd.isna(value) else int(value) for value in rows["suggested_class"]]
        parts.append(part)
    return concat_findings(parts)


def write_review_csv(suspects: pd.DataFrame, path: str | Path, ignore: frozenset[str] = frozenset()) -> Path:
    """label_review.csv (REVIEW_COLUMNS), best score first, `accept` empty for a person to fill with yes."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise DoctorError("cannot write the review CSV: this is a directory; give a file name", path)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REVIEW_COLUMNS)
    rows = suspects[~suspects["check"].isin(ignore)]
    for values in zip(*(rows[column] for column in REVIEW_COLUMNS[:-1])):
        record = dict(zip(REVIEW_COLUMNS, values))
        writer.writerow([record["check"], f"{record['score']:.4f}", record["split"], record["image"],
                         record["label"], *(_integer_text(record[c]) for c in ("line", "class", "suggested_class")),
                         _box_text(record["box"]), _box_text(record["label_box"]), ""])
    try:
        return atomic_write_text(path, buffer.getvalue())
    except OSError as error:
        raise DoctorError(f"cannot write the review CSV: {error.strerror or error}", path) from None


def _integer_text(value) -> str:
    return "" if value is None or pd.isna(value) else str(int(value))


def _box_text(box: list[float] | None) -> str:
    return "" if box is None else " ".join(f"{value:.6f}" for value in box)


def _message(row, names: tuple[str, ...], options: LabelErrorOptions) -> str:
    """One line a person can act on: what the model saw, how sure, and the fix the review CSV would apply."""
    def name(cls: int) -> str:
        return f"'{names[cls]}'" if 0 <= cls < len(names) else f"class {cls}"

    box = " ".join(f"{value:.4f}" for value in (row.cx, row.cy, row.w, row.h))
    if row.check == "missing-box":
        return (f"the model sees a {name(row.suggested_class)} (confidence {row.confidence:.2f}, class threshold "
                f"{row.threshold:.2f}) that no label covers: add '{row.suggested_class} {box}'")
    if row.check == "wrong-class":
        return (f"labelled {name(row.cls)}, the model says {name(row.suggested_class)} (confidence "
                f"{row.confidence:.2f}; {row.own_confidence:.2f} for {name(row.cls)}): change the class to "
                f"{row.suggested_class} ({name(row.suggested_class)})")
    if row.check == "mislocated-box":
        return (f"the model's {name(row.cls)} (confidence {row.confidence:.2f}) overlaps this box only at IoU "
                f"{row.iou:.2f}: move it to '{box}'")
    return (f"no prediction of any class near this {name(row.cls)} (best nearby confidence {row.confidence:.3f}; "
            f"the model finds {100 * row.class_recall:.0f}% of {name(row.cls)} boxes): drop the line if "
            "nothing is there")
