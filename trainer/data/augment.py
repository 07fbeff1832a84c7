"""Image + box transforms of the training pipeline: letterbox, mosaic, random affine, flips, colour.

Geometry is done here with exact box maths rather than through a generic augmentation library: every
geometric op maps the image and its boxes with the same matrix, so a box stays on its object to floating
point precision (the tests paint rectangles and find them at the transformed boxes). Pixel-only ops (colour,
blur, grey, CLAHE) cannot move a box, and those come from albumentations.

Conventions: images are HxWx3 uint8 RGB; boxes are float64 (n, 4) pixel corners x1, y1, x2, y2 in
continuous coordinates (the image spans [0, W] x [0, H], pixel i covers [i, i + 1)); classes are int64 (n,).
All randomness comes from the numpy Generator passed in, so a sample is a pure function of its seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from trainer.data.config import AugmentConfig

PAD_VALUE = 114  # grey fill of letterbox and mosaic borders (the YOLO convention, kept so checkpoints transfer)
MIN_BOX_PX = 2.0  # a box narrower or lower than this after augmentation is no longer a usable target
MIN_VISIBLE = 0.10  # fraction of a box's (scaled) area that must stay in view, else its object is mostly cut off
MAX_ASPECT = 20.0  # a box cut into a sliver more elongated than this (and than it was) is dropped


@dataclass(frozen=True)
class Letterboxed:
    """A letterboxed image and the map from original pixels to it: x' = x * ratio[0] + pad[0] (same for y)."""

    image: np.ndarray
    boxes: np.ndarray
    ratio: tuple[float, float]  # (x, y) resize factors; they differ slightly because sides are rounded to pixels
    pad: tuple[int, int]  # (left, top) padding in pixels


def resize_to_fit(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the long side is `size`, keeping the aspect ratio (area filter when shrinking)."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
    if (new_width, new_height) == (width, height):
        return image
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (new_width, new_height), interpolation=interpolation)


