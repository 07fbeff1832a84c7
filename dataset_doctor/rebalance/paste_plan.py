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

Box sizes (auto): copying a few images many times replaces a class's size distribution by those images' box
sizes, and the audit of the output then finds a train/val scale shift the source lacks (the sample at 1200:
ten images without 'zero' copied 100 times each moved 'four's size CDF by KS D = 0.27). A paste's size is drawn
from the class's own train sizes, so it leaves the CDF where it was. With the box sizes given (`sizes`), auto
bounds the KS distance between each class's train sizes after and before at SIZE_GRID quantiles of the
before-sizes: with F_k the before-CDF, N_k the count after and dev_gk(q) = (boxes of class k in a group-g image
with area <= q) - A_gk F_k(q), the gap at q is sum_g y_g dev_gk(q) / N_k, and
               |sum_g y_g dev_gk(q)| <= SIZE_SHIFT_BOUND * N_k   (N_k is linear in y and z),
which pastes alone always meet, so auto stays feasible wherever paste is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix, csr_matrix, hstack, identity, vstack

from dataset_doctor.rebalance import MAX_PASTES_PER_HOST
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
SIZE_SHIFT_BOUND = 0.12  # auto: KS distance allowed between a class's train box sizes after and before
SIZE_GRID = np.linspace(0.05, 0.95, 19)  # quantiles of the before-sizes where that distance is bounded
SIZED_SOLVER_OPTIONS = {"time_limit": 60.0, "mip_rel_gap": 1e-2}  # the size rows make 1e-4 take minutes


def size_deviations(boxes: pd.DataFrame) -> pd.DataFrame:
    """Per box: position, cls and dev_0..: how it moves its class's size CDF at each SIZE_GRID quantile.

    Sizes are normalised box areas w * h (what pasted sizes are drawn from). One copy of image i moves class
    k's CDF at quantile q by the sum of dev over its class-k boxes: 1[area <= q] - F_k(q) each (see above).
    """
    area = (boxes["w"] * boxes["h"]).to_numpy(np.float64)
    classes = boxes["cls"].to_numpy(np.int64)
    dev = np.zeros((len(boxes), len(SIZE_GRID)))
    for k in np.unique(classes):
        mine = classes == k
        values = np.sort(area[mine])
        grid = np.quantile(values, SIZE_GRID)
        expected = np.searchsorted(values, grid, side="right") / len(values)  # F_k at the grid points
        dev[mine] = (area[mine][:, None] <= grid[None, :]) - expected[None, :]
    out = pd.DataFrame(dev, columns=[f"dev_{j}" for j in range(len(SIZE_GRID))])
    out.insert(0, "cls", classes)
    out.insert(0, "position", boxes["position"].to_numpy(np.int64))
    return out


@dataclass(frozen=True)
class ObjectOutcome:
    """One method's choice: image copies per source image and pasted instances per class."""

    method: str  # images, paste or auto
    copies: np.ndarray  # (images,) extra copies per source image
    pastes: np.ndarray  # (classes,) pasted instances per class
    instances: np.ndarray  # (classes,) expected train instances after both (float: carried neighbours)
    note: str = ""
    clean_pastes: np.ndarray | None = None  # (classes,) of `pastes`, how many from clean instances (PasteSplit)

    @property
    def added_images(self) -> int:
        return int(self.copies.sum())


def paste_goals(outcome: ObjectOutcome, before: np.ndarray, target: int) -> np.ndarray:
    """The train instances a method promises the classes below `target` (its expected count, at most the
    target; 0 for the others): what the write tops up to when pastes hide or crops cut some of them."""
    promised = np.minimum(np.floor(np.asarray(outcome.instances, dtype=np.float64) + 1e-6), target).astype(np.int64)
    return np.where(np.asarray(before) < target, promised, 0)


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


