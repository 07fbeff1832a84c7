"""Iterative stratification by instance counts: which split each unit (image or duplicate group) goes to.

Sechidis, Tsoumakas & Vlahavas, "On the Stratification of Multi-Label Data", ECML PKDD 2011, Algorithm 1:
desired per-label counts per split come from the ratios; the label with the fewest remaining examples is
handled first (its examples have the fewest places to go), each of its examples goes to the split that
still wants that label most, ties to the split that wants the most examples, then at random.

Adapted to detection, where an example is a unit with a vector of per-class instance counts:
1. Desired counts are instances (class total x ratio); "rarest" is the class with the fewest unplaced
   instances. Its units are placed largest count first, the bin-packing order: big units go while there is
   room, small ones fill what is left.
2. The split for a unit. The paper's rule (largest remaining desired count of the current label) is the
   greedy step that minimises the squared absolute deviation when every example adds 1 to one label. With
   instance counts, unequal split sizes and units carrying several classes it goes wrong twice: it starves
   small splits (a class with 5 instances in two images of 3 and 2 goes 5/0 at 0.8/0.2), and it ignores the
   unit's other classes (an image with 1 rare and 8 common objects sent to val for the rare one overfills val
   with the common one). So a unit goes where it least increases the deviation of the per-class shares from
   the ratios, over all its classes:  D = sum_k sum_j (share_jk - r_j)^2 / r_j, share_jk = p_jk / N_k.
   With t_jk = r_j N_k desired and d_jk = t_jk - p_jk still wanted, adding n_k instances to split j changes D
   by sum_k n_k (n_k - 2 d_jk) / (t_jk N_k). Ties: most images still wanted, then random (the paper's rules).
   Dividing by N_k weighs every class equally, as a user reads the table: by share, not by count.
3. Backgrounds (units without an instance) are split by the same rule on their own image counts, so each
   split gets its share of them (they teach the detector what is not an object).
4. A repair pass, for each class missing from a split (rarest first): a unit holding it moves there, provided
   the move takes no class out of the split it leaves; among those, the one bringing the most missing classes
   at once, then the one increasing D (images included) least. A val split without a class cannot measure its
   AP, which matters more than a slightly off ratio.
5. A few passes of single-unit moves that lower D and uncover nothing (a local search after the greedy, as
   bin-packing heuristics do): the greedy decides each unit once, knowing only what was placed before it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

_TIE = 1e-9  # scores closer than this are ties
IMPROVEMENT_PASSES = 3  # local-search passes over the labeled units; most of the gain comes in the first
SETTLED_SHARE = 0.001  # a class whose shares are all this close to the ratios is left alone by the local search


class _Placement:
    """Running totals while units are placed: instances per split and class, images per split."""

    def __init__(self, counts: sparse.csr_matrix, ratios: np.ndarray, sizes: np.ndarray):
        self.counts = counts
        self.ratios = ratios
        self.sizes = sizes
        self.split_of = np.full(counts.shape[0], -1, dtype=np.int64)
        self.totals = np.asarray(counts.sum(axis=0), dtype=np.float64).ravel()  # instances per class
        self.target = ratios[:, None] * self.totals[None, :]  # (splits, classes) desired instances
        self.placed = np.zeros_like(self.target)
        self.image_target = ratios * float(sizes.sum())
        self.images_placed = np.zeros(len(ratios))

    def row(self, unit: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.counts.indptr[unit], self.counts.indptr[unit + 1]
        return self.counts.indices[start:end], self.counts.data[start:end].astype(np.float64)

    def assign(self, unit: int, split: int) -> None:
        classes, values = self.row(unit)
        previous = self.split_of[unit]
        if previous >= 0:
            self.placed[previous, classes] -= values
            self.images_placed[previous] -= self.sizes[unit]
        self.placed[split, classes] += values
        self.images_placed[split] += self.sizes[unit]
        self.split_of[unit] = split


def iterative_stratification(counts: np.ndarray | sparse.spmatrix, ratios: Sequence[float],
                             seed: int | np.random.Generator = 0, sizes: np.ndarray | None = None) -> np.ndarray:
    """The split (position in `ratios`) of each unit.

    counts: (units, classes) instance counts, dense or sparse. ratios: positive, summing to 1.
    sizes: images per unit (default 1), for the image-count tie-break and the background split.
    The same inputs and seed give the same result.
    """
    matrix = sparse.csr_matrix(counts, dtype=np.int64)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    if matrix.nnz and matrix.data.min() < 0:
        raise ValueError("instance counts must be non-negative")
    ratio_array = np.asarray(ratios, dtype=np.float64)
    if ratio_array.ndim != 1 or len(ratio_array) < 2 or (ratio_array <= 0).any() or \
            abs(ratio_array.sum() - 1) > 1e-6:
        raise ValueError(f"ratios must be at least two positive numbers summing to 1, got {list(ratios)}")
    units = matrix.shape[0]
    size_array = np.ones(units, dtype=np.int64) if sizes is None else np.asarray(sizes, dtype=np.int64)
    if size_array.shape != (units,) or (size_array < 1).any():
        raise ValueError("sizes must give a positive image count per unit")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    placement = _Placement(matrix, ratio_array, size_array)
    labeled = matrix.getnnz(axis=1) > 0
    _place_labeled(placement, labeled, rng)
    _place_backgrounds(placement, np.flatnonzero(~labeled), rng)
    _cover_missing_classes(placement, rng)
    _improve_by_moves(placement, np.flatnonzero(labeled), rng)
    return placement.split_of


def _cheapest_split(cost: np.ndarray, images_wanted: np.ndarray, rng: np.random.Generator) -> int:
    """The split of lowest cost; ties: the one wanting the most images, then random."""
    best = np.flatnonzero(cost <= cost.min() + _TIE)
    if len(best) > 1:
        wanted = images_wanted[best]
        best = best[wanted >= wanted.max() - _TIE]
    return int(best[0] if len(best) == 1 else rng.choice(best))


def _share_cost(placed: np.ndarray, target: np.ndarray, totals: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Change of sum (share - ratio)^2 / ratio from adding `delta` (per class, last axis) on top of `placed`.

    (p + delta - t)^2 - (p - t)^2 = delta (delta + 2 (p - t)), over t N (see the module docstring).
    """
    return (delta * (delta + 2 * (placed - target)) / (target * totals)).sum(axis=-1)


