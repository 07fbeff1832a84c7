"""Box geometry in pixels, and its statistics per split and class.

Two scales matter. At the original size, COCO's small / medium / large (area below 32^2, below 96^2, above)
say how hard the objects are in the photos as taken. At the training size, what the model sees: training
letterboxes each image so its long side is `imgsz` pixels (the resize applies to both sides alike, so aspect
ratios are unchanged), which is what decides whether an object still covers a few pixels or vanishes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dataset_doctor.audit.options import AuditOptions
from dataset_doctor.dataset.index import DatasetIndex

COCO_SMALL_AREA, COCO_MEDIUM_AREA = 32.0**2, 96.0**2
PERCENTILES = (5, 25, 50, 75, 95)
MEASURES = ("width", "height", "area", "aspect", "width_imgsz", "height_imgsz", "area_imgsz")
ALL_CLASSES = -1  # class_id of the per-split rows that pool every class

GEOMETRY_COLUMNS = ["image_id", "split", "image", "line", "cls", "cx", "cy", "w", "h", "image_width",
                    "image_height", *MEASURES]


def box_geometry(boxes: pd.DataFrame, images: pd.DataFrame, imgsz: int) -> pd.DataFrame:
    """One row per box of `boxes` (from the index) with its size in pixels at the original size and at imgsz.

    `images` is the index's image table, whose row position is the image id. Boxes of images with unknown
    size (unreadable) get NaN sizes; callers pass usable boxes, which never are on such images.
    """
    ids = boxes["image_id"].to_numpy()
    image_width = images["width"].to_numpy()[ids].astype(np.float64)
    image_height = images["height"].to_numpy()[ids].astype(np.float64)
    known = (image_width > 0) & (image_height > 0)
    image_width[~known] = np.nan
    image_height[~known] = np.nan
    width = boxes["w"].to_numpy() * image_width
    height = boxes["h"].to_numpy() * image_height
    scale = imgsz / np.maximum(image_width, image_height)
    with np.errstate(divide="ignore", invalid="ignore"):
        aspect = width / height
    return pd.DataFrame({
        "image_id": ids, "split": boxes["split"].to_numpy(), "image": boxes["image"].to_numpy(),
        "line": boxes["line"].to_numpy(), "cls": boxes["cls"].to_numpy(),
        "cx": boxes["cx"].to_numpy(), "cy": boxes["cy"].to_numpy(), "w": boxes["w"].to_numpy(),
        "h": boxes["h"].to_numpy(), "image_width": image_width, "image_height": image_height,
        "width": width, "height": height, "area": width * height, "aspect": aspect,
        "width_imgsz": width * scale, "height_imgsz": height * scale, "area_imgsz": width * height * scale**2,
    }, columns=GEOMETRY_COLUMNS)


def box_stats_table(geometry: pd.DataFrame, splits: list[str], names: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """Per split and class (plus one row per split pooling all classes, class_id -1): instance count, COCO
    small / medium / large counts at the original size and at imgsz, and percentiles of every measure.

    Every (split, class) pair has a row, empty ones with zero counts and NaN percentiles.
    """
    nc = len(names)
    slots = nc + 1  # one per class, then the pooled row
    split_codes = pd.Categorical(geometry["split"], categories=splits).codes.astype(np.int64)
    cls = geometry["cls"].to_numpy().astype(np.int64)
    per_class = split_codes * slots + cls
    pooled = split_codes * slots + nc
    group_count = len(splits) * slots

    table = pd.DataFrame({
        "split": np.repeat(splits, slots),
        "class_id": np.tile(np.r_[np.arange(nc), ALL_CLASSES], len(splits)),
        "class": np.tile(np.asarray([*names, "all"], dtype=object), len(splits)),
        "instances": np.bincount(per_class, minlength=group_count) + np.bincount(pooled, minlength=group_count),
    })
    for suffix, column in (("", "area"), ("_imgsz", "area_imgsz")):
        size_class = np.digitize(geometry[column].to_numpy(), [COCO_SMALL_AREA, COCO_MEDIUM_AREA])  # 0, 1, 2
        for code, name in enumerate(("small", "medium", "large")):
            chosen = size_class == code
            table[f"{name}{suffix}"] = (np.bincount(per_class[chosen], minlength=group_count)
                                        + np.bincount(pooled[chosen], minlength=group_count))
    is_pooled = (np.arange(group_count) % slots == nc)[:, None]
    class_groups, pooled_groups = _GroupOrder(per_class, group_count), _GroupOrder(pooled, group_count)
    for measure in MEASURES:
        values = geometry[measure].to_numpy()
        if np.isnan(values).any():
            by_class = grouped_percentiles(per_class, values, group_count, PERCENTILES)
            by_split = grouped_percentiles(pooled, values, group_count, PERCENTILES)
        else:
            by_class = class_groups.percentiles(values, PERCENTILES)
            by_split = pooled_groups.percentiles(values, PERCENTILES)
        result = np.where(is_pooled, by_split, by_class)
        for position, percentile in enumerate(PERCENTILES):
            table[f"{measure}_p{percentile}"] = result[:, position]
    return table


class _GroupOrder:
    """Rows arranged by group once (a radix sort on small integer ids), reused for every measure: each measure
    then needs only a sort within each group's slice, which NumPy's vectorised sort does far faster than an
    argsort or lexsort of the whole column."""

    def __init__(self, groups: np.ndarray, group_count: int):
        group_type = np.uint16 if group_count <= np.iinfo(np.uint16).max else np.int64
        self.order = np.argsort(groups.astype(group_type), kind="stable")
        self.counts = np.bincount(groups, minlength=group_count)
        self.starts = np.cumsum(self.counts) - self.counts

    def percentiles(self, values: np.ndarray, percentiles: tuple[float, ...]) -> np.ndarray:
        arranged = values[self.order]
        for start, count in zip(self.starts.tolist(), self.counts.tolist()):
            if count > 1:
                arranged[start:start + count].sort()
        return _interpolate(arranged, self.starts, self.counts, percentiles)


def grouped_percentiles(groups: np.ndarray, values: np.ndarray, group_count: int,
                        percentiles: tuple[float, ...] | list[float]) -> np.ndarray:
    """Percentiles of `values` within each group (ids 0..group_count-1), NumPy's default linear interpolation.
    NaN values are left out; empty groups give NaN."""
    keep = ~np.isnan(values)
    by_value = np.argsort(values[keep])
    return _percentiles_of_sorted(groups[keep][by_value], values[keep][by_value], group_count, percentiles)


def _percentiles_of_sorted(groups: np.ndarray, values: np.ndarray, group_count: int,
                           percentiles: tuple[float, ...] | list[float]) -> np.ndarray:
    """grouped_percentiles for values already sorted ascending (groups in the same order).

    One sort for all groups instead of a groupby: a stable sort on the small integer group ids (a radix sort
    in NumPy) keeps values ascending within each group, and each group's percentile positions are offsets from
    where it starts.
    """
    group_type = np.uint16 if group_count <= np.iinfo(np.uint16).max else np.int64
    sorted_values = values[np.argsort(groups.astype(group_type), kind="stable")]
    counts = np.bincount(groups, minlength=group_count)
    return _interpolate(sorted_values, np.cumsum(counts) - counts, counts, percentiles)


def _interpolate(sorted_values: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                 percentiles: tuple[float, ...] | list[float]) -> np.ndarray:
    """Percentiles (linear interpolation, as np.percentile) of groups laid out as sorted slices."""
    fractions = np.asarray(percentiles, dtype=np.float64) / 100.0
    last = np.maximum(counts - 1, 0)[:, None]
    positions = starts[:, None] + fractions[None, :] * last
    below = np.floor(positions).astype(np.int64)
    above = np.minimum(below + 1, starts[:, None] + last)
    result = np.full(positions.shape, np.nan)
    present = counts > 0
    if present.any():
        low = sorted_values[below[present]]
        high = sorted_values[above[present]]
        result[present] = low + (high - low) * (positions[present] - below[present])
    return result


def judged_boxes(index: DatasetIndex, options: AuditOptions) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Each box's error ("" when valid), the usable boxes (valid, on a readable image) and their geometry."""
    errors = index.box_errors(options.out_of_bounds_tolerance).to_numpy()
    usable = index.boxes[(errors == "") & index.images["readable"].to_numpy()[index.boxes["image_id"].to_numpy()]]
    return errors, usable, box_geometry(usable, index.images, options.imgsz)
