"""--replay BASE.yaml --replay-ratio R: rehearse the base dataset while fine-tuning on the new one.

Fine-tuning on new classes alone makes a detector forget the old ones; mixing some of the old training images
into every epoch ("rehearsal", the standard remedy of continual learning) keeps them alive. Mixing happens in the
sampler: the dataset holds the new train images followed by the base train images (labels remapped to the new
class ids by name; boxes of base classes the new data.yaml lacks are left out), and each epoch draws every new
image once plus round(n_new * R / (1 - R)) base images, without replacement while there are enough, so a share R
of the epoch's draws are replays. Replay images never enter the train-subset evaluation (their image ids are
negative: they are not in the new index).
"""

from __future__ import annotations

import numpy as np
import torch

from trainer.data.dataset import ImageSet
from trainer.data.sampler import EpochSampler


def remap_replay(base: ImageSet, base_names: list[str], target_names: list[str]) -> ImageSet:
    """The base train images with class ids of the new data.yaml (matched by name), ids made negative."""
    to_target = np.full(len(base_names), -1, dtype=np.int64)
    for base_id, name in enumerate(base_names):
        if name in target_names:
            to_target[base_id] = target_names.index(name)
    labels = []
    for boxes in base.labels:
        classes = to_target[boxes[:, 0].astype(np.int64)] if len(boxes) else np.zeros(0, dtype=np.int64)
        kept = boxes[classes >= 0].copy()
        kept[:, 0] = classes[classes >= 0]
        labels.append(kept.astype(np.float32))
    return ImageSet(base.split, [f"replay:{name}" for name in base.names], list(base.paths),
                    -1 - np.arange(len(base), dtype=np.int64), base.sizes.copy(), labels)


def combine(new: ImageSet, replay: ImageSet) -> ImageSet:
    """New images first (positions 0 .. len(new) - 1), then the replay images."""
    return ImageSet(new.split, new.names + replay.names, new.paths + replay.paths,
                    np.concatenate([new.image_ids, replay.image_ids]), np.concatenate([new.sizes, replay.sizes]),
                    new.labels + replay.labels, new.skipped_images, new.skipped_lines)


def replay_draws(new_images: int, ratio: float) -> int:
    """Replay draws per epoch so that they are `ratio` of all draws: r / (n + r) = ratio."""
    return max(1, round(new_images * ratio / (1 - ratio)))


class ReplaySampler(EpochSampler):
    """Every new image once per epoch plus replay_draws(...) base images, shuffled together."""

    def __init__(self, new_images: int, replay_images: int, ratio: float, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        if replay_images < 1:
            raise ValueError("the replay dataset has no usable train image")
        self.new_images, self.replay_images, self.ratio = new_images, replay_images, ratio
        self.replays = replay_draws(new_images, ratio)
        super().__init__(new_images + self.replays, seed, rank, world_size)

    def _draw(self, generator: torch.Generator) -> np.ndarray:
        if self.replays <= self.replay_images:
            replays = torch.randperm(self.replay_images, generator=generator)[: self.replays]
        else:  # fewer base images than draws: every one at least once, the rest at random
            repeats = -(-self.replays // self.replay_images)
            pool = torch.cat([torch.randperm(self.replay_images, generator=generator) for _ in range(repeats)])
            replays = pool[: self.replays]
        positions = torch.cat([torch.arange(self.new_images), self.new_images + replays])
        return positions[torch.randperm(len(positions), generator=generator)].numpy()
