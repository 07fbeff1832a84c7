"""Which images an epoch trains on, in what order: uniform shuffling or class-balanced weighted draws.

Every epoch's sample is a pure function of (seed, epoch): one process, or every rank of a distributed run,
computes the same full sample, and rank r of world_size keeps positions r, r + world_size, ... of it. So the
ranks' shares are disjoint and together are exactly the single-process sample, and resuming needs only
(seed, epoch) (`state_dict`). The samplers yield SampleKey(index, epoch, draw) rather than bare indices: the
dataset seeds each sample's augmentation from it and knows the epoch (for close_mosaic) even in persistent
DataLoader workers, which never see a `set_epoch` call made in the main process.

Balanced sampling resamples images; class weights in the loss reweight boxes. Both push towards rare
classes and they compound, so the run records which are on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Sampler, WeightedRandomSampler

from trainer.data.config import IMAGE_WEIGHT_REDUCTIONS, SAMPLERS


class SampleKey(NamedTuple):
    index: int  # position in the dataset
    epoch: int  # 0-based epoch this draw belongs to
    draw: int  # position in the epoch's full (all ranks) sample: unique per draw, seeds its augmentation


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed mixing (seed, epoch) through numpy's SeedSequence (nearby pairs give unrelated streams)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))  # torch seeds must fit a signed 64-bit integer


class EpochSampler(Sampler[SampleKey]):
    """Base for samplers whose epoch sample is a function of (seed, epoch), split across ranks by stride."""

    def __init__(self, num_samples: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if num_samples < 1:
            raise ValueError("an epoch needs at least one sample")
        self.num_samples, self.seed, self.rank, self.world_size = num_samples, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict[str, int]:
        """All it takes to reproduce the sampling of this and later epochs."""
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def epoch_sample(self) -> np.ndarray:
        """Dataset positions of the whole epoch (all ranks together), length num_samples."""
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return self._draw(generator)

    def _draw(self, generator: torch.Generator) -> np.ndarray:
        raise NotImplementedError

    def __len__(self) -> int:
        """Draws per rank: the epoch sample padded to a multiple of world_size, so every rank steps equally."""
        return -(-self.num_samples // self.world_size)

    def __iter__(self) -> Iterator[SampleKey]:
        sample = self.epoch_sample()
        padded_length = len(self) * self.world_size
        # Padding repeats the start of the sample (as DistributedSampler does); padded draws get their own
        # draw numbers, hence their own augmentation.
        padded = np.concatenate([sample, sample[: padded_length - len(sample)]])
        for draw in range(self.rank, padded_length, self.world_size):
            yield SampleKey(int(padded[draw]), self.epoch, draw)


class UniformSampler(EpochSampler):
    """Every image once per epoch, shuffled (or in order): the distributed variant of a shuffled loader."""

    def __init__(self, dataset_size: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__(dataset_size, seed, rank, world_size)
        self.shuffle = shuffle

    def _draw(self, generator: torch.Generator) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_samples)
        return torch.randperm(self.num_samples, generator=generator).numpy()


class BalancedSampler(EpochSampler):
    """num_samples draws with replacement, image i with probability weights[i] / sum(weights).

    The draws come from torch's WeightedRandomSampler seeded by (seed, epoch); see image_weights for the
    per-image weights.
    """

    def __init__(self, weights: Sequence[float] | np.ndarray, num_samples: int | None = None, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 1 or not len(weights) or not np.isfinite(weights).all() or (weights < 0).any() \
                or weights.sum() <= 0:
            raise ValueError("image weights must be finite, non-negative and not all zero")
        super().__init__(len(weights) if num_samples is None else num_samples, seed, rank, world_size)
        self.weights = torch.as_tensor(weights, dtype=torch.float64)

    def _draw(self, generator: torch.Generator) -> np.ndarray:
        draws = WeightedRandomSampler(self.weights, self.num_samples, replacement=True, generator=generator)
        return np.fromiter(iter(draws), dtype=np.int64, count=self.num_samples)

    @property
    def probabilities(self) -> np.ndarray:
        return (self.weights / self.weights.sum()).numpy()


def image_weights(image_classes: Sequence[np.ndarray], class_weights: Sequence[float] | np.ndarray,
                  reduce: str = "max", background_weight: float | None = None) -> np.ndarray:
    """Per-image sampling weight from the class weights of its boxes.

    reduce="max" (default): the weight of the image's rarest class, as in repeat factor sampling (Gupta et
    al., LVIS, CVPR 2019): an image is drawn for the rarest thing it shows, however many common objects
    surround it. reduce="sum": the sum over its boxes (YOLOv5's --image-weights): crowded images are also
    favoured. Background images (no box) get `background_weight`, by default the smallest class weight: as
    likely as an image showing only the most frequent class, so they stay in the mix without being favoured.
    """
    if reduce not in IMAGE_WEIGHT_REDUCTIONS:
        raise ValueError(f"reduce must be one of {IMAGE_WEIGHT_REDUCTIONS}, got {reduce!r}")
    weights_of_class = np.asarray(class_weights, dtype=np.float64)
    floor = float(weights_of_class.min()) if background_weight is None else background_weight
    combine = np.max if reduce == "max" else np.sum
    return np.array([combine(weights_of_class[np.asarray(classes, dtype=np.int64)]) if len(classes) else floor
                     for classes in image_classes], dtype=np.float64)


def build_sampler(kind: str, image_classes: Sequence[np.ndarray], class_weights: Sequence[float] | None = None,
                  seed: int = 0, rank: int = 0, world_size: int = 1, reduce: str = "max") -> EpochSampler:
    """The training sampler for --sampler uniform|balanced (balanced needs the class weights)."""
    if kind not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {kind!r}")
    if kind == "uniform":
        return UniformSampler(len(image_classes), seed=seed, rank=rank, world_size=world_size)
    if class_weights is None:
        raise ValueError("the balanced sampler needs class weights")
    weights = image_weights(image_classes, class_weights, reduce)
    return BalancedSampler(weights, seed=seed, rank=rank, world_size=world_size)
