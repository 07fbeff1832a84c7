"""Datasets for the audit benchmark: a 10k+ image replica of a small dataset, and a synthetic 1M-box dataset.

The replica must look like a real dataset to the audit, not like 10,000 copies of 1,000 images: a byte copy
would share content hashes and a lightly edited copy would share perceptual hashes, so every image would be a
duplicate finding and the near-duplicate search would see nothing but matches. Each copy is therefore one of 16
geometric / photometric variants (the 8 flips and rotations of the square's symmetry group, each optionally
with inverted intensities), which move a DCT perceptual hash by about half its bits, re-encoded in the source's
format with the boxes transformed to match. Copy 0 is the source itself, defects included; corrupt images are
not copied again (they cannot be decoded to make variants).
"""

from __future__ import annotations

import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import yaml

from dataset_doctor.dataset.datayaml import label_path_for, list_split_images, load_data_yaml
from dataset_doctor.dataset.images import probe_image_file

VARIANTS = 16  # 8 dihedral transforms x (plain, inverted)


def replicate_dataset(source_yaml: Path, out: Path, min_images: int, workers: int = 2, jpeg_only: bool = False) -> Path:
    """Write a dataset of at least `min_images` images at `out` (new) built from the source's splits.

    jpeg_only: PNG (and other non-JPEG) sources are re-encoded as JPEG, copy 0 included.
    """
    config = load_data_yaml(source_yaml)
    splits = {split: list_split_images(config, split) for split in config.splits}
    total = sum(len(images) for images in splits.values())
    copies = max(1, math.ceil(min_images / total))
    if copies > VARIANTS:
        raise SystemExit(f"{source_yaml} has {total} images: at most {VARIANTS} distinct copies of each can be made, "
                         f"fewer than the {min_images} images asked for")
    jobs = []
    for images in splits.values():
        for image in images:
            relative = _relative(image, config.root)
            for copy in range(copies):
                jobs.append((str(image), str(label_path_for(image)), str(out / relative), copy, jpeg_only))
    out.mkdir(parents=True, exist_ok=False)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_write_copy, jobs, chunksize=64))
    _copy_orphan_labels(config, splits, out)
    names = {"names": list(config.names)}  # no `path`: the yaml's folder is the root (for Ultralytics too)
    for split, sources in config.splits.items():
        names[split] = [_relative(source, config.root) for source in sources]
    (out / "data.yaml").write_text(yaml.safe_dump(names, sort_keys=False))
    return out / "data.yaml"


def _relative(path: Path, root: Path) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _copy_orphan_labels(config, splits: dict[str, list[Path]], out: Path) -> None:
    """Label files without an image stay orphans in the replica (once)."""
    known = {str(label_path_for(image)) for images in splits.values() for image in images}
    for directory in sorted({os.path.dirname(label) for label in known}):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if name.endswith(".txt") and path not in known:
                target = out / _relative(Path(path), config.root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)


def _write_copy(job: tuple[str, str, str, int, bool]) -> None:
    image, label, target, copy, jpeg_only = job
    target_path = Path(target)
    stem, extension = target_path.stem, target_path.suffix
    if jpeg_only and extension.lower() not in (".jpg", ".jpeg"):
        extension = ".jpg"
    image_out = target_path.with_name(f"{stem}_v{copy:02d}{extension}")
    label_out = label_path_for(image_out)
    image_out.parent.mkdir(parents=True, exist_ok=True)
    label_text = Path(label).read_bytes() if os.path.exists(label) else None
    readable = probe_image_file(image).error is None
    if copy == 0 and (extension == target_path.suffix or not readable):
        shutil.copyfile(image, image_out)  # the source as it is, deliberate defects included
    else:
        if not readable:
            return  # a corrupt image: copied once, as copy 0
        pixels, transform = _variant(cv2.imread(image, cv2.IMREAD_COLOR), copy)
        params = [cv2.IMWRITE_JPEG_QUALITY, 90] if extension.lower() in (".jpg", ".jpeg") else []
        ok, encoded = cv2.imencode(extension, pixels, params)
        if not ok:
            return
        image_out.write_bytes(encoded.tobytes())
        if label_text is not None and copy:
            label_text = _transform_labels(label_text, transform)
    if label_text is not None:
        label_out.parent.mkdir(parents=True, exist_ok=True)
        label_out.write_bytes(label_text)


