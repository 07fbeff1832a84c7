"""duplicate-image and split-leak: the same picture twice in a split, or in train and in val / test.

Exact copies share a content hash; resized, re-encoded or brightened copies share all but a few bits of the
perceptual hash (`near_duplicates.near_duplicate_pairs`, the search `doctor split` uses to keep copies together).
Image ids follow split order (train first), so of two matching images the later one is in the same or a later
split: that is the one reported, next to its earliest match.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dataset_doctor.audit.finding_table import concat_findings, finding_rows
from dataset_doctor.audit.near_duplicates import near_duplicate_pairs
from dataset_doctor.audit.options import AuditOptions
from dataset_doctor.dataset.images import PHASH_BITS

PAIR_COLUMNS = ["check", "match", "distance", "image_id_a", "split_a", "image_a", "path_a",
                "image_id_b", "split_b", "image_b", "path_b"]
EXACT, NEAR, SAME_FILE = "exact", "near", "same file"


def duplicate_image_pairs(images: pd.DataFrame, options: AuditOptions) -> pd.DataFrame:
    """One row per image that repeats an earlier one (b) with its earliest match (a), PAIR_COLUMNS.

    `check` is duplicate-image when both are in one split, split-leak otherwise; `distance` counts differing
    perceptual-hash bits (0 for exact copies).
    """
    ids = images["image_id"].to_numpy()
    split_codes = images["split"].cat.codes.to_numpy()
    content = images["content_hash"].to_numpy()

    member = ids[content != ""]
    codes = pd.factorize(content[member])[0]
    # Ids increase down the table, so the first occurrence of a hash (or of a hash within a split) is its
    # smallest id: np.unique's first indices give it without a groupby.
    first_overall = member[_first_index(codes)[codes]]
    in_split = codes * len(images["split"].cat.categories) + split_codes[member]
    first_in_split = member[_first_index(in_split)[in_split]]
    same_split = first_in_split != member
    other_split = split_codes[first_overall] != split_codes[member]
    firsts = [first_in_split[same_split], first_overall[other_split]]
    seconds = [member[same_split], member[other_split]]
    distances = [np.zeros(same_split.sum(), np.int64), np.zeros(other_split.sum(), np.int64)]

    near = near_duplicate_pairs(images["phash"].tolist(), options.near_duplicate_bits)
    if len(near):
        i, j = near["i"].to_numpy(), near["j"].to_numpy()
        differ = content[i] != content[j]  # equal bytes are already paired above
        firsts.append(i[differ])
        seconds.append(j[differ])
        distances.append(near["distance"].to_numpy()[differ])
    edges = pd.DataFrame({"a": np.concatenate(firsts), "b": np.concatenate(seconds),
                          "distance": np.concatenate(distances)})
    edges["same_split"] = split_codes[edges["a"].to_numpy()] == split_codes[edges["b"].to_numpy()]
    edges = edges.sort_values(["b", "same_split", "a"], ascending=[True, False, True])
    edges = edges.drop_duplicates(["b", "same_split"])  # per image: its earliest match in and out of its split

    a, b = edges["a"].to_numpy(), edges["b"].to_numpy()
    paths, names = images["path"].to_numpy(), images["image"].to_numpy()
    exact = content[a] == content[b]
    split_names = images["split"].astype(str).to_numpy()
    return pd.DataFrame({
        "check": np.where(edges["same_split"].to_numpy(), "duplicate-image", "split-leak"),
        "match": np.where(paths[a] == paths[b], SAME_FILE, np.where(exact, EXACT, NEAR)),
        "distance": edges["distance"].to_numpy(),
        "image_id_a": a, "split_a": split_names[a], "image_a": names[a], "path_a": paths[a],
        "image_id_b": b, "split_b": split_names[b], "image_b": names[b], "path_b": paths[b],
    }, columns=PAIR_COLUMNS).sort_values(["check", "image_id_b"], kind="stable").reset_index(drop=True)


def _first_index(keys: np.ndarray) -> np.ndarray:
    """For each key value k (0..max), the position of its first occurrence in `keys`."""
    values, first = np.unique(keys, return_index=True)
    table = np.zeros(int(values.max()) + 1 if len(values) else 0, dtype=np.int64)
    table[values] = first
    return table


def duplicate_image_findings(pairs: pd.DataFrame, options: AuditOptions) -> pd.DataFrame:
    parts = []
    for check in ("duplicate-image", "split-leak"):
        if not options.runs(check):
            continue
        selected = pairs[pairs["check"] == check]
        messages = [_message(check, *row) for row in selected[["match", "distance", "split_a", "image_a",
                                                               "split_b"]].itertuples(index=False)]
        parts.append(finding_rows(check, split=selected["split_b"].to_numpy(), image=selected["image_b"].to_numpy(),
                                  message=messages))
    return concat_findings(parts)


def _message(check: str, match: str, distance: int, split_a: str, image_a: str, split_b: str) -> str:
    if check == "duplicate-image":
        if match == SAME_FILE:
            return f"the same file is listed twice in {split_b}"
        return f"{_likeness(match, distance, image_a)}: the picture counts twice in {split_b}"
    consequence = ("the model trains on it" if split_a == "train"
                   else f"{split_b} results are not independent of {split_a}")
    if match == SAME_FILE:
        return f"the same file is also listed in {split_a}: {consequence}"
    return f"{_likeness(match, distance, image_a)} in {split_a}: {consequence}"


def _likeness(match: str, distance: int, image_a: str) -> str:
    if match == EXACT:
        return f"same bytes as {image_a}"
    return f"near-identical to {image_a} ({distance} of {PHASH_BITS} perceptual-hash bits differ)"


def huge_image_findings(images: pd.DataFrame, options: AuditOptions) -> pd.DataFrame:
    """huge-image: more pixels than `options.max_pixels`, by the header's size (such a file is never decoded in
    full: a 1 MB PNG of 32000x32000 is a gigabyte of pixels)."""
    width, height = images["width"].to_numpy(np.int64), images["height"].to_numpy(np.int64)
    huge = images[(width * height > options.max_pixels) & images["readable"].to_numpy()]
    messages = [f"{w}x{h} pixels ({w * h / 1e6:.0f} megapixels) is above the budget of "
                f"{options.max_pixels / 1e6:g} megapixels (--max-pixels): training decodes it reduced or skips it"
                for w, h in zip(huge["width"].tolist(), huge["height"].tolist())]
    return finding_rows("huge-image", split=huge["split"].astype(str).to_numpy(), image=huge["image"].to_numpy(),
                        message=messages)
