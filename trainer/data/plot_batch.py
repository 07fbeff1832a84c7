"""Training batches drawn with their boxes, saved as JPEGs at the start of a run (Darknet's -show_imgs).

Looking at what the network is actually fed is the quickest way to catch a wrong label format, boxes off
their objects after augmentation, or an augmentation too strong for the data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from dataset_doctor.atomic import atomic_write_bytes
from trainer.data.collate import Batch

MAX_GRID_SIDE = 1920  # pixels: a grid larger than this is scaled down (a 16 x 640 batch would be 2560)


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per class (golden-angle hue steps)."""
    hue = int((class_id * 137.508) % 180)
    hsv = np.array([[[hue, 220, 255]]], dtype=np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def draw_batch(batch: Batch, names: Sequence[str], max_images: int = 16) -> np.ndarray:
    """The first `max_images` images of a batch in a grid, boxes and class names drawn; RGB uint8."""
    count = min(len(batch), max_images)
    images = (batch.images[:count].clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    targets = batch.targets.cpu().numpy()
    _, height, width, _ = images.shape
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    scale = min(1.0, MAX_GRID_SIDE / max(columns * width, rows * height))
    tile_w, tile_h = max(1, round(width * scale)), max(1, round(height * scale))
    grid = np.full((rows * tile_h, columns * tile_w, 3), 255, dtype=np.uint8)
    thickness = 1 if tile_w < 400 else 2
    for i in range(count):
        tile = cv2.resize(images[i], (tile_w, tile_h), interpolation=cv2.INTER_AREA) if scale < 1 else images[i].copy()
        for _, class_id, cx, cy, w, h in targets[targets[:, 0] == i]:
            x1, y1 = round((cx - w / 2) * tile_w), round((cy - h / 2) * tile_h)
            x2, y2 = round((cx + w / 2) * tile_w), round((cy + h / 2) * tile_h)
            colour = class_colour(int(class_id))
            cv2.rectangle(tile, (x1, y1), (x2, y2), colour, thickness)
            name = names[int(class_id)] if 0 <= int(class_id) < len(names) else str(int(class_id))
            cv2.putText(tile, name, (x1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3 + 0.1 * thickness, colour,
                        thickness, cv2.LINE_AA)
        row, column = divmod(i, columns)
        grid[row * tile_h:(row + 1) * tile_h, column * tile_w:(column + 1) * tile_w] = tile
        cv2.rectangle(grid, (column * tile_w, row * tile_h), ((column + 1) * tile_w - 1, (row + 1) * tile_h - 1),
                      (255, 255, 255), 1)
    return grid


def save_batches(batches: Iterable[Batch], names: Sequence[str], out_dir: str | Path, count: int = 3,
                 max_images: int = 16, quality: int = 90) -> list[Path]:
    """Draw the first `count` batches into out_dir/train_batch{i}.jpg (written atomically); returns the paths."""
    out = Path(out_dir)
    written = []
    for i, batch in enumerate(batches):
        if i >= count:
            break
        grid = cv2.cvtColor(draw_batch(batch, names, max_images), cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".jpg", grid, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        path = out / f"train_batch{i}.jpg"
        atomic_write_bytes(path, encoded.tobytes())
        written.append(path)
    return written