def _place_labeled(placement: _Placement, labeled: np.ndarray, rng: np.random.Generator) -> None:
    by_class = placement.counts.tocsc()
    unplaced = labeled.copy()
    remaining = placement.totals.copy()  # instances in unplaced units
    image_target = placement.ratios * float(placement.sizes[labeled].sum())
    while True:
        active = np.flatnonzero(remaining > 0)
        if not len(active):
            return
        fewest = remaining[active].min()
        rarest = int(rng.choice(active[remaining[active] == fewest]))
        start, end = by_class.indptr[rarest], by_class.indptr[rarest + 1]
        units, amounts = by_class.indices[start:end], by_class.data[start:end]
        keep = unplaced[units]
        units, amounts = units[keep], amounts[keep]
        order = np.lexsort((rng.random(len(units)), -amounts))  # largest first, equal amounts in random order
        for unit in units[order].tolist():
            classes, values = placement.row(unit)
            cost = _share_cost(placement.placed[:, classes], placement.target[:, classes],
                               placement.totals[classes], values)
            placement.assign(unit, _cheapest_split(cost, image_target - placement.images_placed, rng))
            unplaced[unit] = False
            remaining[classes] -= values


def _place_backgrounds(placement: _Placement, units: np.ndarray, rng: np.random.Generator) -> None:
    if not len(units):
        return
    sizes = placement.sizes[units].astype(np.float64)
    total = np.array([sizes.sum()])
    target = (placement.ratios * total)[:, None]
    placed = np.zeros_like(target)
    for position in np.lexsort((rng.random(len(units)), -sizes)).tolist():
        cost = _share_cost(placed, target, total, np.array([sizes[position]]))
        split = _cheapest_split(cost, placement.image_target - placement.images_placed, rng)
        placement.assign(int(units[position]), split)
        placed[split] += sizes[position]


