"""Choosing between image copies and pasted instances, and which instance goes into which host.

`doctor rebalance --method images|paste|auto`. The integer program of plan.py gains one variable per rare
class: z_r, the number of pasted instances of class r. A paste adds one box of r plus, on average, the
neighbours its context margin carries (`paste_effects`, measured on the train boxes), and nothing else: the
host is an image already in train. So where the frequent class is in every picture, a paste adds the rare box
without twenty common ones, which no choice of image copies can do.

    minimise   sum_g y_g * cost_g + sum_r z_r * (E_r,sufficient . w + PASTE_COST) + sum_r over_r
    subject to the reach and overshoot rows of plan.py with E^T z added, sum_g y_g <= naive images,
               z_r <= max_copies * n_r (each source instance pasted at most max_copies times),
               sum_r z_r <= max_per_host (--max-pastes) * train images.

`images` fixes z = 0 (plan.py's plan); `paste` fixes y = 0; `auto` solves both. PASTE_COST makes a real
picture win a tie: a paste is chosen only where it saves surplus.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import csr_matrix, hstack, identity, vstack

from dataset_doctor.rebalance.paste import CONTEXT_MARGIN, MIN_VISIBILITY
from dataset_doctor.rebalance.plan import (
    COPY_TIE_BREAK,
    SOLVER_OPTIONS,
    RebalancePlan,
    _spread_over_group,
    reachable_goals,
    surplus_instances,
    surplus_weights,
)

METHODS = ("images", "paste", "auto")
PASTE_COST = 0.1  # cost of one paste in surplus instances: a real picture wins ties (0.5 cost the sample 1.49 -> 1.72)
MAX_PASTES_PER_HOST = 5  # instances pasted into one train image at most (--max-pastes): it should still look real


@dataclass(frozen=True)
class ObjectOutcome:
    """One method's choice: image copies per source image and pasted instances per class."""

    method: str  # images, paste or auto
    copies: np.ndarray  # (images,) extra copies per source image
    pastes: np.ndarray  # (classes,) pasted instances per class
    instances: np.ndarray  # (classes,) expected train instances after both (float: carried neighbours)
    note: str = ""

    @property
    def added_images(self) -> int:
        return int(self.copies.sum())


@dataclass(frozen=True)
class MethodComparison:
    """images, paste and auto for one target, and which one is written."""

    target: int
    before: np.ndarray
    outcomes: dict[str, ObjectOutcome]
    chosen: str

    def ratio(self, instances: np.ndarray) -> float:
        present = self.before > 0
        values = np.asarray(instances, dtype=np.float64)[present]
        return float(values.max() / values.min()) if len(values) and values.min() > 0 else float("nan")

    def surplus(self, instances: np.ndarray) -> float:
        return surplus_instances(self.before, instances, self.target)


def paste_effects(boxes: pd.DataFrame, num_classes: int) -> np.ndarray:
    """E[r, k]: the expected boxes of class k that one paste of a class-r instance adds (itself included).

    `boxes` has position, cls, cx, cy, w, h (normalised): each instance's crop (the box plus CONTEXT_MARGIN)
    carries every other box of its image at least MIN_VISIBILITY inside it, as paste.py does.
    """
    effects = np.zeros((num_classes, num_classes))
    totals = np.zeros(num_classes)
    for _, group in boxes.groupby("position", sort=False):
        values = group[["cx", "cy", "w", "h"]].to_numpy(np.float64)
        classes = group["cls"].to_numpy(np.int64)
        x1, y1 = values[:, 0] - values[:, 2] / 2, values[:, 1] - values[:, 3] / 2
        x2, y2 = values[:, 0] + values[:, 2] / 2, values[:, 1] + values[:, 3] / 2
        mx, my = values[:, 2] * CONTEXT_MARGIN, values[:, 3] * CONTEXT_MARGIN
        area = np.maximum(values[:, 2] * values[:, 3], 1e-12)
        for i, cls in enumerate(classes):
            inter_w = np.clip(np.minimum(x2, x2[i] + mx[i]) - np.maximum(x1, x1[i] - mx[i]), 0, None)
            inter_h = np.clip(np.minimum(y2, y2[i] + my[i]) - np.maximum(y1, y1[i] - my[i]), 0, None)
            carried = inter_w * inter_h / area >= MIN_VISIBILITY
            carried[i] = True
            effects[cls] += np.bincount(classes[carried], minlength=num_classes)
            totals[cls] += 1
    present = totals > 0
    effects[present] /= totals[present, None]
    effects[~present] = np.eye(num_classes)[~present]
    return effects