def letterbox(image: np.ndarray, boxes: np.ndarray, size: int, pad_value: int = PAD_VALUE) -> Letterboxed:
    """Fit the image into size x size keeping its aspect ratio, centred, borders filled with `pad_value`.

    cv2.resize maps continuous coordinates by exactly new_side / old_side (pixel centres at +0.5 on both
    sides), so boxes scale by the same per-axis ratio and the inverse map is exact.
    """
    height, width = image.shape[:2]
    resized = resize_to_fit(image, size)
    new_height, new_width = resized.shape[:2]
    left, top = (size - new_width) // 2, (size - new_height) // 2
    canvas = cv2.copyMakeBorder(resized, top, size - new_height - top, left, size - new_width - left,
                                cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    ratio = (new_width / width, new_height / height)
    mapped = boxes * np.array([ratio[0], ratio[1], ratio[0], ratio[1]]) + np.array([left, top, left, top])
    return Letterboxed(canvas, mapped, ratio, (left, top))


def mosaic4(tiles: list[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four (image, boxes, classes) tiles around a random centre of a 2*size canvas (Bochkovskiy et al., YOLOv4).

    Each tile touches the centre with one corner and is cropped only by the canvas edge; boxes are shifted
    with their tile and returned unclipped, so the affine step can tell how much of each object stays visible.
    """
    canvas_side = 2 * size
    canvas = np.full((canvas_side, canvas_side, 3), PAD_VALUE, dtype=np.uint8)
    centre_x, centre_y = (int(v) for v in rng.uniform(size / 2, 3 * size / 2, size=2))
    all_boxes, all_classes = [], []
    for corner, (image, boxes, classes) in enumerate(tiles):
        height, width = image.shape[:2]
        # Canvas position of the tile's top-left pixel: tile k has its corner k at the centre.
        x0 = centre_x - width if corner in (0, 2) else centre_x
        y0 = centre_y - height if corner in (0, 1) else centre_y
        cx1, cy1 = max(x0, 0), max(y0, 0)
        cx2, cy2 = min(x0 + width, canvas_side), min(y0 + height, canvas_side)
        canvas[cy1:cy2, cx1:cx2] = image[cy1 - y0:cy2 - y0, cx1 - x0:cx2 - x0]
        all_boxes.append(boxes + np.array([x0, y0, x0, y0], dtype=np.float64))
        all_classes.append(classes)
    return canvas, np.concatenate(all_boxes).reshape(-1, 4), np.concatenate(all_classes).astype(np.int64)


def random_affine_matrix(rng: np.random.Generator, input_size: tuple[int, int], output_size: tuple[int, int],
                         config: AugmentConfig) -> tuple[np.ndarray, float]:
    """A random 3x3 map of continuous coordinates from the input canvas to the output, and its zoom gain.

    Composed right to left: move the input centre to the origin, perspective, rotate + zoom, shear, then
    translate the origin to a random point near the output centre.
    """
    in_width, in_height = input_size
    out_width, out_height = output_size
    centre = np.array([[1, 0, -in_width / 2], [0, 1, -in_height / 2], [0, 0, 1]], dtype=np.float64)
    perspective = np.eye(3)
    perspective[2, 0:2] = rng.uniform(-config.perspective, config.perspective, size=2)
    angle = rng.uniform(-config.degrees, config.degrees)
    zoom = rng.uniform(1 - config.scale, 1 + config.scale)
    rotate = np.eye(3)
    rotate[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=zoom)
    shear = np.eye(3)
    shear[0, 1], shear[1, 0] = np.tan(np.radians(rng.uniform(-config.shear, config.shear, size=2)))
    translate = np.eye(3)
    translate[0, 2] = rng.uniform(0.5 - config.translate, 0.5 + config.translate) * out_width
    translate[1, 2] = rng.uniform(0.5 - config.translate, 0.5 + config.translate) * out_height
    return translate @ shear @ rotate @ perspective @ centre, zoom


def warp_image(image: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Warp with `matrix` given in continuous coordinates (OpenCV works on pixel centres: conjugate by 0.5)."""
    to_centres = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    from_centres = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    pixel_matrix = to_centres @ matrix @ from_centres
    border = (PAD_VALUE,) * 3
    if np.allclose(pixel_matrix[2], [0, 0, 1]):
        return cv2.warpAffine(image, pixel_matrix[:2], output_size, flags=cv2.INTER_LINEAR, borderValue=border)
    return cv2.warpPerspective(image, pixel_matrix, output_size, flags=cv2.INTER_LINEAR, borderValue=border)


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The axis-aligned box around each transformed box's four corners."""
    if not len(boxes):
        return boxes.reshape(0, 4)
    x1, y1, x2, y2 = boxes.T
    corners = np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1), np.stack([x2, y2], 1),
                        np.stack([x1, y2], 1)], axis=1)  # (n, 4, 2)
    homogeneous = np.concatenate([corners, np.ones((*corners.shape[:2], 1))], axis=2) @ matrix.T
    points = homogeneous[..., :2] / homogeneous[..., 2:3]
    return np.concatenate([points.min(axis=1), points.max(axis=1)], axis=1)


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    return np.clip(boxes, 0, np.array([width, height, width, height], dtype=np.float64))


def keep_visible(before: np.ndarray, after: np.ndarray, zoom: float) -> np.ndarray:
    """Which transformed, clipped boxes still show their object well enough to train on.

    `before` are the whole boxes (unclipped) before the transform, `after` the clipped results. A box is
    dropped when it is under MIN_BOX_PX on a side, keeps less than MIN_VISIBLE of its zoomed area in view
    (the object is mostly cut off), or was cut into a sliver more elongated than MAX_ASPECT and than before.
    """
    eps = 1e-9
    width_before, height_before = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    width_after, height_after = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    visible = width_after * height_after / (width_before * height_before * zoom**2 + eps)
    aspect_before = np.maximum(width_before / (height_before + eps), height_before / (width_before + eps))
    aspect_after = np.maximum(width_after / (height_after + eps), height_after / (width_after + eps))
    sliver = (aspect_after > MAX_ASPECT) & (aspect_after > aspect_before)
    return (width_after > MIN_BOX_PX) & (height_after > MIN_BOX_PX) & (visible > MIN_VISIBLE) & ~sliver