def _cover_missing_classes(placement: _Placement, rng: np.random.Generator) -> None:
    """Move one unit into each split that lacks a class, where a move exists that uncovers nothing else."""
    by_class = placement.counts.tocsc()
    totals = placement.totals
    for cls in np.argsort(totals, kind="stable").tolist():  # rarest first
        if totals[cls] == 0:
            continue
        for split in np.flatnonzero(placement.placed[:, cls] == 0).tolist():
            units = by_class.indices[by_class.indptr[cls]:by_class.indptr[cls + 1]]
            best_unit, best_key = -1, (0, np.inf)
            for unit in rng.permutation(units).tolist():  # random order: equal keys resolve by seed
                cost = _move_changes(placement, unit)[split]
                if cost == np.inf:
                    continue
                # A unit that also brings other missing classes into the split comes first, then the cheapest.
                classes, _ = placement.row(unit)
                key = (-int((placement.placed[split, classes] == 0).sum()), cost)
                if key[0] < best_key[0] or (key[0] == best_key[0] and cost < best_key[1] - _TIE):
                    best_unit, best_key = unit, key
            if best_unit >= 0:
                placement.assign(best_unit, split)


def _improve_by_moves(placement: _Placement, units: np.ndarray, rng: np.random.Generator) -> None:
    """Move single labeled units to the split where D (images included) drops most, uncovering no class."""
    for _ in range(IMPROVEMENT_PASSES):
        moved = 0
        for unit in rng.permutation(_unsettled_units(placement, units)).tolist():
            change = _move_changes(placement, unit)
            best = int(np.argmin(change))
            if change[best] < -_TIE:
                placement.assign(unit, best)
                moved += 1
        if not moved:
            return


def _move_changes(placement: _Placement, unit: int) -> np.ndarray:
    """Per split, the change of D (instances, and the image count as one more class) from moving `unit` there.

    inf for the unit's own split, and for every split when leaving would take a class out of its split.
    """
    source = placement.split_of[unit]
    classes, values = placement.row(unit)
    placed, target, totals = placement.placed[:, classes], placement.target[:, classes], placement.totals[classes]
    if (placed[source] - values <= 0).any():
        return np.full(len(placement.ratios), np.inf)
    size, images = np.array([float(placement.sizes[unit])]), np.array([float(placement.sizes.sum())])
    images_placed, image_target = placement.images_placed[:, None], placement.image_target[:, None]
    arrive = _share_cost(placed, target, totals, values) + _share_cost(images_placed, image_target, images, size)
    leave = _share_cost(placed[source], target[source], totals, -values) + \
        _share_cost(images_placed[source], image_target[source], images, -size)
    change = arrive + leave
    change[source] = np.inf
    return change


def _unsettled_units(placement: _Placement, units: np.ndarray) -> np.ndarray:
    """Units holding a class that moves could still improve: off by at least half an instance and by more than
    SETTLED_SHARE in some split. On large datasets the greedy settles almost every class, which keeps the
    local search to the few units that need it."""
    gap = np.abs(placement.placed - placement.target)
    share_gap = gap / np.maximum(placement.totals, 1)
    unsettled = ((gap >= 0.5) & (share_gap > SETTLED_SHARE)).any(axis=0)
    holds = np.asarray(placement.counts[units][:, unsettled].sum(axis=1)).ravel() > 0
    return units[holds]
