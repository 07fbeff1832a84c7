"""Checks on single boxes and on boxes within one label file.

Error-level box checks come from `box_rules`, the definition weights, rebalance and the trainer use to skip
boxes, so a box the audit reports as an error is exactly a box that is never trained on. The warnings here
(duplicate-box, tiny-box, extreme-aspect) look only at boxes without such an error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dataset_doctor.audit.finding_table import concat_findings, finding_rows
from dataset_doctor.audit.options import AuditOptions
from dataset_doctor.dataset.box_rules import box_error_message, paired_iou

BOX_ERROR_CHECKS = ("class-out-of-range", "degenerate-box", "out-of-bounds")


def box_error_findings(boxes: pd.DataFrame, labels: np.ndarray, errors: np.ndarray, nc: int,
                       options: AuditOptions) -> pd.DataFrame:
    """One finding per box line with an error-level check. `labels` maps image id -> label path."""
    parts = []
    for check in BOX_ERROR_CHECKS:
        if not options.runs(check):
            continue
        failed = boxes[errors == check]
        if failed.empty:
            continue
        parts.append(finding_rows(
            check, split=failed["split"].astype(str).to_numpy(), image=failed["image"].to_numpy(),
            label=labels[failed["image_id"].to_numpy()], line=failed["line"].to_numpy(),
            message=[box_error_message(check, row, nc) for row in failed.itertuples(index=False)]))
    return concat_findings(parts)


def duplicate_box_pairs(boxes: pd.DataFrame, min_iou: float) -> pd.DataFrame:
    """Pairs of boxes of one image with the same class and IoU >= min_iou, as row positions in `boxes`.

    Sweep instead of all pairs: sorted by (image, class, cx), a box is compared with the following boxes only
    while their centres are close enough in x for the IoU to reach min_iou. Why that bound holds: the union is
    at least the wider box's area w * h, and h >= overlap_y, so IoU = overlap_x * overlap_y / union <=
    overlap_x / max(w_a, w_b); with overlap_x <= (w_a + w_b) / 2 - |dcx|, IoU >= t needs
    |dcx| <= (1 - t) * max(w_a, w_b), at most (1 - t) times the widest box of the group.
    """
    if len(boxes) < 2:  # nothing to pair (and the neighbour comparisons below need two boxes)
        return _pair_frame(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    image_id = boxes["image_id"].to_numpy().astype(np.int64)
    cls = boxes["cls"].to_numpy().astype(np.int64)
    # Only boxes sharing (image, class) with another box can pair: find those first with a stable sort of one
    # integer key (the index lists boxes by image already, so it is nearly sorted and cheap), then sort just
    # them by (key, cx).
    lowest = int(cls.min(initial=0))
    key = image_id * (int(cls.max(initial=0)) - lowest + 1) + (cls - lowest)
    by_key = np.argsort(key, kind="stable")
    sorted_key = key[by_key]
    shared = np.r_[sorted_key[1:] == sorted_key[:-1], False] | np.r_[False, sorted_key[1:] == sorted_key[:-1]]
    candidates = by_key[shared]
    if len(candidates) < 2:
        return _pair_frame(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    cx = boxes["cx"].to_numpy()
    order = candidates[np.lexsort((cx[candidates], key[candidates]))]
    image_id, cls = image_id[order], cls[order]
    cx, cy, w, h = (boxes[c].to_numpy()[order] for c in ("cx", "cy", "w", "h"))
    count = len(order)
    new_group = np.r_[True, (image_id[1:] != image_id[:-1]) | (cls[1:] != cls[:-1])]
    group = np.cumsum(new_group) - 1
    group_starts = np.flatnonzero(new_group)
    reach = (1.0 - min_iou) * np.maximum.reduceat(w, group_starts)[group] + 1e-12
    corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    area = w * h

    firsts, seconds, ious = [], [], []
    active = np.flatnonzero(np.r_[group[1:] == group[:-1], False])  # boxes with a same-group successor
    offset = 1
    while active.size:
        other = active + offset
        inside = other < count
        active, other = active[inside], other[inside]
        close = (group[other] == group[active]) & (cx[other] - cx[active] <= reach[active])
        active, other = active[close], other[close]
        if active.size:
            iou = paired_iou(corners[active], corners[other], area[active], area[other])
            hit = iou >= min_iou - 1e-9
            firsts.append(order[active[hit]])
            seconds.append(order[other[hit]])
            ious.append(iou[hit])
        offset += 1
    if not firsts:
        return _pair_frame(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    return _pair_frame(np.concatenate(firsts), np.concatenate(seconds), np.concatenate(ious))


def _pair_frame(first: np.ndarray, second: np.ndarray, iou: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"a": first.astype(np.int64), "b": second.astype(np.int64), "iou": iou})


def duplicate_box_findings(boxes: pd.DataFrame, labels: np.ndarray, options: AuditOptions) -> pd.DataFrame:
    """A finding on each later line that repeats an earlier box (same class, IoU >= threshold) in its file."""
    pairs = duplicate_box_pairs(boxes, options.duplicate_box_iou)
    if pairs.empty:
        return concat_findings([])
    first, second = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    line = boxes["line"].to_numpy()
    first_line, second_line = line[first], line[second]
    later = np.where(first_line > second_line, first, second)
    earlier_line = np.minimum(first_line, second_line)
    values = boxes[["cls", "cx", "cy", "w", "h"]].to_numpy()
    exact = (values[first] == values[second]).all(axis=1)
    found = pd.DataFrame({"row": later, "earlier": earlier_line, "iou": pairs["iou"].to_numpy(), "exact": exact})
    found = found.sort_values(["row", "earlier"]).drop_duplicates("row")  # the earliest repeated line
    rows = boxes.iloc[found["row"].to_numpy()]
    messages = [f"same box as line {earlier} (exact repeat)" if is_exact
                else f"same class as line {earlier} with IoU {iou:.2f}: likely labelled twice"
                for earlier, iou, is_exact in zip(found["earlier"], found["iou"], found["exact"])]
    return finding_rows("duplicate-box", split=rows["split"].astype(str).to_numpy(), image=rows["image"].to_numpy(),
                        label=labels[rows["image_id"].to_numpy()], line=rows["line"].to_numpy(), message=messages)


def tiny_box_findings(geometry: pd.DataFrame, labels: np.ndarray, options: AuditOptions) -> pd.DataFrame:
    """Boxes with a side under `tiny_box_px` pixels once the image is letterboxed to imgsz."""
    short_side = np.minimum(geometry["width_imgsz"].to_numpy(), geometry["height_imgsz"].to_numpy())
    tiny = geometry[short_side < options.tiny_box_px]
    messages = [f"{width:.2g} x {height:.2g} px at --imgsz {options.imgsz} (under {options.tiny_box_px:g} px "
                f"on a side: {w_orig:.3g} x {h_orig:.3g} px in the original)"
                for width, height, w_orig, h_orig in zip(tiny["width_imgsz"], tiny["height_imgsz"], tiny["width"],
                                                          tiny["height"])]
    return finding_rows("tiny-box", split=tiny["split"].astype(str).to_numpy(), image=tiny["image"].to_numpy(),
                        label=labels[tiny["image_id"].to_numpy()], line=tiny["line"].to_numpy(), message=messages)


def extreme_aspect_findings(geometry: pd.DataFrame, labels: np.ndarray, options: AuditOptions) -> pd.DataFrame:
    """Boxes whose pixel width/height ratio is beyond max_aspect either way (normalised w/h would depend on the
    image's own aspect)."""
    aspect = geometry["aspect"].to_numpy()
    extreme = geometry[(aspect > options.max_aspect) | (aspect < 1.0 / options.max_aspect)]
    messages = [f"width/height {_ratio(ratio)} ({width:.3g} x {height:.3g} px; limit {options.max_aspect:g}:1)"
                for ratio, width, height in zip(extreme["aspect"], extreme["width"], extreme["height"])]
    return finding_rows("extreme-aspect", split=extreme["split"].astype(str).to_numpy(),
                        image=extreme["image"].to_numpy(), label=labels[extreme["image_id"].to_numpy()],
                        line=extreme["line"].to_numpy(), message=messages)


def _ratio(aspect: float) -> str:
    return f"{aspect:.3g}:1" if aspect >= 1 else f"1:{1 / aspect:.3g}"