def _variant(pixels: np.ndarray, copy: int) -> tuple[np.ndarray, tuple[bool, bool, bool]]:
    """Copy number -> (flip x, flip y, transpose) of the dihedral group, inverted intensities for copies >= 8."""
    flip_x, flip_y, transpose = bool(copy & 1), bool(copy & 2), bool(copy & 4)
    if transpose:
        pixels = np.ascontiguousarray(pixels.transpose(1, 0, 2))
    if flip_x:
        pixels = pixels[:, ::-1]
    if flip_y:
        pixels = pixels[::-1]
    if copy & 8:
        pixels = 255 - pixels
    return np.ascontiguousarray(pixels), (flip_x, flip_y, transpose)


def _transform_labels(data: bytes, transform: tuple[bool, bool, bool]) -> bytes:
    """Boxes and polygons moved with the pixels; lines that are not numbers (deliberate defects) kept as they are."""
    flip_x, flip_y, transpose = transform
    out_lines = []
    for raw in data.split(b"\n"):
        ending = b"\r" if raw.endswith(b"\r") else b""
        fields = raw.split()
        try:
            values = [float(v) for v in fields]
        except ValueError:
            out_lines.append(raw)
            continue
        if len(values) < 5 or len(values) % 2 == 0 or not all(math.isfinite(v) for v in values):
            out_lines.append(raw)
            continue
        cls, coords = fields[0], values[1:]
        if len(values) == 5:
            points, sizes = [coords[0:2]], coords[2:4]
        else:
            points, sizes = [coords[i:i + 2] for i in range(0, len(coords), 2)], None
        moved = []
        for x, y in points:
            if transpose:
                x, y = y, x
            moved.append((1 - x if flip_x else x, 1 - y if flip_y else y))
        numbers = [v for point in moved for v in point]
        if sizes is not None:
            numbers += sizes[::-1] if transpose else sizes
        out_lines.append(cls + b" " + " ".join(f"{v:.6f}" for v in numbers).encode() + ending)
    return b"\n".join(out_lines)


def synthetic_boxes_dataset(out: Path, boxes: int, boxes_per_image: int = 50, seed: int = 0) -> Path:
    """A dataset with `boxes` clean boxes on small distinct noise images (80 classes), for the memory case.

    Images are tiny (96x64 JPEGs) so the case measures what scales with boxes, not decoding.
    """
    rng = np.random.default_rng(seed)
    images = math.ceil(boxes / boxes_per_image)
    names = [f"class_{k}" for k in range(80)]
    class_probabilities = (np.arange(80) + 1.0) ** -1.0
    class_probabilities /= class_probabilities.sum()
    for split, count in (("train", images * 9 // 10), ("val", images - images * 9 // 10)):
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
        for number in range(count):
            small = rng.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
            pixels = cv2.resize(small, (96, 64), interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(str(out / "images" / split / f"{number:07d}.jpg"), pixels)
            cls = rng.choice(80, size=boxes_per_image, p=class_probabilities)
            size = rng.uniform(0.02, 0.3, size=(boxes_per_image, 2))
            centre = rng.uniform(size / 2, 1 - size / 2)
            rows = np.column_stack([cls, centre, size])
            lines = "\n".join(f"{int(r[0])} {r[1]:.6f} {r[2]:.6f} {r[3]:.6f} {r[4]:.6f}" for r in rows)
            (out / "labels" / split / f"{number:07d}.txt").write_text(lines + "\n")
    (out / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "val": "images/val",
                                                   "names": names}, sort_keys=False))
    return out / "data.yaml"
