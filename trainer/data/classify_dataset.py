"""Images of a folder-per-class dataset as tensors, with the augmentations classifiers are trained with.

Training: albumentations' RandomResizedCrop (Szegedy et al. 2015's Inception crop: a random area fraction
`crop_scale`..1 and aspect 3/4..4/3, resized to imgsz), horizontal flip and HSV jitter (the same hue,
saturation and value gains as the detector's augment, trainer/data/augment.py). Evaluation: the short side
resized to imgsz and the centre square cropped, deterministic. Images are read by bytes (images.read_image_file),
so names that are not UTF-8 and huge images are safe; an image that cannot be decoded any more raises a
DoctorError naming it (the index already left out those that could not be decoded when it was built).

Each item is (image tensor (3, imgsz, imgsz) float in 0..1, RGB; class id). Augmentation randomness comes from
the sample key's draw number (trainer/data/sampler.py), so a resumed run sees the same augmented images.

Every image is first made its "base" (load_base): decoded, RGB, and when its short side is above
BASE_SIDE_FACTOR x imgsz, shrunk (INTER_AREA) to that. The crops then start from the base. `--cache ram` keeps
the bases in memory (fill_base_cache: estimated first, skipped with a warning when it would not fit), so a
cached run sees exactly the batches an uncached one sees, only without decoding each epoch.

Optional RandAugment-style ops (`randaugment` N > 0; Cubuk et al. 2020): after the crop and flip, N ops drawn
without replacement from RANDAUGMENT_OPS (albumentations: rotate, shear, translate, brightness, contrast,
saturation, posterize, solarize, equalize, autocontrast, sharpen), each at the magnitude
`randaugment_magnitude` of 10 (timm's scale: 9 is its default for ImageNet).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
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
    randaugment: int = 0  # RandAugment-style ops per training image (0: off)
    randaugment_magnitude: int = 9  # their strength, 0..10


BASE_SIDE_FACTOR = 2  # bases keep a short side of up to 2 x imgsz: a crop of a quarter of the side stays sharp
MAX_MAGNITUDE = 10


def randaugment_ops(magnitude: int) -> list:
    """The RandAugment op list at one magnitude (0..10), as albumentations transforms (each applied when drawn).

    Ranges follow timm's rand_augment at magnitude / 10: rotate up to 30 degrees, shear up to 0.3 (about 17
    degrees), translate up to 45% of the side, brightness / contrast / saturation up to +-90%, posterize down to
    4 bits, solarize above a threshold down to 0 (at 10, every pixel); equalize, autocontrast, sharpen.
    """
    import albumentations as A

    m = max(0, min(MAX_MAGNITUDE, magnitude)) / MAX_MAGNITUDE
    shear_degrees = float(np.degrees(np.arctan(0.3 * m)))
    return [
        A.Affine(rotate=(-30 * m, 30 * m), border_mode=cv2.BORDER_CONSTANT, fill=128, p=1.0),
        A.Affine(shear={"x": (-shear_degrees, shear_degrees), "y": (0, 0)}, border_mode=cv2.BORDER_CONSTANT,
                 fill=128, p=1.0),
        A.Affine(shear={"x": (0, 0), "y": (-shear_degrees, shear_degrees)}, border_mode=cv2.BORDER_CONSTANT,
                 fill=128, p=1.0),
        A.Affine(translate_percent={"x": (-0.45 * m, 0.45 * m), "y": (0, 0)}, border_mode=cv2.BORDER_CONSTANT,
                 fill=128, p=1.0),
        A.Affine(translate_percent={"x": (0, 0), "y": (-0.45 * m, 0.45 * m)}, border_mode=cv2.BORDER_CONSTANT,
                 fill=128, p=1.0),
        A.RandomBrightnessContrast(brightness_limit=0.9 * m, contrast_limit=0, p=1.0),
        A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=0.9 * m, p=1.0),
        A.ColorJitter(brightness=0, contrast=0, saturation=0.9 * m, hue=0, p=1.0),
        A.Posterize(num_bits=max(1, round(8 - 4 * m)), p=1.0),
        A.Solarize(threshold_range=(1 - m, 1 - m), p=1.0),
        A.Equalize(p=1.0),
        A.AutoContrast(p=1.0),
        A.Sharpen(alpha=(0.1 * m, 0.9 * m), p=1.0),
    ]


def load_base(path: str, imgsz: int) -> np.ndarray:
    """The decoded RGB image, its short side shrunk to BASE_SIDE_FACTOR x imgsz when above that."""
    pixels = read_image_file(path, color=True)
    if pixels is None:
        raise DoctorError("image can no longer be decoded (changed since the dataset was scanned?)", path)
    rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    height, width = rgb.shape[:2]
    limit = BASE_SIDE_FACTOR * imgsz
    if min(height, width) > limit:
        scale = limit / min(height, width)
        rgb = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                         interpolation=cv2.INTER_AREA)
    return rgb


def base_cache_bytes(sizes: np.ndarray, imgsz: int) -> int:
    """Bytes of the bases of images of (width, height) `sizes` (from the index, nothing decoded)."""
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    if not len(sizes):
        return 0
    scale = np.minimum(1.0, BASE_SIDE_FACTOR * imgsz / np.maximum(sizes.min(axis=1), 1))
    return int((np.round(sizes[:, 0] * scale) * np.round(sizes[:, 1] * scale) * 3).sum())


def fill_base_cache(paths: list[str], sizes: np.ndarray, imgsz: int, workers: int = 0,
                    log=print) -> dict[str, np.ndarray] | None:
    """`--cache ram`: every image's base, decoded once in threads (OpenCV releases the GIL), keyed by path.

    None (with a warning) when the estimate exceeds the detector's headroom of the available memory."""
    from trainer.data.dataset import RAM_HEADROOM, available_memory_bytes

    unique = list(dict.fromkeys(paths))
    first = {path: position for position, path in reversed(list(enumerate(paths)))}
    needed = base_cache_bytes(np.asarray(sizes).reshape(-1, 2)[[first[p] for p in unique]], imgsz)
    available = available_memory_bytes()
    if available is not None and needed > RAM_HEADROOM * available:
        log(f"warning: --cache ram: {len(unique)} images need about {needed / 2**30:.1f} GiB, more than "
            f"{RAM_HEADROOM:.0%} of the {available / 2**30:.1f} GiB available: not caching")
        return None
    log(f"caching {len(unique)} images in RAM: about {needed / 2**20:.1f} MiB")
    with ThreadPoolExecutor(max_workers=max(1, workers or (os.cpu_count() or 1))) as pool:
        return dict(zip(unique, pool.map(load_base, unique, [imgsz] * len(unique))))


