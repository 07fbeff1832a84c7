"""A quick measured training throughput, for an ETA before a run starts (`doctor demo` prints one).

A few forward + loss + backward + optimizer steps of the real model on synthetic images (random pixels, a few
random boxes per image) on the run's device. It measures compute only: on CPU, where the data loader runs
at several times the model's speed (bench/README.md, data pipeline), that is what an epoch costs.
"""

from __future__ import annotations

import time

import torch

from trainer.model.detector import Detector, ModelConfig
from trainer.model.loss import DetectionLoss


def measure_train_images_per_s(scale: str, num_classes: int, imgsz: int, device: torch.device | str = "cpu",
                               batch: int = 8, steps: int = 2, boxes_per_image: int = 4, seed: int = 0) -> float:
    """Training images/s of `scale` at `imgsz`: one untimed warm-up step, then the fastest of `steps` steps.

    The fastest step, not the mean: on a shared machine the slow steps are other programs' time, and an ETA
    from the fastest is a lower bound the caller can pad. Costs (1 + steps) * batch training images.
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    model = Detector(ModelConfig(scale=scale, num_classes=num_classes)).to(device).train()
    criterion = DetectionLoss.for_model(model).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images = torch.rand(batch, 3, imgsz, imgsz, generator=generator).to(device)
    count = batch * boxes_per_image
    size = torch.rand(count, 2, generator=generator) * 0.2 + 0.05
    centre = size / 2 + torch.rand(count, 2, generator=generator) * (1 - size)
    image_index = torch.arange(batch).repeat_interleave(boxes_per_image).float()[:, None]
    cls = torch.randint(0, num_classes, (count, 1), generator=generator).float()
    targets = torch.cat((image_index, cls, centre, size), dim=1).to(device)
    best = float("inf")
    for step in range(1 + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        loss, _ = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step:
            best = min(best, time.perf_counter() - started)
    return batch / best


def training_seconds(images_per_s: float, epochs: int, train_images: int, val_images: int,
                     evaluations: int | None = None) -> float:
    """A run's time from a measured training speed: `epochs` passes over the train images, and at each of
    `evaluations` (default: every epoch) val plus a train subset as large, inference running at about 3x the
    training speed."""
    evaluations = epochs if evaluations is None else evaluations
    return (epochs * train_images + evaluations * 2 * val_images / 3) / images_per_s
