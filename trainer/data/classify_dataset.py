"""Images of a folder-per-class dataset as tensors, with the augmentations classifiers are trained with.

Training: albumentations' RandomResizedCrop (Szegedy et al. 2015's Inception crop: a random area fraction
`crop_scale`..1 and aspect 3/4..4/3, resized to imgsz), horizontal flip and HSV jitter (the same hue,
saturation and value gains as the detector's augment, trainer/data/augment.py). Evaluation: the short side
resized to imgsz and the centre square cropped, deterministic. Images are read by bytes (images.read_image_file),
so names that are not UTF-8 and huge images are safe; an image that cannot be decoded any more raises a
DoctorError naming it (the index already left out those that could not be decoded when it was built).

Each item is (image tensor (3, imgsz, imgsz) float in 0..1, RGB; class id). Augmentation randomness comes from
the sample key's draw number (trainer/data/sampler.py), so a resumed run sees the same augmented images.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from dataset_doctor.dataset.images import read_image_file
from dataset_doctor.errors import DoctorError
from trainer.data.sampler import SampleKey


@dataclass(frozen=True)
class ClassifyAugment:
    imgsz: int = 224
    train: bool = False  # random crop / flip / HSV when True, centre crop otherwise
    crop_scale: float = 0.08
    fliplr: float = 0.5
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4


class ClassifyDataset(Dataset):
    """paths[i] with class targets[i]; indexed by a SampleKey (training) or a plain int (evaluation)."""

    def __init__(self, paths: list[str], targets: list[int] | np.ndarray, augment: ClassifyAugment, seed: int = 0):
        self.paths, self.targets = list(paths), np.asarray(targets, dtype=np.int64)
        self.augment, self.seed = augment, seed
        self._transform = None  # built lazily in each worker process

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: SampleKey | int) -> tuple[torch.Tensor, int]:
        index, draw = (key.index, key.draw + key.epoch * 1_000_003) if isinstance(key, SampleKey) else (int(key), 0)
        pixels = read_image_file(self.paths[index], color=True)
        if pixels is None:
            raise DoctorError("image can no longer be decoded (changed since the dataset was scanned?)",
                              self.paths[index])
        rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
        if self.augment.train:
            rgb = self._train_transform(rgb, np.random.default_rng([self.seed, index, draw]))
        else:
            rgb = centre_crop(rgb, self.augment.imgsz)
        tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)
        return tensor, int(self.targets[index])

    def _train_transform(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import albumentations as A  # loaded where used (worker processes need not pickle it)

        if self._transform is None:
            size = self.augment.imgsz
            self._transform = A.Compose([
                A.RandomResizedCrop(size=(size, size), scale=(self.augment.crop_scale, 1.0), p=1.0),
                A.HorizontalFlip(p=self.augment.fliplr),
            ])
        self._transform.set_random_seed(int(rng.integers(2**31)))
        cropped = self._transform(image=rgb)["image"]
        return hsv_jitter(cropped, rng, self.augment.hsv_h, self.augment.hsv_s, self.augment.hsv_v)


def centre_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """Short side resized to `size`, then the centre size x size square (the evaluation view)."""
    height, width = rgb.shape[:2]
    scale = size / min(height, width)
    resized = cv2.resize(rgb, (max(size, round(width * scale)), max(size, round(height * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
    return resized[top:top + size, left:left + size]


def hsv_jitter(rgb: np.ndarray, rng: np.random.Generator, hue: float, saturation: float, value: float) -> np.ndarray:
    """Random gains in [1 - g, 1 + g] for saturation and value, a hue shift of up to +-hue of the circle."""
    if not (hue or saturation or value):
        return rgb
    gains = rng.uniform(-1, 1, 3) * [hue, saturation, value] + [0, 1, 1]
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + gains[0] * 180) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * gains[1], 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] * gains[2], 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
