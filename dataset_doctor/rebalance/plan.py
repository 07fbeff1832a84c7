"""How many extra copies of each train image to make so that rare classes reach a target instance count.

The input is the count matrix `counts[i, k]` = usable boxes of class k in train image i. Copying image i once adds
its whole row, so the classes co-occur: an image with one rare box and twenty common ones adds twenty common
boxes. Three ways of choosing the copies are computed on the same matrix so they can be compared:

- plan (the one we materialise): an integer program solved with HiGHS through `scipy.optimize.milp`.
  Every class below the target must reach it (or, when `max_copies` makes that impossible, get as far as the cap
  allows), using no more added images than the naive baseline, while adding as little *surplus* as possible:
  instances of classes already at or above the target, plus instances of rare classes beyond the target. Each
  surplus instance costs max(before_c, target) / target: one more box of a class already ten times the target
  unbalances the data more than one more box of a class at the target, and the largest class is what sets the
  max/min ratio. A tiny cost per copy breaks ties towards fewer images.
- naive: rarest class first, copy the images holding the class one after the other (round-robin, under the same
  cap) until the class reaches the target. It ignores what else is in the pictures, so it overshoots.
- repeat-factor: LVIS repeat-factor sampling (Gupta et al., "LVIS", CVPR 2019, section 4.3): class factor
  r_c = max(1, sqrt(t / f_c)), f_c the fraction of train images containing c; image factor r_i = max over its
  classes of r_c, so the image is seen r_i times per epoch in expectation, i.e. r_i - 1 expected extra copies
  (capped at `max_copies`). The paper fixes t = 0.001 for LVIS; here t is chosen by bisection so the expected
  number of added images equals the plan's, which compares the two at the same image budget.

Instance counts of the repeat-factor baseline are expectations, hence floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix, hstack, identity

from dataset_doctor.rebalance import DEFAULT_MAX_COPIES

COPY_TIE_BREAK = 0.01  # cost of one extra image, in surplus instances: fewer images only when surplus ties
SOLVER_OPTIONS = {"time_limit": 60.0, "mip_rel_gap": 1e-4}  # within 0.01% of the optimum; the limit is a safety valve


@dataclass(frozen=True)
class Outcome:
    """What one way of copying train images does to the class counts."""

    method: str  # "plan", "naive" or "repeat-factor"
    copies: np.ndarray  # extra copies per image (expected, fractional, for repeat-factor)
    instances: np.ndarray  # per-class train instances after copying
    note: str = ""  # how the method was parameterised or solved
    params: dict[str, float] = field(default_factory=dict)  # e.g. the repeat-factor threshold t

    @property
    def added_images(self) -> float:
        return float(self.copies.sum())


@dataclass(frozen=True)
class RebalancePlan:
    """The plan and both baselines for one target, with what limits the plan."""

    target: int
    max_copies: int
    before: np.ndarray  # per-class instances now
    goals: np.ndarray  # per-class count the plan must reach: the target, or what the cap allows, or `before`
    plan: Outcome
    naive: Outcome
    repeat_factor: Outcome

    @property
    def outcomes(self) -> tuple[Outcome, Outcome, Outcome]:
        return self.plan, self.naive, self.repeat_factor

    @property
    def capped_classes(self) -> np.ndarray:
        """Classes below the target that cannot reach it because of `max_copies` (absent classes excluded)."""
        return np.flatnonzero((self.before > 0) & (self.goals < self.target))

    @property
    def absent_classes(self) -> np.ndarray:
        """Classes without a train instance: no copy can add one."""
        return np.flatnonzero(self.before == 0)

    def ratio(self, instances: np.ndarray) -> float:
        return imbalance_ratio(instances, self.before > 0)

    def surplus(self, outcome: Outcome) -> float:
        """Instances added beyond what the target asks: to classes already at the target, or past it."""
        return surplus_instances(self.before, outcome.instances, self.target)


def imbalance_ratio(instances: np.ndarray, present: np.ndarray) -> float:
    """Most / least frequent class among the classes that have instances (absent classes cannot be helped)."""
    values = np.asarray(instances, dtype=np.float64)[present]
    return float(values.max() / values.min()) if len(values) and values.min() > 0 else float("nan")


def surplus_instances(before: np.ndarray, after: np.ndarray, target: int) -> float:
    """Sum over classes of the instances added above max(before, target)."""
    return float(np.maximum(np.asarray(after) - np.maximum(before, target), 0).sum())


def surplus_weights(before: np.ndarray, target: int) -> np.ndarray:
    """Cost of one surplus instance per class: max(before, target) / target (1 for classes below the target)."""
    return np.maximum(before, target) / target


def weighted_surplus(before: np.ndarray, after: np.ndarray, target: int) -> float:
    """What the plan minimises (besides its tie-break): surplus instances weighted by surplus_weights."""
    added = np.maximum(np.asarray(after) - np.maximum(before, target), 0)
    return float(added @ surplus_weights(before, target))


def make_rebalance_plan(counts: np.ndarray, target: int, max_copies: int = DEFAULT_MAX_COPIES) -> RebalancePlan:
    """Plan copies for the count matrix (images x classes) and compute both baselines."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 2:
        raise ValueError("counts must be an images x classes matrix")
    if target < 1:
        raise ValueError("target must be at least 1")
    if max_copies < 0:
        raise ValueError("max_copies must be at least 0")
    before = counts.sum(axis=0)
    goals = reachable_goals(counts, target, max_copies)
    naive = naive_outcome(counts, target, max_copies)
    plan = optimal_outcome(counts, target, max_copies, image_budget=int(naive.copies.sum()))
    repeat_factor = repeat_factor_outcome(counts, max_copies, image_budget=plan.added_images)
    return RebalancePlan(target, max_copies, before, goals, plan, naive, repeat_factor)