def carried_classes(boxes: pd.DataFrame, num_classes: int) -> np.ndarray:
    """(boxes, classes): per box row, the boxes of each class its paste brings (itself included).

    `boxes` has position, cls, cx, cy, w, h (normalised): each instance's crop (the box plus CONTEXT_MARGIN)
    carries every other box of its image at least MIN_VISIBILITY inside it, as paste.py does.
    """
    carried_counts = np.zeros((len(boxes), num_classes))
    rows = np.arange(len(boxes))
    for _, group in pd.DataFrame({"position": boxes["position"].to_numpy(), "row": rows}).groupby(
            "position", sort=False):
        members = group["row"].to_numpy()
        values = boxes[["cx", "cy", "w", "h"]].to_numpy(np.float64)[members]
        classes = boxes["cls"].to_numpy(np.int64)[members]
        x1, y1 = values[:, 0] - values[:, 2] / 2, values[:, 1] - values[:, 3] / 2
        x2, y2 = values[:, 0] + values[:, 2] / 2, values[:, 1] + values[:, 3] / 2
        mx, my = values[:, 2] * CONTEXT_MARGIN, values[:, 3] * CONTEXT_MARGIN
        area = np.maximum(values[:, 2] * values[:, 3], 1e-12)
        for i, row in enumerate(members):
            inter_w = np.clip(np.minimum(x2, x2[i] + mx[i]) - np.maximum(x1, x1[i] - mx[i]), 0, None)
            inter_h = np.clip(np.minimum(y2, y2[i] + my[i]) - np.maximum(y1, y1[i] - my[i]), 0, None)
            carried = inter_w * inter_h / area >= MIN_VISIBILITY
            carried[i] = True
            carried_counts[row] = np.bincount(classes[carried], minlength=num_classes)
    return carried_counts


