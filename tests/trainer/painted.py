"""Painted-rectangle helpers: solid colour boxes on black, found again after a transform by their colour."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# Saturated colours far apart from each other, from black and from the grey (114) padding.
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255), (255, 128, 0),
           (128, 0, 255)]


def painted_image(width: int, height: int, boxes: list[tuple[int, int, int, int]],
                  colours: list[tuple[int, int, int]] | None = None) -> np.ndarray:
    """An RGB black image with each integer box x1, y1, x2, y2 filled with its colour."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for (x1, y1, x2, y2), colour in zip(boxes, colours or COLOURS):
        image[y1:y2, x1:x2] = colour
    return image


def colour_mask(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 60) -> np.ndarray:
    return (np.abs(image.astype(np.int16) - np.array(colour, dtype=np.int16)) <= tolerance).all(axis=2)


def colour_box(image: np.ndarray, colour: tuple[int, int, int], tolerance: int = 60) -> np.ndarray | None:
    """The continuous-coordinate bounding box x1, y1, x2, y2 of the pixels of `colour` (None if absent)."""
    ys, xs = np.nonzero(colour_mask(image, colour, tolerance))
    if not len(xs):
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def write_painted(path: Path, image_rgb: np.ndarray) -> None:
    """Overwrite an image file of a make_dataset dataset (PNG: lossless, so colours survive)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(encoded.tobytes())


def yolo_line(class_id: int, box: tuple[int, int, int, int], width: int, height: int) -> str:
    x1, y1, x2, y2 = box
    values = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
    return f"{class_id} " + " ".join(repr(v) for v in values)
