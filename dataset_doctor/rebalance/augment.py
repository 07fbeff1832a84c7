"""The box-aware augmentation that turns a copy of a train image into a new, different picture.

Why augment at all: a byte-identical copy only repeats a gradient; a flipped, slightly moved, re-lit copy teaches
something closer to a new example. Everything is mild on purpose, so the copy still looks like the data (no
mosaic, no heavy distortion): the trainer adds its own augmentation on top.

Boxes go through albumentations with the image (BboxParams in YOLO format); a box left with less than
`MIN_VISIBILITY` of its area after a crop or shift is dropped, the rest are clipped to the image. Each copy is
drawn from its own seed, so the same seed gives the same picture whichever worker makes it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

MIN_VISIBILITY = 0.4  # a box keeping less than this fraction of its area is dropped (mostly cut off)
MIN_BOX_SIDE = 1e-4  # normalised: what is left after clipping must still be a box
_DRAWS = 4  # at most this many draws per copy (see augment_copy)
PAD_VALUE = 114  # grey, the letterbox colour YOLO trainers use, for pixels moved in from outside the image


@dataclass(frozen=True)
class AugmentedCopy:
    image: np.ndarray  # HxWx3 uint8, BGR
    boxes: np.ndarray  # (n, 4) float64, YOLO cx cy w h, inside [0, 1]
    classes: np.ndarray  # (n,) int64
    transform: str  # the transforms applied, with their main parameters, for the manifest


def build_pipeline(flip: bool = True) -> A.Compose:
    """Flip, small crop, small scale/shift/rotate, light and colour changes, and now and then blur or noise.

    `flip=False` for data where mirroring changes the meaning (text, digits, left/right signs).
    """
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5 if flip else 0.0),
            A.RandomCropFromBorders(crop_left=0.1, crop_right=0.1, crop_top=0.1, crop_bottom=0.1, p=0.3),
            A.Affine(scale=(0.85, 1.15), translate_percent=(-0.06, 0.06), rotate=(-7, 7), rotate_method="ellipse",
                     keep_ratio=True, border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE, p=0.7),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.6),
            A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=25, val_shift_limit=10, p=0.5),
            A.OneOf([
                A.GaussianBlur(blur_limit=(3, 5)),
                A.MotionBlur(blur_limit=(3, 7)),
                A.GaussNoise(std_range=(0.02, 0.06), noise_scale_factor=0.5),
            ], p=0.3),
        ],
        bbox_params=box_params(),
        save_applied_params=True,
    )


def box_params() -> A.BboxParams:
    """YOLO boxes with a `classes` label field; mostly cut-off boxes dropped, the rest clipped to the image."""
    return A.BboxParams(format="yolo", label_fields=["classes"], min_visibility=MIN_VISIBILITY, clip=True,
                        filter_invalid_bboxes=True)


def augment_copy(pipeline: A.Compose, image: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
                 seed: int) -> AugmentedCopy:
    """One augmented copy of `image` with its YOLO boxes, fully determined by `seed`.

    `pipeline` comes from build_pipeline (or is any Compose with box_params() and save_applied_params=True).

    The pipeline's transforms share one generator pair seeded here. (Compose.set_random_seed would give every
    transform its own generator with the same seed, so all their "apply with probability p" draws would be the
    same number and the transforms would switch on and off together.) Draws continue from that stream when a
    copy comes out untransformed (it would be the original picture again) or loses boxes to a crop or shift
    (the copy exists to add those instances): up to `_DRAWS` draws, keeping the first that keeps every box,
    else the one that keeps the most. Boxes can still be lost, and what was written is what gets counted.
    """
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    prepared = {"image": image, "bboxes": clip_yolo_boxes(boxes), "classes": np.asarray(classes, dtype=np.int64)}
    best: AugmentedCopy | None = None
    for _ in range(_DRAWS):
        result = pipeline(**prepared)
        if not result["applied_transforms"]:
            continue
        out_boxes, out_classes = _valid_boxes(np.asarray(result["bboxes"], dtype=np.float64).reshape(-1, 4),
                                              np.asarray(result["classes"], dtype=np.int64).reshape(-1))
        candidate = AugmentedCopy(result["image"], out_boxes, out_classes,
                                  describe_transforms(result["applied_transforms"]))
        if best is None or len(candidate.classes) > len(best.classes):
            best = candidate
        if len(best.classes) == len(prepared["classes"]):
            break
    if best is None:  # four untransformed draws in a row: about 1e-7, but never write a bare copy silently
        best = AugmentedCopy(image.copy(), prepared["bboxes"], prepared["classes"], "none")
    return best


def clip_yolo_boxes(boxes: np.ndarray) -> np.ndarray:
    """Clip YOLO boxes to the image. Boxes may overhang by the audit's tolerance; albumentations rejects that."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1 = np.clip(boxes[:, 0] - boxes[:, 2] / 2, 0, 1)
    y1 = np.clip(boxes[:, 1] - boxes[:, 3] / 2, 0, 1)
    x2 = np.clip(boxes[:, 0] + boxes[:, 2] / 2, 0, 1)
    y2 = np.clip(boxes[:, 1] + boxes[:, 3] / 2, 0, 1)
    return np.column_stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


def _valid_boxes(boxes: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip once more after the float32 round trip and drop slivers, so every written line passes box_rules."""
    boxes = clip_yolo_boxes(boxes)
    keep = (boxes[:, 2] >= MIN_BOX_SIDE) & (boxes[:, 3] >= MIN_BOX_SIDE)
    return boxes[keep], classes[keep]


def describe_transforms(applied: list[tuple[str, dict]]) -> str:
    """A short, readable account of what was applied, e.g. 'HorizontalFlip; Affine(scale=1.04, rotate=-3.1)'."""
    parts = []
    for name, params in applied:
        shown = [f"{label}={_number(params[key])}" for key, label in _SHOWN_PARAMS.get(name, ()) if key in params]
        parts.append(f"{name}({', '.join(shown)})" if shown else name)
    return "; ".join(parts) if parts else "none"


# Parameters worth a glance in the manifest (the seed column reproduces everything else).
_SHOWN_PARAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "RandomCropFromBorders": (("crop_coords", "box"),),
    "Affine": (("scale", "scale"), ("rotate", "rotate")),
    "RandomBrightnessContrast": (("alpha", "contrast"), ("beta", "brightness")),
    "HueSaturationValue": (("hue_shift", "hue"), ("sat_shift", "sat"), ("val_shift", "val")),
}


def _number(value: object) -> str:
    if isinstance(value, dict):
        values = list(value.values())
        return _number(values[0]) if len(set(values)) == 1 else "(" + ",".join(_number(v) for v in values) + ")"
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_number(v) for v in value) + ")"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        return f"{float(value):.3g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