def compare_methods(counts: np.ndarray, effects: np.ndarray, image_plan: RebalancePlan,
                    method: str = "auto", max_per_host: int = MAX_PASTES_PER_HOST) -> MethodComparison:
    """images (plan.py's plan), paste and auto side by side; `method` names the one to write."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    target, max_copies = image_plan.target, image_plan.max_copies
    budget = int(image_plan.naive.copies.sum())
    images = image_plan.plan
    outcomes = {
        "images": ObjectOutcome("images", images.copies, np.zeros(counts.shape[1], dtype=np.int64),
                                images.instances.astype(np.float64), images.note),
        "paste": object_outcome(counts, effects, target, max_copies, "paste", budget, max_per_host),
        "auto": object_outcome(counts, effects, target, max_copies, "auto", budget, max_per_host),
    }
    return MethodComparison(target, counts.sum(axis=0), outcomes, method)


def object_outcome(counts: np.ndarray, effects: np.ndarray, target: int, max_copies: int, method: str,
                   image_budget: int, max_per_host: int = MAX_PASTES_PER_HOST) -> ObjectOutcome:
    """The integer program of the module docstring for `paste` (no image copies) or `auto` (both)."""
    counts = np.asarray(counts, dtype=np.int64)
    before = counts.sum(axis=0)
    num_classes = counts.shape[1]
    goals = reachable_goals(counts, target, max_copies)
    rare = np.flatnonzero(goals > before)
    copies = np.zeros(len(counts), dtype=np.int64)
    pastes = np.zeros(num_classes, dtype=np.int64)
    if not len(rare) or max_copies == 0:
        return ObjectOutcome(method, copies, pastes, before.astype(np.float64), "nothing to do")
    weights = surplus_weights(before, target)
    sufficient = np.setdiff1d(np.arange(num_classes), rare)

    if method == "auto":
        useful = np.flatnonzero(counts[:, rare].sum(axis=1) > 0)
        rows, group_of, group_sizes = np.unique(counts[useful], axis=0, return_inverse=True, return_counts=True)
        group_of = group_of.reshape(-1)
    else:
        useful, rows, group_of, group_sizes = np.zeros(0, np.int64), np.zeros((0, num_classes)), None, np.zeros(0)
    paste_rows = effects[rare]  # one paste variable per rare class
    num_groups, num_rare = len(rows), len(rare)
    actions = np.vstack([rows, paste_rows]) if num_groups else paste_rows
    cost = actions[:, sufficient] @ weights[sufficient]
    cost = cost + np.concatenate([np.full(num_groups, COPY_TIE_BREAK), np.full(num_rare, PASTE_COST)])
    rare_cols = csr_matrix(actions[:, rare].T)  # num_rare x actions
    num_actions = num_groups + num_rare
    reach = LinearConstraint(hstack([rare_cols, csr_matrix((num_rare, num_rare))]),
                             lb=(goals - before)[rare], ub=np.inf)
    overshoot = LinearConstraint(hstack([rare_cols, -identity(num_rare)]), lb=-np.inf, ub=(target - before)[rare])
    image_row = np.concatenate([np.ones(num_groups), np.zeros(num_rare + num_rare)])
    paste_row = np.concatenate([np.zeros(num_groups), np.ones(num_rare), np.zeros(num_rare)])
    limits = LinearConstraint(vstack([csr_matrix(image_row), csr_matrix(paste_row)]), lb=-np.inf,
                              ub=[image_budget, max_per_host * len(counts)])
    upper = np.concatenate([max_copies * group_sizes, max_copies * before[rare], np.full(num_rare, np.inf)])
    result = milp(c=np.concatenate([cost, np.ones(num_rare)]), constraints=[reach, overshoot, limits],
                  integrality=np.concatenate([np.ones(num_actions), np.zeros(num_rare)]),
                  bounds=Bounds(np.zeros(num_actions + num_rare), upper), options=SOLVER_OPTIONS)
    if result.x is None:  # the expected neighbours can make the overshoot rows infeasible: relax them
        result = milp(c=np.concatenate([cost, np.ones(num_rare)]), constraints=[reach, limits],
                      integrality=np.concatenate([np.ones(num_actions), np.zeros(num_rare)]),
                      bounds=Bounds(np.zeros(num_actions + num_rare), upper), options=SOLVER_OPTIONS)
    if result.x is None:
        return ObjectOutcome(method, copies, pastes, before.astype(np.float64),
                             f"solver found no solution ({result.message})")
    chosen = np.round(result.x[:num_actions]).astype(np.int64)
    if num_groups:
        copies[useful] = _spread_over_group(chosen[:num_groups], group_of, group_sizes)
    pastes[rare] = chosen[num_groups:]
    instances = before + copies @ counts + pastes @ effects
    note = "integer program (HiGHS)" + ("" if result.success else f", best found: {result.message}")
    return ObjectOutcome(method, copies, pastes, instances, note)


@dataclass(frozen=True)
class PasteJob:
    """One pasted instance: which source box goes into which host image, with its own seed."""

    host: int  # position of the host in TrainSources.images
    source: int  # position of the source image
    box: int  # row of the instance in TrainSources.boxes
    number: int  # the k-th paste into this host (0-based): the order they are applied in
    seed: int


def assign_pastes(boxes: pd.DataFrame, num_images: int, pastes: np.ndarray, seed: int,
                  max_per_host: int = MAX_PASTES_PER_HOST) -> list[PasteJob]:
    """Which instances are pasted where, spread and deterministic for `seed`.

    Per class, its instances in a seeded random order, used round-robin: each is pasted at most
    ceil(z_r / n_r) times, and many distinct sources come before a second copy of one. Hosts: every train image
    in order of fewest boxes first (backgrounds first; ties in seeded random order), dealt one paste at a time
    round-robin with at most `max_per_host` each, never the paste's own source image.
    """
    rng = np.random.default_rng([seed, 20])
    box_positions = boxes["position"].to_numpy()
    chosen: list[int] = []
    for cls in np.flatnonzero(pastes > 0):
        rows = np.flatnonzero(boxes["cls"].to_numpy() == cls)
        order = rows[rng.permutation(len(rows))]
        chosen += [int(order[j % len(order)]) for j in range(int(pastes[cls]))]
    chosen = [chosen[i] for i in rng.permutation(len(chosen))]  # classes interleaved over the hosts
    objects = np.bincount(box_positions, minlength=num_images)
    hosts = np.lexsort((rng.random(num_images), objects))
    load = np.zeros(num_images, dtype=np.int64)
    jobs: list[PasteJob] = []
    cursor = 0
    for row in chosen:
        source = int(box_positions[row])
        for step in range(num_images):
            host = int(hosts[(cursor + step) % num_images])
            if host != source and load[host] < max_per_host:
                cursor = (cursor + step + 1) % num_images
                break
        else:
            continue  # every other image is full: the plan's host limit makes this unreachable
        job_seed = int(rng.integers(2**31))
        jobs.append(PasteJob(host, source, row, int(load[host]), job_seed))
        load[host] += 1
    return jobs
