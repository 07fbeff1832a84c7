"""Finding exact and near-duplicate images from the hashes the index already holds.

Shared by the audit (duplicate-image, split-leak) and by `doctor split` (near-duplicates must land in the
same split). Near-duplicates are pairs of 256-bit perceptual hashes within `max_bits` of each other. Comparing
all pairs is quadratic, so candidates come from band bucketing: cut each hash into 16 bands of 16 bits; two
hashes that differ in at most 15 bits agree exactly on at least one band (pigeonhole), so looking only at
pairs that share a band value misses nothing up to 15 bits and skips almost every unrelated pair. At exactly
16 bits a pair is missed only if each band holds exactly one differing bit (probability about 2e-6).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dataset_doctor.dataset.images import hamming_distance, phash_words

# Of 256 bits. Resized (0.4x-1.5x), JPEG q40, PNG or brightened copies of scikit-learn's photos differ in at
# most 8 bits; recoloured crops of one photo in the sample dataset in 24 or more, unrelated photos in ~128.
NEAR_DUPLICATE_MAX_BITS = 16
_BANDS = 16  # 16-bit bands: exact up to 15 bits


def near_duplicate_pairs(phashes: Sequence[str], max_bits: int = NEAR_DUPLICATE_MAX_BITS) -> pd.DataFrame:
    """Pairs (i < j, row positions) whose perceptual hashes differ in at most `max_bits` bits.

    Rows with an empty hash (unreadable images) are never paired.
    """
    if not 0 <= max_bits <= _BANDS:
        raise ValueError(f"max_bits must be in 0..{_BANDS} for band bucketing to find the pairs")
    phashes = list(phashes)
    valid = np.array([bool(h) for h in phashes], dtype=bool)
    words = phash_words(phashes)
    bands = words.view(np.uint16).reshape(len(phashes), -1) if len(phashes) else np.zeros((0, _BANDS), np.uint16)
    rows = np.flatnonzero(valid)
    found_i, found_j = [], []
    for band in range(bands.shape[1]):
        first, second = _equal_value_pairs(bands[rows, band])
        i, j = rows[first], rows[second]
        close = hamming_distance(words[i], words[j]) <= max_bits  # filter per band: memory stays small
        found_i.append(i[close])
        found_j.append(j[close])
    count = len(phashes)
    keys = np.unique(np.concatenate(found_i) * count + np.concatenate(found_j)) if rows.size \
        else np.zeros(0, np.int64)
    i, j = keys // max(count, 1), keys % max(count, 1)
    return pd.DataFrame({"i": i, "j": j, "distance": hamming_distance(words[i], words[j])})


def _equal_value_pairs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of positions (a < b) holding equal values, vectorised: sorted stably, each element is paired
    with the 1st, 2nd, ... element after it while those are still in its run of equal values."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    new_run = np.r_[True, sorted_values[1:] != sorted_values[:-1]] if len(values) else np.zeros(0, bool)
    run_id = np.cumsum(new_run) - 1
    run_end = np.r_[np.flatnonzero(new_run)[1:], len(values)]
    after_me = run_end[run_id] - 1 - np.arange(len(values))  # later members of my run
    firsts, seconds = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    active = np.flatnonzero(after_me > 0)
    offset = 1
    while active.size:
        firsts.append(order[active])
        seconds.append(order[active + offset])
        offset += 1
        active = active[after_me[active] >= offset]
    return np.concatenate(firsts), np.concatenate(seconds)


def duplicate_groups(content_hashes: Sequence[str], phashes: Sequence[str],
                     max_bits: int | None = NEAR_DUPLICATE_MAX_BITS) -> np.ndarray:
    """A group id per row: rows with equal content or (if max_bits is not None) near-equal pixels share one.

    Groups are transitive (A~B and B~C put A, B, C together), which is what keeping duplicates on one side of a
    split needs. Every row gets a group, singletons their own.
    """
    count = len(content_hashes)
    frame = pd.DataFrame({"hash": list(content_hashes)})
    exact = frame[frame["hash"] != ""].groupby("hash").indices
    edges = [(members[0], other) for members in exact.values() for other in members[1:]]
    if max_bits is not None:
        near = near_duplicate_pairs(phashes, max_bits)
        edges.extend(zip(near["i"].tolist(), near["j"].tolist()))
    if not edges:
        return np.arange(count)
    first, second = np.array(edges, dtype=np.int64).T
    graph = coo_matrix((np.ones(len(first)), (first, second)), shape=(count, count))
    return connected_components(graph, directed=False)[1]
