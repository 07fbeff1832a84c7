"""The batch contract between the data pipeline and the model / loss, and the collate function that builds it.

Batch.images:  float32 (B, 3, H, W), RGB in [0, 1], H and W multiples of 32.
Batch.targets: float32 (N, 6), rows [image_index_in_batch, class_id, cx, cy, w, h], normalized to (H, W).
Everything else (indices, original sizes, letterbox ratio and padding) is for evaluation and plotting.

For CUDA the loaders collate images as uint8 (a quarter of the bytes through worker shared memory, pinned
memory and the PCIe copy) and `Batch.to(device)` turns them into float32 [0, 1] on the device: the loop must
always go through `batch.to(device)`, which gives the contract above on every device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
import torch

from trainer.data.config import STRIDE


class Sample(NamedTuple):
    """One dataset item, as a worker produces it (numpy, so collation happens once per batch)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB, H = W = imgsz
    labels: np.ndarray  # (k, 5) float32: class, cx, cy, w, h normalized to the image
    index: int  # position in the dataset
    image_id: int  # image_id in the dataset index
    epoch: int  # the epoch whose sample drew it
    draw: int  # its position in that epoch's sample (seeds its augmentation)
    original_size: tuple[int, int]  # (height, width) of the image file
    ratio: tuple[float, float]  # letterbox (x, y) resize factors: input pixel = original pixel * ratio + pad
    pad: tuple[float, float]  # letterbox (left, top) padding in input pixels


@dataclass
class Batch:
    images: torch.Tensor  # (B, 3, H, W) float32 RGB in [0, 1] (uint8 0..255 from a CUDA loader until .to())
    targets: torch.Tensor  # (N, 6) float32 [image_index_in_batch, class_id, cx, cy, w, h], normalized
    indices: torch.Tensor  # (B,) int64 positions in the dataset
    image_ids: torch.Tensor  # (B,) int64 image_id in the dataset index
    original_sizes: torch.Tensor  # (B, 2) int64 (height, width) of the image files
    ratios: torch.Tensor  # (B, 2) float64 letterbox (x, y) factors at this batch's input size
    pads: torch.Tensor  # (B, 2) float64 letterbox (left, top) padding at this batch's input size

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Images (as float32 in [0, 1]) and targets to the device; the rest stays on the CPU for evaluation."""
        images = self.images.to(device, non_blocking=non_blocking)
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        return Batch(images, self.targets.to(device, non_blocking=non_blocking),
                     self.indices, self.image_ids, self.original_sizes, self.ratios, self.pads)

    def pin_memory(self) -> Batch:
        """Called by DataLoader(pin_memory=True): page-locked images and targets copy to the GPU asynchronously."""
        return Batch(self.images.pin_memory(), self.targets.pin_memory(), self.indices, self.image_ids,
                     self.original_sizes, self.ratios, self.pads)

    def to_original_pixels(self, boxes_xyxy: torch.Tensor, batch_index: int) -> torch.Tensor:
        """Map (n, 4) x1y1x2y2 boxes in input pixels of image `batch_index` back to its original pixels."""
        ratio = self.ratios[batch_index].to(boxes_xyxy)
        pad = self.pads[batch_index].to(boxes_xyxy)
        return (boxes_xyxy - pad.repeat(2)) / ratio.repeat(2)


def multi_scale_sizes(imgsz: int) -> list[int]:
    """Candidate input sides for --multi-scale: multiples of 32 within imgsz * [0.5, 1.5]."""
    low = max(STRIDE, -(-imgsz // 2 // STRIDE) * STRIDE)
    high = max(low, (imgsz * 3 // 2) // STRIDE * STRIDE)
    return list(range(low, high + 1, STRIDE))


class Collate:
    """Stacks samples into a Batch; with multi_scale, resizes the whole batch to a random side.

    The side is a pure function of (seed, epoch, step), with step = first draw // batch_stride: with
    batch_stride = per-rank batch * world size, all ranks of a distributed run pick the same side on the
    same step (so no rank waits on a larger batch), whatever worker collates it. Images are resized as
    uint8 with OpenCV (area filter down, bilinear up) before the float conversion: cheaper than resizing floats,
    and bit-identical whichever process or thread count does it.
    """

    def __init__(self, imgsz: int, multi_scale: bool = False, seed: int = 0, batch_stride: int = 1,
                 uint8_images: bool = False):
        self.imgsz, self.multi_scale, self.seed, self.batch_stride = imgsz, multi_scale, seed, max(1, batch_stride)
        self.uint8_images = uint8_images

    def __call__(self, samples: list[Sample]) -> Batch:
        side = self.scale_for(samples[0].epoch, samples[0].draw) if self.multi_scale else samples[0].image.shape[0]
        factor = side / samples[0].image.shape[0]
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        # Transposing to CHW while still uint8 moves a quarter of the bytes a float permute would.
        stacked = torch.from_numpy(np.stack([
            (s.image if s.image.shape[0] == side else cv2.resize(s.image, (side, side), interpolation=interpolation))
            .transpose(2, 0, 1) for s in samples]))
        images = stacked if self.uint8_images else stacked.float().div_(255.0)
        # Normalized targets do not change: every square image is resized uniformly.
        label_rows = [np.concatenate([np.full((len(s.labels), 1), i, dtype=np.float32), s.labels], axis=1)
                      for i, s in enumerate(samples)]
        targets = torch.from_numpy(np.concatenate(label_rows).reshape(-1, 6).astype(np.float32))
        ratios = torch.tensor([s.ratio for s in samples], dtype=torch.float64) * factor
        pads = torch.tensor([s.pad for s in samples], dtype=torch.float64) * factor
        return Batch(
            images=images,
            targets=targets,
            indices=torch.tensor([s.index for s in samples], dtype=torch.int64),
            image_ids=torch.tensor([s.image_id for s in samples], dtype=torch.int64),
            original_sizes=torch.tensor([s.original_size for s in samples], dtype=torch.int64),
            ratios=ratios,
            pads=pads,
        )

    def scale_for(self, epoch: int, draw: int) -> int:
        sizes = multi_scale_sizes(self.imgsz)
        rng = np.random.default_rng([self.seed, epoch, draw // self.batch_stride, 0x5CA1E])
        return int(sizes[rng.integers(len(sizes))])
