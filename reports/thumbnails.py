"""Small JPEG thumbnails with boxes drawn, embedded in reports (findings, leaks, predictions, batches)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from dataset_doctor.dataset.images import read_image_file

HIGHLIGHT = (0, 0, 255)  # BGR red: the box a finding is about
GROUND_TRUTH = (60, 180, 75)  # BGR green
PREDICTION = (255, 140, 0)  # BGR blue-ish: predictions


@dataclass(frozen=True)
class DrawnBox:
    """A box in normalized cx, cy, w, h, with its label text and colour."""

    cx: float
    cy: float
    w: float
    h: float
    label: str = ""
    colour: tuple[int, int, int] = GROUND_TRUTH
    thickness: int = 1
    marker: bool = False  # also ring the box's centre, so a box of a pixel or two is found at a glance


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct colour per class (golden-ratio hue steps)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 179)
    hsv = np.uint8([[[hue, 200, 230]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def load_thumbnail(path: str, max_side: int = 320) -> np.ndarray | None:
    """The image scaled so its longer side is at most max_side (None if it cannot be read, or only by decoding
    more pixels than images.DEFAULT_MAX_PIXELS)."""
    image = read_image_file(path)
    if image is None:
        return None
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return image


def draw_boxes(image: np.ndarray, boxes: Sequence[DrawnBox]) -> np.ndarray:
    """Draw boxes (normalized coordinates) on a copy of the image. Labels: ASCII only (OpenCV's fonts)."""
    canvas = image.copy()
    height, width = canvas.shape[:2]
    for box in boxes:
        x1, y1 = round((box.cx - box.w / 2) * width), round((box.cy - box.h / 2) * height)
        x2, y2 = round((box.cx + box.w / 2) * width), round((box.cy + box.h / 2) * height)
        cv2.rectangle(canvas, (x1, y1), (max(x2, x1 + 1), max(y2, y1 + 1)), box.colour, box.thickness,
                      cv2.LINE_AA)
        if box.marker:
            radius = max(abs(x2 - x1), abs(y2 - y1)) // 2 + 8
            cv2.circle(canvas, ((x1 + x2) // 2, (y1 + y2) // 2), radius, box.colour, 1, cv2.LINE_AA)
        if box.label:
            text = box.label.encode("ascii", "replace").decode("ascii")
            (text_w, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
            top = max(y1 - text_h - 3, 0)
            cv2.rectangle(canvas, (x1, top), (x1 + text_w + 2, top + text_h + 3), box.colour, -1)
            cv2.putText(canvas, text, (x1 + 1, top + text_h + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255),
                        1, cv2.LINE_AA)
    return canvas


def pad_to_fit(image: np.ndarray, boxes: Sequence[DrawnBox], fill: tuple[int, int, int] = (150, 150, 150),
               limit: float = 1.0) -> tuple[np.ndarray, list[DrawnBox]]:
    """Pad the image with a grey margin so boxes reaching outside it (out-of-bounds labels) are drawn where they
    are, not clipped away; the boxes come back in the padded image's coordinates.

    The margin on each side is at most `limit` image sides, so an absurd coordinate cannot make a huge canvas.
    """
    if not boxes:
        return image, list(boxes)
    height, width = image.shape[:2]
    left = min(min(b.cx - abs(b.w) / 2 for b in boxes), 0.0)
    top = min(min(b.cy - abs(b.h) / 2 for b in boxes), 0.0)
    right = max(max(b.cx + abs(b.w) / 2 for b in boxes), 1.0)
    bottom = max(max(b.cy + abs(b.h) / 2 for b in boxes), 1.0)
    pad = [round(min(-left, limit) * width), round(min(right - 1, limit) * width),
           round(min(-top, limit) * height), round(min(bottom - 1, limit) * height)]
    if not any(pad):
        return image, list(boxes)
    pad_left, pad_right, pad_top, pad_bottom = (margin + (2 if margin else 0) for margin in pad)  # room for lines
    canvas = cv2.copyMakeBorder(image, pad_top, pad_bottom, pad_left, pad_right, cv2.BORDER_CONSTANT, value=fill)
    new_height, new_width = canvas.shape[:2]
    moved = [DrawnBox((b.cx * width + pad_left) / new_width, (b.cy * height + pad_top) / new_height,
                      b.w * width / new_width, b.h * height / new_height, b.label, b.colour, b.thickness, b.marker)
             for b in boxes]
    return canvas, moved


def encode_jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def placeholder(text: str, size: tuple[int, int] = (240, 160)) -> np.ndarray:
    """A grey tile saying why there is no picture (e.g. the image is corrupt); long text wraps onto a few lines."""
    width, height = size
    tile = np.full((height, width, 3), 200, dtype=np.uint8)
    words = text.encode("ascii", "replace").decode("ascii").split()
    line_chars = max((width - 16) // 8, 8)  # Hershey simplex at 0.45 is about 8 px per character
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= line_chars:
            lines[-1] += " " + word
        else:
            lines.append(word[:line_chars])
    lines = lines[:4] or [""]
    top = height // 2 - (len(lines) - 1) * 9
    for number, line in enumerate(lines):
        cv2.putText(tile, line, (8, top + number * 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (40, 40, 40), 1,
                    cv2.LINE_AA)
    return tile