class ClassifyDataset(Dataset):
    """paths[i] with class targets[i]; indexed by a SampleKey (training) or a plain int (evaluation).

    cache: bases by path (fill_base_cache); paths missing from it are decoded as without a cache."""

    def __init__(self, paths: list[str], targets: list[int] | np.ndarray, augment: ClassifyAugment, seed: int = 0,
                 cache: dict[str, np.ndarray] | None = None):
        self.paths, self.targets = list(paths), np.asarray(targets, dtype=np.int64)
        self.augment, self.seed = augment, seed
        self.cache = cache
        self._transform = None  # built lazily in each worker process

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: SampleKey | int) -> tuple[torch.Tensor, int]:
        index, draw = (key.index, key.draw + key.epoch * 1_000_003) if isinstance(key, SampleKey) else (int(key), 0)
        path = self.paths[index]
        cached = self.cache.get(path) if self.cache is not None else None
        rgb = cached if cached is not None else load_base(path, self.augment.imgsz)
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
            steps = [A.RandomResizedCrop(size=(size, size), scale=(self.augment.crop_scale, 1.0), p=1.0),
                     A.HorizontalFlip(p=self.augment.fliplr)]
            if self.augment.randaugment > 0:
                ops = randaugment_ops(self.augment.randaugment_magnitude)
                steps.append(A.SomeOf(ops, n=min(self.augment.randaugment, len(ops)), replace=False, p=1.0))
            self._transform = A.Compose(steps)
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
