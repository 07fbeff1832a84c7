"""Settings of the training data pipeline: what is read, how it is sampled, and how it is augmented.

Kept free of heavy imports (no torch, no OpenCV) so the CLI can build its options from these defaults and
`args.yaml` can record them with `dataclasses.asdict` without loading the pipeline.
The augmentation defaults are the ones YOLOv8 users know (its documented `hyp` defaults), plus box copy-paste,
which YOLOv8 can only do with segmentation polygons.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from dataset_doctor.errors import DoctorError
from dataset_doctor.rebalance import SUGGESTED_COPY_PASTE

STRIDE = 32  # the largest stride of the detector: input sides must be multiples of it
CACHE_MODES = ("none", "ram")
SAMPLERS = ("uniform", "balanced")
IMAGE_WEIGHT_REDUCTIONS = ("max", "sum")


@dataclass(frozen=True)
class AugmentConfig:
    """Random training augmentation; evaluation never augments."""

    mosaic: float = 1.0  # probability that a training sample is a mosaic of 4 images
    close_mosaic: int = 10  # no mosaic in the last N epochs: finish on whole images, as evaluation sees them
    degrees: float = 0.0  # rotation drawn from +/- degrees
    translate: float = 0.1  # translation drawn from +/- this fraction of the image side
    scale: float = 0.5  # zoom gain drawn from 1 +/- scale
    shear: float = 0.0  # shear drawn from +/- degrees, on each axis
    perspective: float = 0.0  # projective terms drawn from +/- this (0.0001..0.001 is a strong effect)
    fliplr: float = 0.5  # probability of a horizontal flip
    flipud: float = 0.0  # probability of a vertical flip
    hsv_h: float = 0.015  # hue shift drawn from +/- this fraction of the hue circle
    hsv_s: float = 0.7  # saturation gain drawn from 1 +/- hsv_s
    hsv_v: float = 0.4  # value (brightness) gain drawn from 1 +/- hsv_v
    pixel_ops: float = 0.01  # probability of each albumentations pixel op: Blur, MedianBlur, ToGray, CLAHE
    # probability per image of pasting one train instance into it (rare classes favoured); on by default since it
    # beat class weights alone in all six seeds of bench_imbalance (bench/README.md "Imbalance levers")
    copy_paste: float = SUGGESTED_COPY_PASTE

    def checked(self) -> AugmentConfig:
        """Raise a DoctorError for values that make no sense; return self."""
        for name in ("mosaic", "fliplr", "flipud", "pixel_ops", "copy_paste"):
            _require(0.0 <= getattr(self, name) <= 1.0, f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        for name in ("degrees", "translate", "shear", "perspective", "hsv_h", "hsv_s", "hsv_v"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        _require(0 <= self.scale < 1, f"scale must be in [0, 1), got {self.scale}")
        _require(self.translate <= 0.5, f"translate must be <= 0.5, got {self.translate}")
        _require(self.hsv_h <= 0.5, f"hsv_h must be <= 0.5 (half the hue circle), got {self.hsv_h}")
        _require(self.close_mosaic >= 0, f"close_mosaic must be >= 0, got {self.close_mosaic}")
        return self

    @staticmethod
    def off() -> AugmentConfig:
        """No random change at all: letterboxed whole images (what the painted-box tests and evaluation want)."""
        return AugmentConfig(mosaic=0.0, close_mosaic=0, translate=0.0, scale=0.0, fliplr=0.0, hsv_h=0.0,
                             hsv_s=0.0, hsv_v=0.0, pixel_ops=0.0, copy_paste=0.0)


@dataclass(frozen=True)
class DataConfig:
    """What the pipeline reads and how: input size, caching, sampling, loader processes."""

    imgsz: int = 640  # network input side in pixels (rounded up to a multiple of 32)
    multi_scale: bool = False  # per batch, a random side in imgsz * [0.5, 1.5] (multiple of 32)
    cache: str = "none"  # "ram": keep decoded, resized images in memory (estimate printed first)
    workers: int | None = None  # loader processes per training process; None: min(8, cores per process)
    sampler: str = "uniform"  # "balanced": draw images with weights from their boxes' class weights
    image_weight: str = "max"  # balanced sampler, per-image weight from its boxes: "max" (LVIS) or "sum" (YOLOv5)
    max_pixels: int = 50_000_000  # larger images decode reduced or are skipped (= images.DEFAULT_MAX_PIXELS)

    def checked(self, warn: Callable[[str], None] | None = None) -> DataConfig:
        """Validated copy with imgsz rounded up to a multiple of 32 (with a warning)."""
        _require(self.cache in CACHE_MODES, f"cache must be one of {', '.join(CACHE_MODES)}, got {self.cache!r}")
        _require(self.sampler in SAMPLERS, f"sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        _require(self.image_weight in IMAGE_WEIGHT_REDUCTIONS,
                 f"image_weight must be one of {', '.join(IMAGE_WEIGHT_REDUCTIONS)}, got {self.image_weight!r}")
        _require(self.workers is None or self.workers >= 0, f"workers must be >= 0, got {self.workers}")
        _require(self.max_pixels >= 1, f"max_pixels must be >= 1, got {self.max_pixels}")
        return replace(self, imgsz=round_imgsz(self.imgsz, warn))


def round_imgsz(imgsz: int, warn: Callable[[str], None] | None = None) -> int:
    """imgsz rounded up to a multiple of the stride: the feature maps at stride 32 need whole cells."""
    _require(isinstance(imgsz, int) and imgsz >= STRIDE, f"imgsz must be an integer >= {STRIDE}, got {imgsz!r}")
    rounded = -(-imgsz // STRIDE) * STRIDE
    if rounded != imgsz and warn is not None:
        warn(f"imgsz {imgsz} is not a multiple of {STRIDE}: using {rounded}")
    return rounded


def default_workers(world_size: int = 1) -> int:
    """min(8, the cores this process may use / processes sharing them): more workers than cores only contend."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(0, min(8, cores // max(world_size, 1)))


def config_fields(config: AugmentConfig | DataConfig) -> dict[str, object]:
    """A flat dict of the settings (for args.yaml)."""
    return {f.name: getattr(config, f.name) for f in fields(config)}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise DoctorError(message)
