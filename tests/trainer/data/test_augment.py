"""Geometric transforms keep boxes on their objects (painted rectangles found at the transformed boxes),
drop boxes whose objects are cut off, and the colour ops leave boxes and geometry alone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.trainer.painted import COLOURS, colour_box, colour_mask, painted_image
from trainer.data.augment import (
    MIN_BOX_PX,
    MIN_VISIBLE,
    PAD_VALUE,
    PixelOps,
    augment_sample,
    flip_horizontal,
    flip_vertical,
    hsv_jitter,
    keep_visible,
    letterbox,
    mosaic4,
    random_affine,
    random_affine_matrix,
    transform_boxes,
)
from trainer.data.config import AugmentConfig

GEOMETRY_ONLY = replace(AugmentConfig.off(), translate=0.1, scale=0.5)


def _tile(width: int, height: int, boxes: list[tuple[int, int, int, int]], colours) -> tuple:
    image = painted_image(width, height, boxes, colours)
    return image, np.array(boxes, dtype=np.float64).reshape(-1, 4), np.arange(len(boxes), dtype=np.int64)


@pytest.mark.parametrize(("width", "height", "size"), [(200, 130, 256), (97, 301, 128), (640, 480, 320),
                                                       (50, 50, 64)])
def test_letterbox_maps_boxes_exactly(width: int, height: int, size: int) -> None:
    boxes = [(int(width * 0.1), int(height * 0.1), int(width * 0.45), int(height * 0.4)),
             (int(width * 0.55), int(height * 0.5), int(width * 0.95), int(height * 0.9))]
    image, pixel_boxes, _ = _tile(width, height, boxes, COLOURS)
    boxed = letterbox(image, pixel_boxes, size)

    assert boxed.image.shape == (size, size, 3)
    scale = size / max(width, height)
    assert boxed.ratio[0] == pytest.approx(scale, rel=0.02) and boxed.ratio[1] == pytest.approx(scale, rel=0.02)
    for box, colour in zip(boxed.boxes, COLOURS):
        found = colour_box(boxed.image, colour)
        np.testing.assert_allclose(found, box, atol=1.0)
    # The padding is grey 114, the image content starts exactly at the padding offset.
    left, top = boxed.pad
    if left:
        assert (boxed.image[:, :left] == PAD_VALUE).all()
    if top:
        assert (boxed.image[:top] == PAD_VALUE).all()
    # The inverse map recovers the original pixels.
    ratio = np.array(boxed.ratio * 2)
    pad = np.array(boxed.pad * 2)
    np.testing.assert_allclose((boxed.boxes - pad) / ratio, pixel_boxes, atol=1e-9)


def test_letterbox_of_a_fitting_image_is_pure_padding() -> None:
    image, boxes, _ = _tile(64, 40, [(3, 5, 20, 30)], COLOURS)
    boxed = letterbox(image, boxes, 64)
    assert boxed.ratio == (1.0, 1.0) and boxed.pad == (0, 12)
    np.testing.assert_array_equal(boxed.image[12:52], image)
    np.testing.assert_allclose(boxed.boxes, [[3, 17, 20, 42]])


def test_mosaic_places_tiles_around_the_centre_with_their_boxes() -> None:
    size = 128
    tiles = [_tile(128, 96, [(10, 10, 40, 50), (70, 30, 120, 90)], COLOURS[0:2]),
             _tile(100, 128, [(5, 60, 60, 120)], COLOURS[2:3]),
             _tile(128, 70, [(90, 5, 127, 60), (2, 2, 30, 30)], COLOURS[3:5]),
             _tile(60, 128, [(10, 10, 50, 100), (0, 110, 20, 128)], COLOURS[5:7])]
    for seed in range(20):
        canvas, boxes, classes = mosaic4(tiles, size, np.random.default_rng(seed))
        assert canvas.shape == (2 * size, 2 * size, 3)
        assert classes.tolist() == [0, 1, 0, 0, 1, 0, 1]
        for box, colour in zip(boxes, COLOURS):
            clipped = np.clip(box, 0, 2 * size)
            found = colour_box(canvas, colour)
            if clipped[2] - clipped[0] < 1 or clipped[3] - clipped[1] < 1:
                assert found is None  # entirely cropped by the canvas edge
            else:
                np.testing.assert_array_equal(found, clipped)  # integer offsets: exact
        # Grey exactly where no tile reaches (the centre is the first draw of the generator).
        centre_x, centre_y = (int(v) for v in np.random.default_rng(seed).uniform(size / 2, 3 * size / 2, 2))
        covered = np.zeros(canvas.shape[:2], dtype=bool)
        for corner, (image, _, _) in enumerate(tiles):
            height, width = image.shape[:2]
            x0 = centre_x - width if corner in (0, 2) else centre_x
            y0 = centre_y - height if corner in (0, 1) else centre_y
            covered[max(y0, 0):y0 + height, max(x0, 0):x0 + width] = True
        assert (canvas[~covered] == PAD_VALUE).all()
        assert not (canvas[covered] == PAD_VALUE).all(axis=1).any()  # tiles are black or painted, never grey


@pytest.mark.parametrize("config", [
    replace(GEOMETRY_ONLY, translate=0.2, scale=0.5),
    replace(GEOMETRY_ONLY, translate=0.0, scale=0.0),
    replace(GEOMETRY_ONLY, translate=0.45, scale=0.9),
])
def test_affine_without_rotation_keeps_boxes_on_objects_and_drops_cut_off_ones(config: AugmentConfig) -> None:
    size = 160
    boxes = [(10, 12, 50, 60), (70, 20, 150, 50), (20, 90, 45, 150), (100, 100, 155, 155), (60, 70, 90, 85)]
    image, pixel_boxes, classes = _tile(size, size, boxes, COLOURS)
    dropped_total = 0
    for seed in range(25):
        out, kept, kept_classes = random_affine(image, pixel_boxes, classes, size, np.random.default_rng(seed), config)
        _, zoom = random_affine_matrix(np.random.default_rng(seed), (size, size), (size, size), config)
        assert out.shape == (size, size, 3)
        for class_id, box in enumerate(pixel_boxes):
            colour = COLOURS[class_id]
            visible_pixels = colour_mask(out, colour).sum()
            full_area = (box[2] - box[0]) * (box[3] - box[1]) * zoom**2
            if class_id in kept_classes:
                found = colour_box(out, colour)
                np.testing.assert_allclose(found, kept[kept_classes == class_id][0], atol=1.5)
            else:
                dropped_total += 1
                found = colour_box(out, colour)
                too_thin = found is None or min(found[2] - found[0], found[3] - found[1]) <= MIN_BOX_PX + 1.5
                # Cut off: only a small part of the object is in view (slack for the interpolated rim).
                assert too_thin or visible_pixels <= MIN_VISIBLE * full_area + 2 * (found[2:] - found[:2]).sum()
    if config.translate >= 0.45:
        assert dropped_total > 0  # the test saw boxes being dropped, not only kept


@pytest.mark.parametrize("config", [
    replace(GEOMETRY_ONLY, degrees=30.0),
    replace(GEOMETRY_ONLY, shear=10.0),
    replace(GEOMETRY_ONLY, degrees=15.0, shear=5.0, perspective=0.0008),
])
def test_rotation_shear_and_perspective_boxes_enclose_their_objects(config: AugmentConfig) -> None:
    size = 192
    boxes = [(20, 20, 70, 60), (110, 30, 170, 100), (30, 110, 80, 170), (120, 130, 160, 175)]
    image, pixel_boxes, classes = _tile(size, size, boxes, COLOURS)
    exact_checks = 0
    for seed in range(20):
        out, kept, kept_classes = random_affine(image, pixel_boxes, classes, size, np.random.default_rng(seed), config)
        matrix, _ = random_affine_matrix(np.random.default_rng(seed), (size, size), (size, size), config)
        for box, class_id in zip(kept, kept_classes):
            found = colour_box(out, COLOURS[class_id])
            assert found is not None
            # The box encloses the visible object ...
            assert (found[:2] >= box[:2] - 1.5).all() and (found[2:] <= box[2:] + 1.5).all()
            # ... and where the whole object stays in view it is exactly the object's bounding box.
            unclipped = transform_boxes(pixel_boxes[class_id:class_id + 1], matrix)[0]
            if (unclipped >= 2).all() and (unclipped <= size - 2).all():
                np.testing.assert_allclose(found, box, atol=2.0)
                exact_checks += 1
    assert exact_checks > 20


def test_flips_are_exact() -> None:
    boxes = [(3, 4, 20, 30), (40, 10, 63, 25)]
    image, pixel_boxes, _ = _tile(64, 48, boxes, COLOURS)
    flipped, flipped_boxes = flip_horizontal(image, pixel_boxes)
    for box, colour in zip(flipped_boxes, COLOURS):
        np.testing.assert_array_equal(colour_box(flipped, colour), box)
    np.testing.assert_allclose(flipped_boxes[0], [44, 4, 61, 30])
    flipped, flipped_boxes = flip_vertical(image, pixel_boxes)
    for box, colour in zip(flipped_boxes, COLOURS):
        np.testing.assert_array_equal(colour_box(flipped, colour), box)
    np.testing.assert_allclose(flipped_boxes[1], [40, 23, 63, 38])


def test_keep_visible_rules() -> None:
    before = np.array([[0, 0, 100, 100], [0, 0, 100, 100], [0, 0, 100, 100], [0, 0, 100, 100], [0, 0, 200, 5]],
                      dtype=np.float64)
    after = np.array([
        [10, 10, 110, 110],  # whole, moved: kept
        [0, 0, 100, 5],  # 5% visible: mostly cut off
        [0, 0, 1.5, 100],  # under 2 px wide
        [0, 0, 100, 4.5],  # cut into a 22:1 sliver (and only 4.5% visible)
        [0, 0, 200, 5],  # born 40:1: an elongated object is not a sliver
    ], dtype=np.float64)
    assert keep_visible(before, after, zoom=1.0).tolist() == [True, False, False, False, True]
    # Zooming out shrinks the reference area: a half-size copy is whole, not "25% visible".
    assert keep_visible(before[:1], np.array([[0, 0, 50, 50.0]]), zoom=0.5).tolist() == [True]
    assert keep_visible(before[:1], np.array([[0, 0, 50, 50.0]]), zoom=1.0).tolist() == [True]
    assert keep_visible(before[:1], np.array([[0, 0, 30, 30.0]]), zoom=1.0).tolist() == [False]


def test_zero_config_affine_is_the_identity() -> None:
    image, boxes, classes = _tile(96, 96, [(10, 10, 40, 50)], COLOURS)
    matrix, zoom = random_affine_matrix(np.random.default_rng(0), (96, 96), (96, 96), AugmentConfig.off())
    np.testing.assert_allclose(matrix, np.eye(3), atol=1e-12)
    out, kept, _ = random_affine(image, boxes, classes, 96, np.random.default_rng(0), AugmentConfig.off())
    np.testing.assert_array_equal(out, image)
    np.testing.assert_allclose(kept, boxes)


@pytest.mark.parametrize("use_mosaic", [True, False])
def test_full_augmentation_keeps_boxes_on_objects(use_mosaic: bool) -> None:
    size = 128
    config = replace(AugmentConfig.off(), translate=0.1, scale=0.5, fliplr=0.5, flipud=0.5)
    tiles = [_tile(128, 96, [(10, 10, 40, 50)], COLOURS[0:1]), _tile(100, 128, [(5, 60, 60, 120)], COLOURS[1:2]),
             _tile(128, 70, [(90, 5, 127, 60)], COLOURS[2:3]), _tile(60, 128, [(10, 10, 50, 100)], COLOURS[3:4])]
    tiles = [(image, boxes, np.array([k])) for k, (image, boxes, _) in enumerate(tiles)]
    seen = 0
    for seed in range(30):
        chosen = tiles if use_mosaic else tiles[seed % 4:seed % 4 + 1]
        out, boxes, classes = augment_sample(chosen, size, np.random.default_rng(seed), config, PixelOps(0.0))
        assert out.shape == (size, size, 3) and out.dtype == np.uint8
        for box, class_id in zip(boxes, classes):
            np.testing.assert_allclose(colour_box(out, COLOURS[class_id]), box, atol=1.5)
            seen += 1
    assert seen >= 30


def test_augmentation_is_a_function_of_the_seed() -> None:
    config = AugmentConfig(degrees=10, shear=3, pixel_ops=0.5)
    tile = _tile(120, 90, [(10, 10, 40, 50)], COLOURS)
    first = augment_sample([tile] * 4, 96, np.random.default_rng(7), config, PixelOps(0.5))
    again = augment_sample([tile] * 4, 96, np.random.default_rng(7), config, PixelOps(0.5))
    other = augment_sample([tile] * 4, 96, np.random.default_rng(8), config, PixelOps(0.5))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_hsv_jitter_changes_colour_but_keeps_greys_grey() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((8, 16, 3), dtype=np.uint8)
    image[:, :8] = (200, 40, 40)
    image[:, 8:] = (100, 100, 100)
    assert hsv_jitter(image, rng, 0, 0, 0) is image
    changed = 0
    for seed in range(10):
        out = hsv_jitter(image, np.random.default_rng(seed), 0.1, 0.7, 0.4)
        grey = out[:, 8:].astype(int)
        assert (np.abs(grey - grey[..., :1]) <= 1).all()  # saturation 0 stays 0 whatever the gains
        assert 100 * 0.6 - 1 <= grey.mean() <= 100 * 1.4 + 1  # value gain within 1 +/- 0.4
        changed += not np.array_equal(out[:, :8], image[:, :8])
    assert changed >= 9


def test_pixel_ops_come_from_albumentations_and_keep_the_geometry() -> None:
    image = painted_image(64, 64, [(10, 10, 40, 40)], COLOURS)
    always = PixelOps(1.0)
    out = always(image, np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)
    np.testing.assert_array_equal(out, PixelOps(1.0)(image, np.random.default_rng(0)))
    assert PixelOps(0.0)(image, np.random.default_rng(0)) is image
