"""The object-level plan on box tables (no pictures): auto keeps each class's box sizes where they were, and
pastes prefer instances whose crop brings no neighbour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataset_doctor.rebalance.paste_plan import (
    SIZE_SHIFT_BOUND,
    assign_pastes,
    clean_instances,
    compare_methods,
    paste_effects,
    plan_methods,
)
from dataset_doctor.rebalance.plan import make_rebalance_plan


def _boxes(rows: list[tuple[int, int, float, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["position", "cls", "cx", "cy", "w", "h"])


def _counts(boxes: pd.DataFrame, images: int, classes: int) -> np.ndarray:
    counts = np.zeros((images, classes), dtype=np.int64)
    np.add.at(counts, (boxes["position"].to_numpy(), boxes["cls"].to_numpy()), 1)
    return counts


def _size_drift(boxes: pd.DataFrame, copies: np.ndarray, pastes: int, cls: int) -> float:
    """KS D between class `cls`'s box areas after (copies, and pastes drawn from the before-areas) and before."""
    mine = boxes[boxes["cls"] == cls]
    area = (mine["w"] * mine["h"]).to_numpy()
    order = np.argsort(area, kind="stable")
    weight = (1 + copies[mine["position"].to_numpy()])[order]
    before = np.arange(1, len(area) + 1) / len(area)
    after = (np.cumsum(weight) + pastes * before) / (weight.sum() + pastes)
    return float(np.abs(after - before).max())


def _two_kinds_of_rare_images() -> tuple[pd.DataFrame, int]:
    """Class 1 (rare): 20 large boxes beside five class-0 boxes, and 4 tiny ones alone in their pictures, which
    are the cheapest to copy (no class-0 box comes along) but hold only the smallest sizes."""
    rows = []
    for i in range(30):
        rows += [(i, 0, 0.1 + 0.15 * j, 0.1, 0.08, 0.08) for j in range(5)]
        if i < 20:
            side = 0.2 + 0.005 * i
            rows.append((i, 1, 0.5, 0.65, side, side))
    rows += [(30 + i, 1, 0.5, 0.5, 0.03 + 0.001 * i, 0.03) for i in range(4)]
    return _boxes(rows), 34


def test_auto_keeps_the_rare_class_sizes_where_they_were() -> None:
    """Without the bound, auto copies the four tiny-box pictures ~25 times each: class 1 turns tiny (the sample's
    'four' and aquarium's 'shark' in bench_rebalance). With it, the sizes stay within the bound."""
    boxes, images = _two_kinds_of_rare_images()
    counts = _counts(boxes, images, 2)
    plan = make_rebalance_plan(counts, 120, max_copies=100)
    unbounded = compare_methods(counts, paste_effects(boxes, 2), plan, "auto").outcomes["auto"]
    assert _size_drift(boxes, unbounded.copies, unbounded.pastes[1], 1) > 0.4  # the scenario bites without the bound

    auto = plan_methods(boxes, counts, plan, "auto").outcomes["auto"]
    assert auto.instances[1] >= 120 - 1e-6
    # the bound holds at the grid quantiles; between two of them the CDF can move by 5% more
    assert _size_drift(boxes, auto.copies, auto.pastes[1], 1) <= SIZE_SHIFT_BOUND + 0.05
    assert auto.pastes[1] > 0


def test_pastes_prefer_instances_that_bring_no_neighbour() -> None:
    """Half the class-1 boxes overlap a class-0 box (their crop carries it), half stand alone: paste uses the
    lone ones, so class 0 does not grow; the old single paste variable grew it by the average neighbour."""
    rows = []
    for i in range(20):
        rows += [(i, 0, 0.2, 0.2, 0.1, 0.1)] + [(i, 0, 0.5 + 0.1 * j, 0.2, 0.08, 0.08) for j in range(4)]
        rows.append((i, 1, 0.22, 0.24, 0.12, 0.12) if i % 2 else (i, 1, 0.5, 0.7, 0.12, 0.12))
    boxes = _boxes(rows)
    counts = _counts(boxes, 20, 2)
    plan = make_rebalance_plan(counts, 60, max_copies=10)
    old = compare_methods(counts, paste_effects(boxes, 2), plan, "paste").outcomes["paste"]
    assert old.instances[0] > counts[:, 0].sum() + 10

    paste = plan_methods(boxes, counts, plan, "paste").outcomes["paste"]
    assert paste.instances[0] == pytest.approx(counts[:, 0].sum())
    assert paste.instances[1] >= 60 - 1e-6
    assert paste.clean_pastes[1] == paste.pastes[1]
    jobs = assign_pastes(boxes, 20, paste.pastes, seed=1, clean_pastes=paste.clean_pastes)
    alone = clean_instances(boxes, 2)
    assert len(jobs) == paste.pastes[1] and all(alone[job.box] for job in jobs)
    assert len({job.box for job in jobs}) == int(alone[boxes["cls"].to_numpy() == 1].sum())  # every lone one used
