"""The knobs of the bundled sample dataset (kept apart from the generator so the CLI loads fast)."""

from __future__ import annotations

from dataclasses import dataclass

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MIN_TRAIN_IMAGES, MIN_VAL_IMAGES = 50, 20  # room for the deliberate defects (about 25 train and 5 val images)


@dataclass(frozen=True)
class SampleSpec:
    """What the sample dataset looks like; the defaults are what demo, tests and benchmarks use."""

    train_images: int = 800
    val_images: int = 200
    min_side: int = 320  # image sides are drawn from [min_side, max_side]
    max_side: int = 640
    tail_exponent: float = 1.5  # class k (0-based) is drawn with probability ~ (k + 1) ** -tail_exponent
    mean_objects: float = 4.5  # objects per non-background image (Poisson, at least 1)
    background_fraction: float = 0.04  # images with no object and an empty label file
    min_object_px: int = 10  # object height range in pixels (log-uniform)
    max_object_px: int = 170
    shifted_class: int = 2  # in val this class is drawn `shift_scale` times smaller (a scale-shift to find)
    shift_scale: float = 0.4
    png_fraction: float = 0.1
    inject_defects: bool = True