def random_affine(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, output_size: int,
                  rng: np.random.Generator, config: AugmentConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Randomly rotate, zoom, shear, translate (and tilt) the canvas into an output_size square.

    Boxes are clipped to the input canvas first (what lies outside it was never in the picture), mapped
    through the same matrix as the pixels, clipped to the output, and filtered with keep_visible.
    """
    in_height, in_width = image.shape[:2]
    matrix, zoom = random_affine_matrix(rng, (in_width, in_height), (output_size, output_size), config)
    if (in_width, in_height) != (output_size, output_size) or not np.allclose(matrix, np.eye(3)):
        image = warp_image(image, matrix, (output_size, output_size))
    inside = clip_boxes(boxes, in_width, in_height)
    mapped = clip_boxes(transform_boxes(inside, matrix), output_size, output_size)
    keep = keep_visible(boxes, mapped, zoom)
    return image, mapped[keep], classes[keep]


def flip_horizontal(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    width = image.shape[1]
    flipped = boxes.copy()
    flipped[:, 0], flipped[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped


def flip_vertical(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height = image.shape[0]
    flipped = boxes.copy()
    flipped[:, 1], flipped[:, 3] = height - boxes[:, 3], height - boxes[:, 1]
    return np.ascontiguousarray(image[::-1]), flipped


def hsv_jitter(image: np.ndarray, rng: np.random.Generator, hue: float, saturation: float,
               value: float) -> np.ndarray:
    """Shift hue by +/- hue of the circle and scale saturation and value by 1 +/- their gains, through LUTs.

    Multiplicative S and V gains (YOLOv5 / YOLOv8 documented behaviour) keep greys grey and blacks black;
    the hue shift is additive on OpenCV's 0..179 circle so every colour turns by the same angle.
    """
    if hue == 0 and saturation == 0 and value == 0:
        return image
    hue_shift, saturation_gain, value_gain = rng.uniform(-1, 1, 3) * (hue, saturation, value) + (0, 1, 1)
    levels = np.arange(256, dtype=np.float64)
    lut_hue = np.mod(levels + hue_shift * 180, 180).astype(np.uint8)
    lut_saturation = np.clip(levels * saturation_gain, 0, 255).astype(np.uint8)
    lut_value = np.clip(levels * value_gain, 0, 255).astype(np.uint8)
    h, s, v = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    jittered = cv2.merge((cv2.LUT(h, lut_hue), cv2.LUT(s, lut_saturation), cv2.LUT(v, lut_value)))
    return cv2.cvtColor(jittered, cv2.COLOR_HSV2RGB)


class PixelOps:
    """Occasional blur, median blur, greyscale and CLAHE from albumentations (pixel-level: boxes never move).

    Built lazily, in the process that uses it, so DataLoader workers need not pickle albumentations objects.
    """

    def __init__(self, probability: float):
        self.probability = probability
        self._compose = None

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.probability <= 0:
            return image
        if self._compose is None:
            self._compose = _build_pixel_ops(self.probability)
        self._compose.set_random_seed(int(rng.integers(2**31)))
        return self._compose(image=image)["image"]

    def __getstate__(self) -> dict:
        return {"probability": self.probability, "_compose": None}


def _build_pixel_ops(probability: float):
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # never phone home: no network at run time
    import albumentations as A

    return A.Compose([
        A.Blur(blur_limit=(3, 7), p=probability),
        A.MedianBlur(blur_limit=(3, 7), p=probability),
        A.ToGray(p=probability),
        A.CLAHE(clip_limit=(1.0, 4.0), p=probability),
    ])


def augment_sample(tiles: list[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int, rng: np.random.Generator,
                   config: AugmentConfig, pixel_ops: PixelOps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The whole training augmentation of one sample: 4 tiles make a mosaic, 1 tile is letterboxed first.

    Order as in YOLOv8: geometry (mosaic or letterbox, then affine), colour, then flips.
    """
    if len(tiles) == 4:
        canvas, boxes, classes = mosaic4(tiles, size, rng)
    else:
        (image, tile_boxes, classes), = tiles
        boxed = letterbox(image, tile_boxes, size)
        canvas, boxes = boxed.image, boxed.boxes
    image, boxes, classes = random_affine(canvas, boxes, classes, size, rng, config)
    image = hsv_jitter(image, rng, config.hsv_h, config.hsv_s, config.hsv_v)
    image = pixel_ops(image, rng)
    if rng.random() < config.fliplr:
        image, boxes = flip_horizontal(image, boxes)
    if rng.random() < config.flipud:
        image, boxes = flip_vertical(image, boxes)
    return image, boxes, classes


def boxes_to_normalized_cxcywh(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel x1y1x2y2 -> YOLO cx, cy, w, h in [0, 1] of the given image size."""
    scale = np.array([width, height, width, height], dtype=np.float64)
    x1, y1, x2, y2 = (clip_boxes(boxes, width, height) / scale).T
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1)


def normalized_cxcywh_to_boxes(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """YOLO cx, cy, w, h (normalized) -> pixel x1y1x2y2 of the given image size."""
    cx, cy, w, h = labels.T.astype(np.float64)
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return boxes * np.array([width, height, width, height], dtype=np.float64)

