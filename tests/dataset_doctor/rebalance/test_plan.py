"""The rebalance plan against its baselines: handmade co-occurrence cases, caps, the sample dataset, invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dataset_doctor.dataset.index import build_index
from dataset_doctor.rebalance import plan as plan_module
from dataset_doctor.rebalance.plan import (
    COPY_TIE_BREAK,
    imbalance_ratio,
    make_rebalance_plan,
    naive_outcome,
    reachable_goals,
    repeat_factor_copies,
    surplus_instances,
    weighted_surplus,
)
from dataset_doctor.rebalance.sources import collect_train_sources


def _rows(*groups: tuple[int, list[int]]) -> np.ndarray:
    """A count matrix from (how many images, their per-class counts) groups, in file order."""
    return np.array([row for repeat, row in groups for _ in range(repeat)], dtype=np.int64)


def test_rare_boxes_next_to_common_ones_naive_drags_the_common_class_along() -> None:
    # Columns: common, rare. The first rare images are crowded with common boxes; naive copies them first.
    counts = _rows((5, [10, 1]), (5, [0, 1]), (10, [10, 0]))
    result = make_rebalance_plan(counts, target=20, max_copies=10)
    assert result.before.tolist() == [150, 10]
    assert result.naive.instances.tolist() == [200, 20]  # 5 crowded copies + 5 clean ones
    assert result.plan.instances.tolist() == [150, 20]  # only the clean images, twice each
    np.testing.assert_array_equal(result.plan.copies, [0] * 5 + [2] * 5 + [0] * 10)
    assert result.surplus(result.plan) == 0 and result.surplus(result.naive) == 50
    assert result.plan.added_images <= result.naive.added_images
    assert result.ratio(result.plan.instances) == pytest.approx(7.5)
    assert result.ratio(result.plan.instances) < result.ratio(result.naive.instances) == pytest.approx(10)
    assert result.ratio(result.plan.instances) < result.ratio(result.repeat_factor.instances)


def test_two_rare_classes_together_serve_both_targets_at_once() -> None:
    # Columns: common, rare_a, rare_b. Naive works class by class over every image holding it, crowded or not.
    counts = _rows((4, [0, 1, 0]), (4, [0, 0, 1]), (4, [6, 1, 1]), (4, [0, 1, 1]), (20, [5, 0, 0]))
    result = make_rebalance_plan(counts, target=30, max_copies=10)
    assert result.before.tolist() == [124, 12, 12]
    plan, naive = result.plan, result.naive
    assert naive.instances.tolist() == [184, 34, 30] and naive.added_images == 26
    assert plan.instances.tolist() == [124, 30, 30]  # the clean images holding both rare classes
    assert plan.added_images == 18 and result.surplus(plan) == 0
    assert result.ratio(plan.instances) == pytest.approx(124 / 30)
    assert result.ratio(plan.instances) < result.ratio(naive.instances)
    assert result.ratio(plan.instances) < result.ratio(result.repeat_factor.instances)


def test_overshoot_of_a_rare_class_counts_as_surplus() -> None:
    # Columns: common, rare. One image holds 6 rare boxes; 3 more are needed. Copying the 1-box images
    # three times reaches the target exactly but needs more images than naive's single copy.
    counts = _rows((1, [0, 6]), (3, [0, 1]), (10, [4, 0]))
    result = make_rebalance_plan(counts, target=12, max_copies=10)
    assert result.naive.added_images == 1 and result.naive.instances[1] == 15
    assert result.plan.added_images <= result.naive.added_images  # the budget binds: same choice as naive
    assert result.plan.instances[1] >= 12
    unbudgeted = plan_module.optimal_outcome(counts, target=12, max_copies=10, image_budget=None)
    assert unbudgeted.instances.tolist() == [40, 12] and unbudgeted.added_images == 3


def test_cap_stops_a_class_short_and_says_how_far_it_gets() -> None:
    counts = _rows((2, [0, 1]), (6, [20, 0]))  # columns: common, rare (2 boxes, cap 10 -> at most 22)
    result = make_rebalance_plan(counts, target=100, max_copies=10)
    assert result.goals.tolist() == [120, 22]
    assert result.capped_classes.tolist() == [1]
    assert result.plan.instances.tolist() == [120, 22]
    assert result.plan.copies.max() == 10
    assert result.naive.copies.max() <= 10


def test_goals_keep_sufficient_classes_and_cap_the_rest() -> None:
    counts = _rows((3, [4, 1, 0]), (1, [0, 2, 0]))
    assert reachable_goals(counts, target=10, max_copies=1).tolist() == [12, 10, 0]
    assert reachable_goals(counts, target=10, max_copies=0).tolist() == [12, 5, 0]


def test_classes_at_target_are_never_copied_on_purpose() -> None:
    counts = _rows((10, [3, 0]), (5, [0, 4]))
    result = make_rebalance_plan(counts, target=20, max_copies=10)
    assert result.plan.added_images == 0 and result.naive.added_images == 0
    assert result.repeat_factor.added_images == 0
    np.testing.assert_array_equal(result.plan.instances, result.before)


def test_max_copies_zero_adds_nothing() -> None:
    counts = _rows((2, [0, 1]), (6, [5, 0]))
    result = make_rebalance_plan(counts, target=100, max_copies=0)
    assert result.plan.added_images == result.naive.added_images == 0


def test_absent_classes_are_reported_and_left_out_of_the_ratio() -> None:
    counts = _rows((4, [5, 0, 1]))
    result = make_rebalance_plan(counts, target=10, max_copies=10)
    assert result.absent_classes.tolist() == [1]
    assert result.plan.instances.tolist() == [50, 0, 10]
    assert result.ratio(result.plan.instances) == pytest.approx(5.0)
    assert imbalance_ratio(np.array([5.0, 0.0]), np.array([True, True])) != imbalance_ratio(
        np.array([5.0, 0.0]), np.array([True, False]))


def test_identical_images_share_their_copies_evenly() -> None:
    counts = _rows((3, [0, 1]), (1, [12, 0]))
    result = make_rebalance_plan(counts, target=10, max_copies=10)
    np.testing.assert_array_equal(result.plan.copies, [3, 2, 2, 0])


def test_repeat_factor_follows_lvis() -> None:
    # Image fractions: class 0 in 4/4 images, class 1 in 1/4. With t = 1: r_0 = 1, r_1 = sqrt(1 / 0.25) = 2.
    counts = _rows((3, [2, 0]), (1, [1, 3]))
    np.testing.assert_allclose(repeat_factor_copies(counts, threshold=1.0, max_copies=10), [0, 0, 0, 1])
    np.testing.assert_allclose(repeat_factor_copies(counts, threshold=4.0, max_copies=10), [1, 1, 1, 3])
    np.testing.assert_allclose(repeat_factor_copies(counts, threshold=4.0, max_copies=2), [1, 1, 1, 2])
    np.testing.assert_allclose(repeat_factor_copies(counts, threshold=0.1, max_copies=10), [0, 0, 0, 0])


def test_repeat_factor_threshold_matches_the_plan_budget() -> None:
    counts = _rows((5, [10, 1]), (5, [0, 1]), (10, [10, 0]), (3, [2, 2]))
    result = make_rebalance_plan(counts, target=40, max_copies=10)
    assert result.repeat_factor.added_images == pytest.approx(result.plan.added_images, rel=1e-6)
    threshold = result.repeat_factor.params["threshold"]
    np.testing.assert_allclose(result.repeat_factor.copies, repeat_factor_copies(counts, threshold, 10))


def test_solver_failure_falls_back_to_naive(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoSolution:
        x, success, message = None, False, "time limit reached, no feasible point"

    monkeypatch.setattr(plan_module, "milp", lambda **kwargs: NoSolution())
    counts = _rows((5, [10, 1]), (5, [0, 1]))
    result = make_rebalance_plan(counts, target=20, max_copies=10)
    np.testing.assert_array_equal(result.plan.copies, result.naive.copies)
    assert "naive copies used" in result.plan.note


def test_sample_dataset_plan_beats_both_baselines(sample_yaml) -> None:
    sources = collect_train_sources(build_index(sample_yaml, progress=False))
    result = make_rebalance_plan(sources.count_matrix(), target=40, max_copies=10)
    plan_ratio = result.ratio(result.plan.instances)
    assert result.plan.added_images <= result.naive.added_images
    assert plan_ratio < result.ratio(result.naive.instances)
    assert plan_ratio < result.ratio(result.repeat_factor.instances)
    assert plan_ratio < result.ratio(result.before)
    reachable = result.goals > result.before
    assert np.all(result.plan.instances[reachable] >= result.goals[reachable])


@st.composite
def _count_matrices(draw) -> np.ndarray:
    images = draw(st.integers(1, 25))
    classes = draw(st.integers(1, 5))
    return draw(arrays(np.int64, (images, classes), elements=st.integers(0, 4)))


@settings(max_examples=60, deadline=None)
@given(counts=_count_matrices(), target=st.integers(1, 40), max_copies=st.integers(0, 4))
def test_plan_invariants(counts: np.ndarray, target: int, max_copies: int) -> None:
    result = make_rebalance_plan(counts, target, max_copies)
    plan, naive = result.plan, result.naive
    assert plan.copies.min(initial=0) >= 0 and plan.copies.max(initial=0) <= max_copies
    assert naive.copies.max(initial=0) <= max_copies
    np.testing.assert_array_equal(plan.instances, result.before + plan.copies @ counts)
    assert np.all(plan.instances >= result.goals)  # every class reaches its target or its cap
    assert np.all(naive.instances >= result.goals)
    assert plan.added_images <= naive.added_images
    # the plan's objective is never worse than the naive copies' (which are feasible for it)
    plan_cost = weighted_surplus(result.before, plan.instances, target) + COPY_TIE_BREAK * plan.added_images
    naive_cost = weighted_surplus(result.before, naive.instances, target) + COPY_TIE_BREAK * naive.added_images
    assert plan_cost <= naive_cost * (1 + plan_module.SOLVER_OPTIONS["mip_rel_gap"]) + 1e-6
    assert 0 <= result.repeat_factor.added_images <= plan.added_images + 1e-6
    # nothing is copied that holds no class below the target
    useless = (counts[:, result.before < target].sum(axis=1) == 0) if counts.size else np.zeros(0, bool)
    assert plan.copies[useless].sum() == 0


def test_surplus_counts_and_weights() -> None:
    before, after = np.array([100, 20, 5]), np.array([104, 25, 10])
    # target 10: class 0 got 4 surplus (weight 10), class 1 got 5 (weight 2), class 2 reached the target exactly
    assert surplus_instances(before, after, 10) == 9
    assert weighted_surplus(before, after, 10) == pytest.approx(4 * 10 + 5 * 2)


def test_largest_class_is_spared_first() -> None:
    # Columns: big, mid, rare. One rare image brings a big box, the other two mid boxes. Counted plainly the big
    # box is the smaller surplus, but the big class (50x the target) is what unbalances the data: spare it.
    counts = _rows((1, [1, 0, 1]), (1, [0, 2, 1]), (10, [30, 0, 0]), (10, [0, 5, 0]))
    result = make_rebalance_plan(counts, target=6, max_copies=10)
    np.testing.assert_array_equal(result.plan.copies[:2], [0, 4])
    assert result.plan.instances.tolist() == [301, 60, 6]  # 8 mid boxes rather than 4 big ones


def test_naive_round_robin_order() -> None:
    counts = _rows((3, [0, 1]), (1, [9, 0]))
    outcome = naive_outcome(counts, target=8, max_copies=10)
    np.testing.assert_array_equal(outcome.copies, [2, 2, 1, 0])
    assert outcome.instances.tolist() == [9, 8]
