"""DataLoaders for training and evaluation: sampler, collate, worker processes, pinned memory, seeding.

The training loop needs two calls: `build_train_loader(...)` once, then `set_loader_epoch(loader, epoch)` at
the start of every epoch (it moves the sampler, and through the SampleKeys it yields, the dataset's
augmentation and close_mosaic switch; persistent workers need nothing else).

`batch_size` here is per process; a distributed run splits the total `--batch` across ranks itself.
Always move batches with `batch.to(device)`: on CUDA the images travel as uint8 and become float there.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.errors import DoctorError
from trainer.data.collate import Collate
from trainer.data.config import AugmentConfig, DataConfig, default_workers
from trainer.data.dataset import ImageSet, YoloDataset, build_dataset, select_images
from trainer.data.replay import ReplaySampler, combine
from trainer.data.sampler import BalancedSampler, EpochSampler, build_sampler

Log = Callable[[str], None]


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: seed the global RNGs from the worker's torch seed and keep each worker single-threaded.

    DataLoader gives worker k the seed base + k, with base drawn from the loader's seeded generator, so the
    seeds are reproducible. Samples draw from their own SampleKey-seeded generators; this covers any library
    that reaches for the global ones. One thread per worker: the workers already use the cores in parallel.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def wants_pinned_memory(device: torch.device | str | None) -> bool:
    """Pin when batches go to a CUDA device: page-locked memory lets the copy overlap with compute."""
    if not torch.cuda.is_available():
        return False
    return device is None or torch.device(device).type == "cuda"


def make_loader(dataset: YoloDataset, batch_size: int, sampler: Sampler | None, collate: Collate,
                workers: int, seed: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader with persistent, seeded, single-threaded workers (no more workers than batches)."""
    draws = len(sampler) if sampler is not None else len(dataset)
    workers = max(0, min(workers, -(-draws // batch_size)))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=False,
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )


def build_train_loader(index: DatasetIndex, data: DataConfig, augment: AugmentConfig, batch_size: int, *,
                       epochs: int | None = None, seed: int = 0, class_weights: Sequence[float] | None = None,
                       rank: int = 0, world_size: int = 1, device: torch.device | str | None = None,
                       split: str = "train", log: Log | None = None, warn: Log | None = None,
                       replay: ImageSet | None = None, replay_ratio: float = 0.25) -> DataLoader:
    """The training loader of one process: augmented dataset, uniform or balanced sampler, multi-scale collate.

    `replay` (trainer/data/replay.py): base-dataset images appended to the dataset and mixed into every epoch
    by a ReplaySampler, a share `replay_ratio` of the draws.
    """
    data = data.checked(warn)
    images = select_images(index, split, warn, max_pixels=data.max_pixels)
    if replay is not None:
        if data.sampler != "uniform":
            raise DoctorError("--replay draws the new images uniformly: it cannot be combined with --sampler "
                              f"{data.sampler}")
        images = combine(images, replay)
    dataset = YoloDataset(images, data.imgsz, augment, seed=seed, epochs=epochs, cache=data.cache,
                          workers=data.workers, log=log, warn=warn, max_pixels=data.max_pixels)
    if replay is not None:
        sampler: EpochSampler = ReplaySampler(len(images) - len(replay), len(replay), replay_ratio, seed=seed,
                                              rank=rank, world_size=world_size)
    else:
        sampler = build_sampler(data.sampler, dataset.images.image_classes(), class_weights, seed=seed, rank=rank,
                                world_size=world_size, reduce=data.image_weight)
    if isinstance(sampler, BalancedSampler):
        dataset.set_partner_weights(sampler.weights.numpy())
    if augment.copy_paste > 0:
        dataset.set_paste_weights(class_weights)
    pin_memory = wants_pinned_memory(device)
    collate = Collate(data.imgsz, data.multi_scale, seed=seed, batch_stride=batch_size * world_size,
                      uint8_images=pin_memory)
    workers = data.workers if data.workers is not None else default_workers(world_size)
    return make_loader(dataset, batch_size, sampler, collate, workers, seed=seed + rank, pin_memory=pin_memory)


def build_eval_loader(index: DatasetIndex, split: str, data: DataConfig, batch_size: int, *,
                      device: torch.device | str | None = None, log: Log | None = None,
                      warn: Log | None = None) -> DataLoader:
    """Letterboxed images of a split in index order, no augmentation, no multi-scale."""
    data = data.checked(warn)
    dataset = build_dataset(index, split, data.imgsz, None, cache=data.cache, workers=data.workers, log=log,
                            warn=warn, max_pixels=data.max_pixels)
    return make_eval_loader(dataset, batch_size, data.workers, device)


def make_eval_loader(dataset: YoloDataset, batch_size: int, workers: int | None = None,
                     device: torch.device | str | None = None) -> DataLoader:
    """Evaluation loader over any dataset, e.g. `train_dataset.view(positions)`, the fixed train subset that is
    evaluated like val (it shares the training dataset's RAM cache)."""
    dataset = dataset if not dataset.training else dataset.view()
    workers = workers if workers is not None else default_workers()
    pin_memory = wants_pinned_memory(device)
    return make_loader(dataset, batch_size, None, Collate(dataset.imgsz, uint8_images=pin_memory), workers,
                       pin_memory=pin_memory)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Start epoch `epoch` (0-based): new sample order, new augmentations, mosaic closed near the end."""
    if isinstance(loader.sampler, EpochSampler):
        loader.sampler.set_epoch(epoch)
    if isinstance(loader.dataset, YoloDataset):
        loader.dataset.set_epoch(epoch)
