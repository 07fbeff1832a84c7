"""The box-aware augmentation: boxes follow the pixels, cut-off boxes are dropped, seeds decide everything."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest

from dataset_doctor.dataset.box_rules import box_error_checks
from dataset_doctor.rebalance.augment import (
    AugmentedCopy,
    augment_copy,
    box_params,
    build_pipeline,
    clip_yolo_boxes,
    describe_transforms,
)

BOXES = np.array([[0.3, 0.4, 0.2, 0.3], [0.72, 0.65, 0.16, 0.2]])
CLASSES = np.array([1, 4])


def _scene(width: int = 320, height: int = 240) -> np.ndarray:
    """A dark image with a bright, saturated rectangle exactly under each box of BOXES."""
    image = np.full((height, width, 3), 40, dtype=np.uint8)
    for (cx, cy, w, h), colour in zip(BOXES, [(255, 255, 255), (0, 255, 255)]):
        x1, y1 = round((cx - w / 2) * width), round((cy - h / 2) * height)
        x2, y2 = round((cx + w / 2) * width), round((cy + h / 2) * height)
        image[y1:y2, x1:x2] = colour
    return image


def _object_fill(copy: AugmentedCopy, box: np.ndarray) -> float:
    """Fraction of pixels inside `box` (shrunk a little) that are object pixels, i.e. not the dark background."""
    height, width = copy.image.shape[:2]
    cx, cy, w, h = box
    x1, x2 = int((cx - 0.35 * w) * width), int((cx + 0.35 * w) * width)
    y1, y2 = int((cy - 0.35 * h) * height), int((cy + 0.35 * h) * height)
    patch = copy.image[y1:y2, x1:x2].astype(np.float64)
    return float((patch.max(axis=2) > 120).mean())


@pytest.fixture(scope="module")
def pipeline() -> A.Compose:
    return build_pipeline()


def test_boxes_follow_the_objects(pipeline: A.Compose) -> None:
    image = _scene()
    kept = 0
    for seed in range(40):
        copy = augment_copy(pipeline, image, BOXES, CLASSES, seed)
        assert copy.transform != "none"
        for box in copy.boxes:
            assert _object_fill(copy, box) > 0.8, (seed, copy.transform)
        kept += len(copy.classes)
    assert kept >= 0.9 * 40 * len(CLASSES)  # mild transforms: boxes are rarely lost


def test_written_boxes_pass_box_rules(pipeline: A.Compose) -> None:
    import pandas as pd

    boxes = np.array([[0.5, 0.5, 0.2, 0.2], [0.995, 0.5, 0.03, 0.2], [0.05, 0.05, 0.1, 0.1]])  # one overhangs
    for seed in range(30):
        copy = augment_copy(pipeline, _scene(), boxes, np.array([0, 1, 2]), seed)
        table = pd.DataFrame({"cls": copy.classes, "cx": copy.boxes[:, 0], "cy": copy.boxes[:, 1],
                              "w": copy.boxes[:, 2], "h": copy.boxes[:, 3]})
        assert (box_error_checks(table, nc=3, tolerance=0.0) == "").all()


def test_same_seed_same_copy_other_seed_other_copy(pipeline: A.Compose) -> None:
    image = _scene()
    first = augment_copy(pipeline, image, BOXES, CLASSES, 7)
    augment_copy(pipeline, image, BOXES, CLASSES, 8)  # state left behind by another copy must not matter
    again = augment_copy(build_pipeline(), image, BOXES, CLASSES, 7)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.boxes, again.boxes)
    assert first.transform == again.transform
    other = augment_copy(pipeline, image, BOXES, CLASSES, 9)
    assert not np.array_equal(first.image, other.image)


def test_transforms_switch_on_independently(pipeline: A.Compose) -> None:
    # Compose.set_random_seed would give every transform the same stream and make them all fire together.
    names = [describe_transforms_names(augment_copy(pipeline, _scene(), BOXES, CLASSES, seed).transform)
             for seed in range(60)]
    flips = np.array(["HorizontalFlip" in n for n in names])
    colour = np.array(["HueSaturationValue" in n for n in names])
    assert 0.25 < flips.mean() < 0.75 and 0.25 < colour.mean() < 0.75
    assert (flips != colour).any()


def test_no_flip_pipeline_never_mirrors() -> None:
    no_flip = build_pipeline(flip=False)
    names = set().union(*(describe_transforms_names(augment_copy(no_flip, _scene(), BOXES, CLASSES, seed).transform)
                          for seed in range(40)))
    assert "HorizontalFlip" not in names and "Affine" in names


def describe_transforms_names(description: str) -> set[str]:
    return {part.split("(")[0] for part in description.split("; ")}


def test_mostly_cut_off_boxes_are_dropped() -> None:
    # Shift the image right by 40% of its width: the left box stays, the right one (at x 0.8..0.95) leaves.
    shift = A.Compose([A.Affine(translate_percent={"x": (0.4, 0.4), "y": (0.0, 0.0)}, p=1.0)],
                      bbox_params=box_params(), save_applied_params=True)
    boxes = np.array([[0.2, 0.5, 0.2, 0.2], [0.875, 0.5, 0.15, 0.2]])
    copy = augment_copy(shift, _scene(), boxes, np.array([3, 5]), seed=0)
    assert copy.classes.tolist() == [3]
    np.testing.assert_allclose(copy.boxes[0], [0.6, 0.5, 0.2, 0.2], atol=0.01)
    assert copy.transform.startswith("Affine")


def test_partly_cut_boxes_are_clipped_not_dropped() -> None:
    # A box shifted so that half of it stays visible (above MIN_VISIBILITY) is kept and clipped to the edge.
    shift = A.Compose([A.Affine(translate_percent={"x": (0.2, 0.2), "y": (0.0, 0.0)}, p=1.0)],
                      bbox_params=box_params(), save_applied_params=True)
    copy = augment_copy(shift, _scene(), np.array([[0.8, 0.5, 0.1, 0.2]]), np.array([2]), seed=0)
    assert copy.classes.tolist() == [2]
    x2 = copy.boxes[0, 0] + copy.boxes[0, 2] / 2
    assert x2 == pytest.approx(1.0) and copy.boxes[0, 2] == pytest.approx(0.05, abs=0.005)


def test_clip_yolo_boxes_keeps_inside_boxes_and_trims_overhang() -> None:
    clipped = clip_yolo_boxes(np.array([[0.5, 0.5, 0.2, 0.2], [0.995, 0.5, 0.03, 0.2]]))
    np.testing.assert_allclose(clipped[0], [0.5, 0.5, 0.2, 0.2])
    np.testing.assert_allclose(clipped[1], [0.99, 0.5, 0.02, 0.2])


def test_background_images_augment_without_boxes(pipeline: A.Compose) -> None:
    copy = augment_copy(pipeline, _scene(), np.zeros((0, 4)), np.zeros(0, dtype=np.int64), seed=3)
    assert copy.boxes.shape == (0, 4) and copy.classes.shape == (0,)


def test_describe_transforms_is_short_and_readable() -> None:
    text = describe_transforms([("HorizontalFlip", {"shape": (10, 10, 3)}),
                                ("Affine", {"scale": {"x": 1.04, "y": 1.04}, "rotate": -3.14159, "matrix": None})])
    assert text == "HorizontalFlip; Affine(scale=1.04, rotate=-3.14)"
    assert describe_transforms([]) == "none"
