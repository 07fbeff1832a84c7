"""The knobs of the bundled sample dataset (kept apart from the generator so the CLI loads fast)."""

from __future__ import annotations

from dataclasses import dataclass

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MAX_CLASSES = 100  # above 10 classes, class k is the two-digit number k (two digits side by side)
MIN_TRAIN_IMAGES, MIN_VAL_IMAGES = 50, 20  # room for the deliberate defects (about 25 train and 5 val images)


@dataclass(frozen=True)
class SampleSpec:
    """What the sample dataset looks like; the defaults are what demo, tests and benchmarks use."""

    train_images: int = 800
    classes: int = 10  # 10 .. 100; above 10, class k is the number k written with two digits ("four-two")
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


def class_names(classes: int = 10) -> tuple[str, ...]:
    """The sample's class names: the ten digits' names, or above 10 classes "tens-units" (e.g. "four-two")."""
    if not len(CLASS_NAMES) <= classes <= MAX_CLASSES:  # the deliberate defects use class ids up to 6
        raise ValueError(f"the sample has {len(CLASS_NAMES)} to {MAX_CLASSES} classes, not {classes}")
    if classes <= len(CLASS_NAMES):
        return CLASS_NAMES[:classes]
    return tuple(f"{CLASS_NAMES[k // 10]}-{CLASS_NAMES[k % 10]}" for k in range(classes))
