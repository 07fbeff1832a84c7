"""Benchmark of `doctor split`'s stratification against the random split most tools make.

On synthetic long-tailed detection datasets (Zipf-like class frequencies, objects in bunches, a few
backgrounds) of growing size, for a two- and a three-way split, it reports:
- seconds to stratify (the algorithm alone: scanning and copying are measured by the audit benchmark);
- mean and worst |share of a class's instances in a split - ratio|, in percentage points;
- (class, split) pairs with no instance, among classes held by at least as many images as there are splits:
  each one is a class whose AP cannot be measured in that split;
for the stratified split and a shuffled image-level split with the same seed. Prints a markdown table.

    python bench/split_bench.py                     # full scale: up to 200k images, 3 seeds
    python bench/split_bench.py --scale small       # a quick check that it runs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_doctor.split.stratify import iterative_stratification  # noqa: E402

SCALES = {
    "small": [(1_000, 10), (5_000, 40)],
    "full": [(1_000, 10), (10_000, 80), (50_000, 80), (200_000, 300)],
}
RATIOS = {"80/20": [0.8, 0.2], "70/20/10": [0.7, 0.2, 0.1]}


def synthetic_counts(units: int, classes: int, seed: int) -> sparse.csr_matrix:
    """(units, classes) instance counts: Poisson(3) objects per image, class k with weight (k + 1)^-1.5."""
    rng = np.random.default_rng(seed)
    frequency = (np.arange(classes) + 1.0) ** -1.5
    frequency /= frequency.sum()
    objects = rng.poisson(3, size=units) * (rng.random(units) >= 0.05)  # 5% backgrounds
    unit_of_object = np.repeat(np.arange(units), objects)
    class_of_object = rng.choice(classes, size=len(unit_of_object), p=frequency)
    bunch = 1 + rng.poisson(1.0, size=len(unit_of_object)) * (rng.random(len(unit_of_object)) < 0.3)
    return sparse.coo_matrix((bunch, (unit_of_object, class_of_object)), shape=(units, classes)).tocsr()


def shuffled_split(units: int, ratios: list[float], seed: int) -> np.ndarray:
    bounds = np.round(np.cumsum(ratios)[:-1] * units).astype(int)
    split_of = np.zeros(units, dtype=np.int64)
    for split, piece in enumerate(np.split(np.random.default_rng(seed).permutation(units), bounds)):
        split_of[piece] = split
    return split_of


def quality(counts: sparse.csr_matrix, split_of: np.ndarray, ratios: list[float]) -> tuple[float, float, int]:
    """(mean |share - ratio|, worst |share - ratio|, missing (class, split) pairs among coverable classes)."""
    totals = np.asarray(counts.sum(axis=0)).ravel()
    holders = np.asarray((counts > 0).sum(axis=0)).ravel()
    present = totals > 0
    deviations, missing = [], 0
    for split, ratio in enumerate(ratios):
        in_split = np.asarray(counts[split_of == split].sum(axis=0)).ravel()
        deviations.append(np.abs(in_split[present] / totals[present] - ratio))
        missing += int(((in_split == 0) & (holders >= len(ratios))).sum())
    deviations = np.concatenate(deviations)
    return float(deviations.mean()), float(deviations.max()), missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()

    print("| images | classes | ratios | stratify s | mean dev pp (strat / random) | worst dev pp (strat / random) "
          "| missing class-splits (strat / random) |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for units, classes in SCALES[args.scale]:
        for label, ratios in RATIOS.items():
            seconds, ours, theirs = [], [], []
            for seed in range(args.seeds):
                counts = synthetic_counts(units, classes, seed)
                started = time.perf_counter()
                split_of = iterative_stratification(counts, ratios, seed)
                seconds.append(time.perf_counter() - started)
                ours.append(quality(counts, split_of, ratios))
                theirs.append(quality(counts, shuffled_split(units, ratios, seed), ratios))
            ours_mean, theirs_mean = np.mean(ours, axis=0), np.mean(theirs, axis=0)
            print(f"| {units:,} | {classes} | {label} | {np.median(seconds):.2f} "
                  f"| {ours_mean[0] * 100:.2f} / {theirs_mean[0] * 100:.2f} "
                  f"| {ours_mean[1] * 100:.2f} / {theirs_mean[1] * 100:.2f} "
                  f"| {ours_mean[2]:.1f} / {theirs_mean[2]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