def _mean_rows(carried: np.ndarray, classes: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the mean carried row of these instances (the unit row where there is none) and their number."""
    totals = np.bincount(classes, minlength=num_classes).astype(np.float64)
    effects = np.zeros((num_classes, num_classes))
    np.add.at(effects, classes, carried)
    present = totals > 0
    effects[present] /= totals[present, None]
    effects[~present] = np.eye(num_classes)[~present]
    return effects, totals.astype(np.int64)


def paste_effects(boxes: pd.DataFrame, num_classes: int) -> np.ndarray:
    """E[r, k]: the expected boxes of class k that one paste of a class-r instance adds (itself included)."""
    carried = carried_classes(boxes, num_classes)
    return _mean_rows(carried, boxes["cls"].to_numpy(np.int64), num_classes)[0]


@dataclass(frozen=True)
class PasteSplit:
    """A class's instances split by what their crop brings: alone ("clean") or with neighbours ("carrying").

    Why: on aquarium a shark's crop brings 0.39 fish on average, so sharks pasted at random inflate the fish;
    sharks whose crop holds no other box add a shark and nothing else. A paste's size is drawn from the whole
    class's train sizes whichever instance gives the pixels, so preferring clean sources does not bias sizes.
    """

    clean: np.ndarray  # (classes,) instances whose crop carries no other box
    carrying: np.ndarray  # (classes,) the others
    carry_effects: np.ndarray  # (classes, classes) mean boxes a carrying instance's paste adds (itself included)


def paste_split(boxes: pd.DataFrame, num_classes: int) -> PasteSplit:
    carried = carried_classes(boxes, num_classes)
    classes = boxes["cls"].to_numpy(np.int64)
    alone = carried.sum(axis=1) <= 1
    clean = np.bincount(classes[alone], minlength=num_classes)
    effects, carrying = _mean_rows(carried[~alone], classes[~alone], num_classes)
    return PasteSplit(clean, carrying, effects)


def clean_instances(boxes: pd.DataFrame, num_classes: int) -> np.ndarray:
    """(boxes,) bool: the instance's crop carries no other box."""
    return carried_classes(boxes, num_classes).sum(axis=1) <= 1


def compare_methods(counts: np.ndarray, effects: np.ndarray, image_plan: RebalancePlan,
                    method: str = "auto", max_per_host: int = MAX_PASTES_PER_HOST,
                    sizes: pd.DataFrame | None = None, split: PasteSplit | None = None) -> MethodComparison:
    """images (plan.py's plan), paste and auto side by side; `method` names the one to write.

    `sizes` (size_deviations): auto keeps every class's box-size distribution within SIZE_SHIFT_BOUND.
    `split` (paste_split): paste and auto choose between clean and carrying instances instead of `effects`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    target, max_copies = image_plan.target, image_plan.max_copies
    budget = int(image_plan.naive.copies.sum())
    images = image_plan.plan
    outcomes = {
        "images": ObjectOutcome("images", images.copies, np.zeros(counts.shape[1], dtype=np.int64),
                                images.instances.astype(np.float64), images.note),
        "paste": object_outcome(counts, effects, target, max_copies, "paste", budget, max_per_host, split=split),
        "auto": object_outcome(counts, effects, target, max_copies, "auto", budget, max_per_host, sizes, split),
    }
    return MethodComparison(target, counts.sum(axis=0), outcomes, method)


def plan_methods(boxes: pd.DataFrame, counts: np.ndarray, image_plan: RebalancePlan, method: str = "auto",
                 max_per_host: int = MAX_PASTES_PER_HOST) -> MethodComparison:
    """What `doctor rebalance` plans: compare_methods with the size bound (auto) and clean/carrying sources."""
    num_classes = counts.shape[1]
    return compare_methods(counts, paste_effects(boxes, num_classes), image_plan, method, max_per_host,
                           sizes=size_deviations(boxes), split=paste_split(boxes, num_classes))


def object_outcome(counts: np.ndarray, effects: np.ndarray, target: int, max_copies: int, method: str,
                   image_budget: int, max_per_host: int = MAX_PASTES_PER_HOST,
                   sizes: pd.DataFrame | None = None, split: PasteSplit | None = None) -> ObjectOutcome:
    """The integer program of the module docstring for `paste` (no image copies) or `auto` (both).

    `sizes` (size_deviations of the train boxes): bound the size-CDF shift of image copies (auto only).
    `split`: two paste variables per rare class, clean (adds the instance alone, at most max_copies per clean
    instance) and carrying (split.carry_effects), instead of one with `effects`.
    """
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
    if split is None:  # one paste variable per rare class
        paste_rows, paste_upper = effects[rare], max_copies * before[rare]
    else:  # clean then carrying, per rare class
        paste_rows = np.vstack([np.eye(num_classes)[rare], split.carry_effects[rare]])
        paste_upper = max_copies * np.concatenate([split.clean[rare], split.carrying[rare]])
    num_groups, num_rare, num_paste = len(rows), len(rare), len(paste_rows)
    actions = np.vstack([rows, paste_rows]) if num_groups else paste_rows
    cost = actions[:, sufficient] @ weights[sufficient]
    cost = cost + np.concatenate([np.full(num_groups, COPY_TIE_BREAK), np.full(num_paste, PASTE_COST)])
    rare_cols = csr_matrix(actions[:, rare].T)  # num_rare x actions
    num_actions = num_groups + num_paste
    reach = LinearConstraint(hstack([rare_cols, csr_matrix((num_rare, num_rare))]),
                             lb=(goals - before)[rare], ub=np.inf)
    overshoot = LinearConstraint(hstack([rare_cols, -identity(num_rare)]), lb=-np.inf, ub=(target - before)[rare])
    image_row = np.concatenate([np.ones(num_groups), np.zeros(num_paste + num_rare)])
    paste_row = np.concatenate([np.zeros(num_groups), np.ones(num_paste), np.zeros(num_rare)])
    limits = LinearConstraint(vstack([csr_matrix(image_row), csr_matrix(paste_row)]), lb=-np.inf,
                              ub=[image_budget, max_per_host * len(counts)])
    upper = np.concatenate([max_copies * group_sizes, paste_upper, np.full(num_rare, np.inf)])
    kept, options = [limits], SOLVER_OPTIONS
    if sizes is not None and num_groups:
        kept.append(_size_rows(sizes, useful, group_of, group_sizes, actions, before, num_rare))
        options = SIZED_SOLVER_OPTIONS
    result = milp(c=np.concatenate([cost, np.ones(num_rare)]), constraints=[reach, overshoot, *kept],
                  integrality=np.concatenate([np.ones(num_actions), np.zeros(num_rare)]),
                  bounds=Bounds(np.zeros(num_actions + num_rare), upper), options=options)
    if result.x is None:  # the expected neighbours can make the overshoot rows infeasible: relax them
        result = milp(c=np.concatenate([cost, np.ones(num_rare)]), constraints=[reach, *kept],
                      integrality=np.concatenate([np.ones(num_actions), np.zeros(num_rare)]),
                      bounds=Bounds(np.zeros(num_actions + num_rare), upper), options=options)
    if result.x is None:
        return ObjectOutcome(method, copies, pastes, before.astype(np.float64),
                             f"solver found no solution ({result.message})")
    chosen = np.round(result.x[:num_actions]).astype(np.int64)
    if num_groups:
        copies[useful] = _spread_over_group(chosen[:num_groups], group_of, group_sizes)
    chosen_pastes = chosen[num_groups:]
    instances = before + copies @ counts + chosen_pastes @ paste_rows
    clean_pastes = None
    if split is None:
        pastes[rare] = chosen_pastes
    else:
        pastes[rare] = chosen_pastes[:num_rare] + chosen_pastes[num_rare:]
        clean_pastes = np.zeros(num_classes, dtype=np.int64)
        clean_pastes[rare] = chosen_pastes[:num_rare]
    note = "integer program (HiGHS)" + ("" if result.success else f", best found: {result.message}")
    return ObjectOutcome(method, copies, pastes, instances, note, clean_pastes)


def _size_rows(sizes: pd.DataFrame, useful: np.ndarray, group_of: np.ndarray, group_sizes: np.ndarray,
               actions: np.ndarray, before: np.ndarray, num_rare: int) -> LinearConstraint:
    """|sum_g y_g dev_gk(q)| <= SIZE_SHIFT_BOUND * (before_k + actions . x)_k for every class with boxes and q.

    A group's copies are dealt evenly over its images, so its deviation per copy is its images' mean. Sparse:
    a row of class k has entries only for the groups holding k and for the pastes.
    """
    grid = len(SIZE_GRID)
    group_at = np.full(int(max(useful.max(initial=-1), sizes["position"].max()) + 1), -1)
    group_at[useful] = group_of
    mine = sizes[group_at[sizes["position"].to_numpy()] >= 0]
    groups = group_at[mine["position"].to_numpy()]
    classes = mine["cls"].to_numpy(np.int64)
    values = mine[[f"dev_{j}" for j in range(grid)]].to_numpy() / group_sizes[groups][:, None]
    row_ids = (classes[:, None] * grid + np.arange(grid)[None, :]).ravel()
    dev = coo_matrix((values.ravel(), (row_ids, np.repeat(groups, grid))),
                     shape=(len(before) * grid, len(actions))).tocsr()
    growth = csr_matrix(actions.T * SIZE_SHIFT_BOUND)[np.repeat(np.arange(len(before)), grid)]
    present = np.repeat(before > 0, grid)
    bound = np.repeat(before, grid)[present] * SIZE_SHIFT_BOUND
    pad = csr_matrix((2 * len(bound), num_rare))
    matrix = vstack([(dev - growth)[present], (-dev - growth)[present]])
    return LinearConstraint(hstack([matrix, pad]), lb=-np.inf, ub=np.concatenate([bound, bound]))


@dataclass(frozen=True)
class PasteJob:
    """One pasted instance: which source box goes into which host image, with its own seed."""

    host: int  # position of the host in TrainSources.images
    source: int  # position of the source image
    box: int  # row of the instance in TrainSources.boxes
    number: int  # the k-th paste into this host (0-based): the order they are applied in
    seed: int


def assign_pastes(boxes: pd.DataFrame, num_images: int, pastes: np.ndarray, seed: int,
                  max_per_host: int = MAX_PASTES_PER_HOST, clean_pastes: np.ndarray | None = None,
                  pasted_before: np.ndarray | None = None) -> list[PasteJob]:
    """Which instances are pasted where, spread and deterministic for `seed`.

    Per class, its instances in a seeded random order, used round-robin: each is pasted at most
    ceil(z_r / n_r) times, and many distinct sources come before a second copy of one. With `clean_pastes`
    (ObjectOutcome.clean_pastes), that many of the class's pastes come round-robin from its clean instances
    (PasteSplit) and the rest from the carrying ones. Hosts: every train image
    in order of fewest boxes first (backgrounds first; ties in seeded random order), dealt one paste at a time
    round-robin with at most `max_per_host` each, never the paste's own source image. `pasted_before` (per
    image) counts pastes an earlier round already gave each image: they count towards the limit, and the new
    jobs are numbered after them.
    """
    rng = np.random.default_rng([seed, 20])
    box_positions = boxes["position"].to_numpy()
    chosen: list[int] = []
    alone = None if clean_pastes is None else clean_instances(boxes, len(pastes))
    for cls in np.flatnonzero(pastes > 0):
        rows = np.flatnonzero(boxes["cls"].to_numpy() == cls)
        if alone is None:
            order = rows[rng.permutation(len(rows))]
            chosen += [int(order[j % len(order)]) for j in range(int(pastes[cls]))]
            continue
        for part, number in ((rows[alone[rows]], int(clean_pastes[cls])),
                             (rows[~alone[rows]], int(pastes[cls] - clean_pastes[cls]))):
            if number and len(part):
                order = part[rng.permutation(len(part))]
                chosen += [int(order[j % len(order)]) for j in range(number)]
    chosen = [chosen[i] for i in rng.permutation(len(chosen))]  # classes interleaved over the hosts
    objects = np.bincount(box_positions, minlength=num_images)
    hosts = np.lexsort((rng.random(num_images), objects))
    load = np.zeros(num_images, dtype=np.int64) if pasted_before is None else np.array(pasted_before, np.int64)
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