def reachable_goals(counts: np.ndarray, target: int, max_copies: int) -> np.ndarray:
    """Per class: the target, capped at what copying every image holding the class `max_copies` times gives.

    Classes at or above the target keep their count (nothing is required of them).
    """
    before = counts.sum(axis=0)
    most = before * (1 + max_copies)  # every image holding the class copied max_copies times
    return np.where(before >= target, before, np.minimum(target, most))


def naive_outcome(counts: np.ndarray, target: int, max_copies: int) -> Outcome:
    """Rarest class first: copy its images round-robin until it reaches the target (or all hit the cap)."""
    copies = np.zeros(len(counts), dtype=np.int64)
    current = counts.sum(axis=0).copy()
    for cls in np.argsort(current, kind="stable"):
        holders = np.flatnonzero(counts[:, cls] > 0)
        while current[cls] < target:
            open_holders = holders[copies[holders] < max_copies]
            if not len(open_holders):
                break
            for image in open_holders:
                copies[image] += 1
                current += counts[image]
                if current[cls] >= target:
                    break
    return Outcome("naive", copies, current, "rarest class first, round-robin over its images")


def optimal_outcome(counts: np.ndarray, target: int, max_copies: int, image_budget: int | None = None) -> Outcome:
    """The integer program of the module docstring, over groups of images with identical count rows.

    Variables: y_g = copies spread over the n_g images of group g (0 <= y_g <= max_copies * n_g, integer) and
    over_r >= 0 = instances of rare class r beyond the target. Minimise (see weighted_surplus)
        sum_g y_g * (sum over sufficient classes s of A_gs * before_s / target + COPY_TIE_BREAK) + sum_r over_r
    subject to, for each rare class r: sum_g A_gr y_g >= goal_r - before_r and sum_g A_gr y_g - over_r <=
    target - before_r, plus sum_g y_g <= image_budget. Copying every useful image max_copies times meets every
    goal (that is how goals are defined), and the naive copies do too, so the program is feasible under the
    naive budget. Grouping identical rows is exact (any y_g can be spread back over the group's images within
    their caps) and shrinks the problem; images without a rare-class box are never worth copying and are left out.
    """
    before = counts.sum(axis=0)
    goals = reachable_goals(counts, target, max_copies)
    rare = np.flatnonzero(goals > before)
    copies = np.zeros(len(counts), dtype=np.int64)
    if not len(rare) or max_copies == 0:
        return Outcome("plan", copies, before.copy(), "nothing to do: every class is at the target")
    useful = np.flatnonzero(counts[:, rare].sum(axis=1) > 0)
    rows, group_of, group_sizes = np.unique(counts[useful], axis=0, return_inverse=True, return_counts=True)
    group_of = group_of.reshape(-1)
    sufficient = np.setdiff1d(np.arange(counts.shape[1]), rare)
    per_copy_cost = rows[:, sufficient] @ surplus_weights(before, target)[sufficient] + COPY_TIE_BREAK

    num_groups, num_rare = len(rows), len(rare)
    rare_rows = csr_matrix(rows[:, rare].T.astype(np.float64))  # num_rare x num_groups
    reach = LinearConstraint(hstack([rare_rows, csr_matrix((num_rare, num_rare))]),
                             lb=(goals - before)[rare], ub=np.inf)
    overshoot = LinearConstraint(hstack([rare_rows, -identity(num_rare)]), lb=-np.inf, ub=(target - before)[rare])
    constraints = [reach, overshoot]
    if image_budget is not None:
        budget_row = hstack([csr_matrix(np.ones((1, num_groups))), csr_matrix((1, num_rare))])
        constraints.append(LinearConstraint(budget_row, lb=-np.inf, ub=image_budget))
    result = milp(
        c=np.concatenate([per_copy_cost, np.ones(num_rare)]),
        constraints=constraints,
        integrality=np.concatenate([np.ones(num_groups), np.zeros(num_rare)]),
        bounds=Bounds(np.zeros(num_groups + num_rare),
                      np.concatenate([max_copies * group_sizes, np.full(num_rare, np.inf)])),
        options=SOLVER_OPTIONS,
    )
    if result.x is None:
        return _fallback_to_naive(counts, target, max_copies, result.message)
    group_copies = np.round(result.x[:num_groups]).astype(np.int64)
    copies[useful] = _spread_over_group(group_copies, group_of, group_sizes)
    note = "integer program (HiGHS)" + ("" if result.success else f", best found: {result.message}")
    return Outcome("plan", copies, before + copies @ counts, note)


