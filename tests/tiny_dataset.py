"""Tiny YOLO datasets written by plain functions: for fixtures (conftest's make_dataset) and for table rows
whose `build(tmp_path)` makes its own input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import yaml


def noise_image(name: str, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    """A distinct random image per name (so unrelated test images never look like duplicates)."""
    seed = int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    width, height = size
    small = rng.integers(0, 256, size=(max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def write_dataset(root: Path, splits: dict[str, dict[str, object]], names: list[str] | dict | None = ("a", "b"),
                  size: tuple[int, int] = (96, 64), extra_yaml: dict | None = None) -> Path:
    """Write {"train": {"a.jpg": "0 0.5 0.5 0.2 0.2\\n", "b.jpg": None}, "val": {...}} under `root`; return data.yaml.

    A label of None writes no label file; bytes are written as they are. Images are distinct noise images of
    `size` (or a per-image size given as {"a.jpg": ("label text", (w, h))}).
    """
    for split, files in splits.items():
        for file_name, spec in files.items():
            label, image_size = spec if isinstance(spec, tuple) else (spec, size)
            image_path = root / "images" / split / file_name
            image_path.parent.mkdir(parents=True, exist_ok=True)
            extension = image_path.suffix.lower()
            ok, encoded = cv2.imencode(extension if extension in (".jpg", ".png", ".bmp") else ".png",
                                       noise_image(f"{split}/{file_name}", image_size))
            image_path.write_bytes(encoded.tobytes())
            if label is not None:
                label_path = root / "labels" / split / (image_path.stem + ".txt")
                label_path.parent.mkdir(parents=True, exist_ok=True)
                label_path.write_bytes(label if isinstance(label, bytes) else label.encode())
    config: dict[str, object] = {split: f"images/{split}" for split in splits}
    if names is not None:
        config["names"] = list(names) if not isinstance(names, dict) else names
    config.update(extra_yaml or {})
    (root / "data.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root / "data.yaml"



def write_tiny_dataset(root: Path, labels: dict[str, str], names: tuple[str, ...] = ("a", "b")) -> Path:
    """images/SPLIT/NAME.png with labels/SPLIT/NAME.txt for {"SPLIT/NAME": label text}; returns data.yaml."""
    splits: dict[str, dict[str, object]] = {}
    for key, text in labels.items():
        split, stem = key.split("/")
        splits.setdefault(split, {})[f"{stem}.png"] = text
    return write_dataset(root, splits, names=list(names))


def write_class_tree(root: Path, files: dict[str, object]) -> Path:
    """A tiny folder-per-class dataset: {"train/cat/a.png": (w, h) | ndarray | bytes}; (w, h) gives a distinct
    noise image of that size (PNG or JPEG by extension). Returns root."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
            continue
        pixels = noise_image(relative, content) if isinstance(content, tuple) else content
        path.write_bytes(cv2.imencode(path.suffix, pixels)[1].tobytes())
    return root
