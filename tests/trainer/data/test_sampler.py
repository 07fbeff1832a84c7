"""Samplers: balanced draws favour rare classes measurably, distributed shares partition the single-process
sample, every epoch's sample is a pure function of (seed, epoch), and the state resumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import binomtest
from torch.utils.data import WeightedRandomSampler

from dataset_doctor.dataset.index import build_index
from dataset_doctor.weights import compute_class_weights
from trainer.data.dataset import select_images
from trainer.data.sampler import (
    BalancedSampler,
    SampleKey,
    UniformSampler,
    build_sampler,
    epoch_seed,
    image_weights,
)


def _keys(sampler) -> list[SampleKey]:
    return list(iter(sampler))


def test_image_weights_max_sum_and_background_floor() -> None:
    classes = [np.array([0, 0, 2]), np.array([1]), np.array([], dtype=np.int64), np.array([0])]
    class_weights = [0.5, 2.0, 8.0]
    np.testing.assert_allclose(image_weights(classes, class_weights, "max"), [8.0, 2.0, 0.5, 0.5])
    np.testing.assert_allclose(image_weights(classes, class_weights, "sum"), [9.0, 2.0, 0.5, 0.5])
    np.testing.assert_allclose(image_weights(classes, class_weights, "max", background_weight=0.1)[2], 0.1)
    with pytest.raises(ValueError):
        image_weights(classes, class_weights, "mean")


def test_balanced_sampler_draws_rare_class_images_more_often(sample_yaml: Path) -> None:
    index = build_index(sample_yaml, progress=False)
    images = select_images(index, "train", lambda message: None)
    instances = index.instances("train")
    weights = compute_class_weights(instances).weights
    rare = int(np.argmin(np.where(instances > 0, instances, np.iinfo(np.int64).max)))
    has_rare = np.array([rare in classes for classes in images.image_classes()])
    assert 0 < has_rare.sum() < len(has_rare) / 10

    def rare_draws(sampler) -> tuple[int, int]:
        drawn = []
        for epoch in range(20):
            sampler.set_epoch(epoch)
            drawn.extend(key.index for key in sampler)
        return int(has_rare[drawn].sum()), len(drawn)

    uniform_hits, total = rare_draws(build_sampler("uniform", images.image_classes(), seed=0))
    balanced = build_sampler("balanced", images.image_classes(), weights, seed=0)
    balanced_hits, balanced_total = rare_draws(balanced)
    assert total == balanced_total
    assert uniform_hits == 20 * has_rare.sum()  # uniform: every image exactly once per epoch
    # Measurably more often: at least twice, and far beyond chance under uniform sampling.
    assert balanced_hits > 2 * uniform_hits
    assert binomtest(balanced_hits, balanced_total, uniform_hits / total, alternative="greater").pvalue < 1e-9
    # And at the rate the weights promise (within 5 standard deviations).
    expected = balanced.probabilities[has_rare].sum()
    assert abs(balanced_hits / balanced_total - expected) < 5 * np.sqrt(expected * (1 - expected) / balanced_total)


def test_single_process_balanced_sample_is_torch_weighted_random_sampler() -> None:
    weights = np.array([1.0, 5.0, 0.5, 3.0, 0.0, 2.0])
    sampler = BalancedSampler(weights, num_samples=50, seed=11)
    sampler.set_epoch(4)
    generator = torch.Generator().manual_seed(epoch_seed(11, 4))
    expected = list(WeightedRandomSampler(torch.as_tensor(weights), 50, replacement=True, generator=generator))
    keys = _keys(sampler)
    assert [k.index for k in keys] == expected
    assert [k.draw for k in keys] == list(range(50)) and {k.epoch for k in keys} == {4}
    assert 4 not in expected  # weight 0: never drawn


@pytest.mark.parametrize("world_size", [2, 3, 4])
@pytest.mark.parametrize("num_samples", [60, 61, 7])
@pytest.mark.parametrize("kind", ["uniform", "balanced"])
def test_distributed_shares_are_disjoint_and_make_up_the_single_process_sample(world_size: int, num_samples: int,
                                                                            kind: str) -> None:
    rng = np.random.default_rng(0)

    def make(rank: int, world: int):
        if kind == "uniform":
            return UniformSampler(num_samples, seed=5, rank=rank, world_size=world)
        return BalancedSampler(rng_weights, seed=5, rank=rank, world_size=world)

    rng_weights = rng.uniform(0.1, 3.0, size=num_samples)
    single = make(0, 1)
    single.set_epoch(3)
    reference = _keys(single)
    shares = []
    for rank in range(world_size):
        sampler = make(rank, world_size)
        sampler.set_epoch(3)
        shares.append(_keys(sampler))
    # Every rank takes the same number of steps.
    assert {len(share) for share in shares} == {-(-num_samples // world_size)}
    assert all(len(share) == len(make(r, world_size)) for r, share in enumerate(shares))
    # Disjoint: no draw position is on two ranks.
    positions = [key.draw for share in shares for key in share]
    assert len(positions) == len(set(positions))
    # Union: draws 0..N-1 are exactly the single-process sample; the rest pad from its start.
    by_position = {key.draw: key.index for share in shares for key in share}
    assert [by_position[p] for p in range(num_samples)] == [key.index for key in reference]
    padding = sorted(p for p in by_position if p >= num_samples)
    assert [by_position[p] for p in padding] == [key.index for key in reference[: len(padding)]]
    if kind == "uniform":
        assert sorted(key.index for key in reference) == list(range(num_samples))


def test_sampling_is_a_pure_function_of_seed_and_epoch() -> None:
    weights = np.arange(1, 41, dtype=np.float64)
    a, b = BalancedSampler(weights, seed=1), BalancedSampler(weights, seed=1)
    a.set_epoch(2)
    b.set_epoch(2)
    assert _keys(a) == _keys(b) == _keys(a)
    b.set_epoch(3)
    assert [k.index for k in _keys(a)] != [k.index for k in _keys(b)]
    c = BalancedSampler(weights, seed=2)
    c.set_epoch(2)
    assert [k.index for k in _keys(a)] != [k.index for k in _keys(c)]
    uniform = UniformSampler(40, seed=1)
    orders = []
    for epoch in range(2):
        uniform.set_epoch(epoch)
        orders.append([k.index for k in uniform])
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1]) == list(range(40))
    assert [k.index for k in UniformSampler(5, shuffle=False)] == [0, 1, 2, 3, 4]


def test_sampler_state_resumes_exactly() -> None:
    weights = np.linspace(0.5, 4, 30)
    original = BalancedSampler(weights, seed=9, rank=1, world_size=2)
    for epoch in range(3):
        original.set_epoch(epoch)
        _keys(original)
    state = original.state_dict()
    assert state == {"seed": 9, "epoch": 2}
    resumed = BalancedSampler(weights, seed=0, rank=1, world_size=2)
    resumed.load_state_dict(state)
    for epoch in range(2, 5):
        original.set_epoch(epoch)
        resumed.set_epoch(epoch)
        assert _keys(original) == _keys(resumed)


def test_sampler_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        BalancedSampler([0.0, 0.0])
    with pytest.raises(ValueError):
        BalancedSampler([1.0, float("nan")])
    with pytest.raises(ValueError):
        UniformSampler(10, rank=2, world_size=2)
    with pytest.raises(ValueError):
        build_sampler("balanced", [np.array([0])])
    with pytest.raises(ValueError):
        build_sampler("weighted", [np.array([0])])