def _spread_over_group(group_copies: np.ndarray, group_of: np.ndarray, group_sizes: np.ndarray) -> np.ndarray:
    """Per image copies: each group's copies dealt out evenly, the first images in file order getting one more."""
    order = np.argsort(group_of, kind="stable")
    rank_in_group = np.empty(len(group_of), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(group_sizes)[:-1]])
    rank_in_group[order] = np.arange(len(group_of)) - np.repeat(starts, group_sizes)
    base, extra = np.divmod(group_copies, group_sizes)
    return base[group_of] + (rank_in_group < extra[group_of])


def _fallback_to_naive(counts: np.ndarray, target: int, max_copies: int, reason: str) -> Outcome:
    naive = naive_outcome(counts, target, max_copies)
    return Outcome("plan", naive.copies, naive.instances, f"solver found no solution ({reason}): naive copies used")


def repeat_factor_copies(counts: np.ndarray, threshold: float, max_copies: int) -> np.ndarray:
    """LVIS repeat-factor sampling as expected extra copies per image: min(r_i - 1, max_copies)."""
    present = counts > 0
    image_fraction = present.mean(axis=0) if len(counts) else np.zeros(counts.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        class_factor = np.where(image_fraction > 0, np.sqrt(threshold / image_fraction), 1.0)
    class_factor = np.maximum(1.0, class_factor)
    image_factor = np.where(present, class_factor, 1.0).max(axis=1, initial=1.0)
    return np.minimum(image_factor - 1.0, max_copies)


def repeat_factor_outcome(counts: np.ndarray, max_copies: int, image_budget: float) -> Outcome:
    """Repeat-factor sampling with the threshold t whose expected added images equal `image_budget`.

    Expected added images grow continuously and monotonically with t (from 0 at t = min f_c to every image at
    the cap at t = (max_copies + 1)^2 * max f_c), so bisection finds t.
    """
    before = counts.sum(axis=0).astype(np.float64)
    fractions = (counts > 0).mean(axis=0) if len(counts) else np.zeros(counts.shape[1])
    low, high = 0.0, float((max_copies + 1) ** 2 * fractions.max(initial=0.0))
    note = "chosen so its expected added images equal the plan's"
    if image_budget <= 0 or high == 0:
        threshold = 0.0
    elif repeat_factor_copies(counts, high, max_copies).sum() <= image_budget:
        threshold = high
        note = "every image at the cap, still fewer added images than the plan"
    else:
        for _ in range(200):
            middle = (low + high) / 2
            if repeat_factor_copies(counts, middle, max_copies).sum() < image_budget:
                low = middle
            else:
                high = middle
            if high - low <= 1e-12 * high:
                break
        threshold = high
    copies = repeat_factor_copies(counts, threshold, max_copies)
    return Outcome("repeat-factor", copies, before + copies @ counts, f"t = {threshold:.4g}, {note}",
                   {"threshold": threshold})
