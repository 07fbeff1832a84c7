"""The bundled sample dataset: a realistic, imperfect YOLO dataset made only from what scikit-learn ships.

Handwritten digits (`load_digits`, 8x8) are upscaled, coloured and pasted onto random crops of the two photos
scikit-learn ships (china.jpg, flower.jpg). It has what real datasets have: a long-tailed class distribution
(most/least frequent train class above 20x), objects from tiny to large, background images, polygons, CRLF
files and exponent notation, one class whose val boxes are much smaller than in train, and a set of
deliberate defects (bad lines, corrupt and duplicate images, a train/val leak...) listed in `manifest.json`
with file and line, so the audit can be checked against ground truth. Deterministic for a seed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import yaml
from sklearn.datasets import load_digits

from dataset_doctor.atomic import check_output_folder, staged_directory
from dataset_doctor.dataset.box_rules import paired_iou
from dataset_doctor.errors import DoctorError
from dataset_doctor.sample.spec import MIN_TRAIN_IMAGES, MIN_VAL_IMAGES, SampleSpec, class_names


@dataclass
class _Image:
    split: str
    stem: str
    pixels: np.ndarray
    lines: list[str] = field(default_factory=list)
    extension: str = ".jpg"
    crlf: bool = False
    damage: str = ""  # "", "truncate" (JPEG cut short) or "not-image" (text bytes with an image name)
    has_label_file: bool = True

    @property
    def image_path(self) -> str:
        return f"images/{self.split}/{self.stem}{self.extension}"

    @property
    def label_path(self) -> str:
        return f"labels/{self.split}/{self.stem}.txt"


@dataclass
class Defect:
    """One deliberate defect: what the audit must report, and where."""

    check: str
    split: str | None
    image: str | None
    label: str | None
    line: int | None
    note: str


def write_sample_dataset(out_dir: str | Path, seed: int = 0, spec: SampleSpec | None = None) -> Path:
    """Write the sample dataset into `out_dir` (new or empty) and return its data.yaml path.

    Written into a temporary sibling and renamed at the end, so an interrupted run leaves nothing behind.
    """
    spec = spec or SampleSpec()
    try:
        class_names(spec.classes)
    except ValueError as error:
        raise DoctorError(str(error)) from None
    if spec.inject_defects and (spec.train_images < MIN_TRAIN_IMAGES or spec.val_images < MIN_VAL_IMAGES):
        raise DoctorError(f"the sample needs at least {MIN_TRAIN_IMAGES} train and {MIN_VAL_IMAGES} val images "
                          "to hold its deliberate defects")
    out = check_output_folder(Path(out_dir).expanduser().resolve(), can_force=False)
    with staged_directory(out, "sample") as staging:
        _SampleWriter(staging, seed, spec).write()
    return out / "data.yaml"


class _SampleWriter:
    def __init__(self, root: Path, seed: int, spec: SampleSpec):
        self.root, self.seed, self.spec = root, seed, spec
        self.rng = np.random.default_rng(seed)
        digits = load_digits()
        self.digits_by_class = [digits.images[digits.target == k] / 16.0 for k in range(10)]
        photo_dir = resources.files("sklearn.datasets") / "images"
        self.photos = [cv2.imread(str(photo_dir / name), cv2.IMREAD_COLOR) for name in ("china.jpg", "flower.jpg")]
        self.names = class_names(spec.classes)
        weights = (np.arange(spec.classes) + 1.0) ** -spec.tail_exponent
        self.class_probabilities = weights / weights.sum()
        self.defects: list[Defect] = []

    def write(self) -> None:
        images = [self._make_image("train", i) for i in range(self.spec.train_images)]
        images += [self._make_image("val", i) for i in range(self.spec.val_images)]
        self._add_label_variety(images)
        extra_files = self._inject_defects(images) if self.spec.inject_defects else []
        for image in images:
            self._save(image)
        for relative, content in extra_files:
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        # No `path` key: the yaml's folder is the root (design.md), and Ultralytics, which resolves a relative
        # `path` against its own datasets folder, reads it the same way.
        (self.root / "data.yaml").write_text(yaml.safe_dump({
            "train": "images/train", "val": "images/val", "nc": len(self.names),
            "names": list(self.names)}, sort_keys=False))
        manifest = {
            "generator": "dataset-doctor sample", "seed": self.seed, "spec": asdict(self.spec),
            "classes": list(self.names), "defects": [asdict(d) for d in self.defects],
        }
        (self.root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    # -- one clean image ------------------------------------------------------------------------------
    def _make_image(self, split: str, index: int) -> _Image:
        rng, spec = self.rng, self.spec
        width, height = (int(v) for v in rng.integers(spec.min_side, spec.max_side + 1, size=2))
        pixels = self._background(width, height)
        image = _Image(split, f"{split}_{index:05d}", pixels,
                       extension=".png" if rng.random() < spec.png_fraction else ".jpg")
        if rng.random() < spec.background_fraction:
            return image
        placed: list[tuple[float, float, float, float]] = []
        for _ in range(max(1, int(rng.poisson(spec.mean_objects)))):
            cls = int(rng.choice(self.spec.classes, p=self.class_probabilities))
            box = self._paste_digit(pixels, cls, placed, shrink=spec.shift_scale
                                    if split == "val" and cls == spec.shifted_class else 1.0)
            if box is not None:
                placed.append(box)
                x1, y1, x2, y2 = box
                image.lines.append(_box_line(cls, (x1 + x2) / 2 / width, (y1 + y2) / 2 / height,
                                             (x2 - x1) / width, (y2 - y1) / height))
        return image

    def _background(self, width: int, height: int) -> np.ndarray:
        """A random crop of one of the two photos, resized, flipped, rotated and colour-jittered."""
        rng = self.rng
        photo = self.photos[int(rng.integers(2))]
        photo_h, photo_w = photo.shape[:2]
        crop_w = int(rng.integers(photo_w // 4, photo_w + 1))
        crop_h = int(np.clip(crop_w * height / width * rng.uniform(0.8, 1.25), photo_h // 4, photo_h))
        x0, y0 = int(rng.integers(0, photo_w - crop_w + 1)), int(rng.integers(0, photo_h - crop_h + 1))
        crop = photo[y0:y0 + crop_h, x0:x0 + crop_w]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.3:
            crop = np.rot90(crop, k=int(rng.choice([1, 3])))
        pixels = cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(pixels, cv2.COLOR_BGR2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + int(rng.integers(0, 180))) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.3), 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.6, 1.2) + rng.uniform(-20, 20), 0, 255)
        return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)

    def _paste_digit(self, pixels: np.ndarray, cls: int, placed: list, shrink: float, max_share: float = 0.45,
                     centre_jitter: float | None = None):
        """Blend one upscaled digit, at most `max_share` of the short side tall, into the image; returns its
        tight box (x1, y1, x2, y2) or None. `centre_jitter`: place it near the centre, off by at most that share
        of the free room either way (a classifier's crop), instead of anywhere."""
        rng, spec = self.rng, self.spec
        height, width = pixels.shape[:2]
        max_px = min(spec.max_object_px, int(max_share * min(height, width)))
        object_h = int(np.exp(rng.uniform(np.log(spec.min_object_px), np.log(max_px))) * shrink)
        object_h = max(object_h, 6)
        two_digits = spec.classes > 10
        object_w = max(5, int(object_h * rng.uniform(0.7, 1.1) * (2 if two_digits else 1)))
        object_w = min(object_w, width)
        digits = (cls // 10, cls % 10) if two_digits else (cls,)
        strokes = [self.digits_by_class[d][int(rng.integers(len(self.digits_by_class[d])))] for d in digits]
        glyph = cv2.resize(np.hstack(strokes), (object_w, object_h), interpolation=cv2.INTER_CUBIC)
        alpha = np.clip((glyph - 0.15) / 0.45, 0.0, 1.0)  # sharpen the blurry upscaled strokes
        rows, cols = np.nonzero(alpha > 0.3)
        if len(rows) == 0:
            return None
        for _ in range(30):
            if centre_jitter is None:
                x0 = int(rng.integers(0, width - object_w + 1))
                y0 = int(rng.integers(0, height - object_h + 1))
            else:
                free_x, free_y = width - object_w, height - object_h
                x0 = int(round(free_x / 2 * (1 + rng.uniform(-centre_jitter, centre_jitter))))
                y0 = int(round(free_y / 2 * (1 + rng.uniform(-centre_jitter, centre_jitter))))
            box = (x0 + cols.min(), y0 + rows.min(), x0 + cols.max() + 1, y0 + rows.max() + 1)
            if not placed or (paired_iou(np.array(box, dtype=float), np.array(placed, dtype=float)) < 0.05).all():
                break
        else:
            return None
        region = pixels[y0:y0 + object_h, x0:x0 + object_w].astype(np.float32)
        luminance = region.mean()
        colour = rng.uniform(0, 90, size=3) if luminance > 120 else rng.uniform(165, 255, size=3)
        blended = region * (1 - alpha[..., None]) + colour * alpha[..., None]
        pixels[y0:y0 + object_h, x0:x0 + object_w] = blended.astype(np.uint8)
        return tuple(float(v) for v in box)

    # -- valid variety the audit must not flag ----------------------------------------------------------
    def _add_label_variety(self, images: list[_Image]) -> None:
        rng = self.rng
        for image in images:
            if not image.lines:
                continue
            roll = rng.random()
            if roll < 0.10:
                image.crlf = True
            elif roll < 0.15:
                image.lines = ["  " + " ".join(_exponent(v) for v in line.split()) + "  " for line in image.lines]
            elif roll < 0.18 and image.split == "train":
                image.lines = [_as_polygon(line, rng) for line in image.lines]

    # -- deliberate defects, each recorded in the manifest --------------------------------------------
    def _inject_defects(self, images: list[_Image]) -> list[tuple[str, bytes]]:
        train = [im for im in images if im.split == "train" and len(im.lines) >= 2 and not im.crlf
                 and not im.lines[0].startswith(" ") and len(im.lines[0].split()) == 5]
        val = [im for im in images if im.split == "val" and len(im.lines) >= 2 and not im.crlf]
        picks = iter(self.rng.permutation(len(train)).tolist())

        def next_train() -> _Image:
            return train[next(picks)]

        bad_lines = [
            ("malformed-line", "3 0.5 0.5 0.2", "4 values"),
            ("malformed-line", "2 0.4 abc 0.1 0.1", "non-numeric value"),
            ("malformed-line", "1 nan 0.5 0.1 0.1", "nan coordinate"),
            ("malformed-line", "0 0.5 0.5 0.1 0.1 0.3", "6 values"),
            ("class-out-of-range", f"{self.spec.classes + 2} 0.5 0.5 0.1 0.1",
             f"class id {self.spec.classes + 2} with {self.spec.classes} names"),
            ("class-out-of-range", "-1 0.5 0.5 0.1 0.1", "negative class id"),
            ("class-out-of-range", "2.5 0.5 0.5 0.1 0.1", "non-integer class id"),
            ("out-of-bounds", "4 1.05 0.5 0.2 0.2", "right edge at 1.15"),
            ("out-of-bounds", "1 0.5 -0.1 0.1 0.1", "top edge at -0.15"),
            ("degenerate-box", "0 0.5 0.5 0 0.1", "zero width"),
            ("degenerate-box", "3 0.5 0.5 0.1 -0.05", "negative height"),
            ("tiny-box", "5 0.5 0.5 0.001 0.05", "under 2 px wide at 640"),
            ("extreme-aspect", "6 0.5 0.5 0.6 0.02", "30:1 aspect"),
        ]
        for number, (check, line, note) in enumerate(bad_lines):
            image = val[number] if number in (2, 4) else next_train()  # two of them in val
            image.lines.insert(1, line)
            self._record(check, image, line=2, note=note)
        image = next_train()
        image.lines.append(image.lines[0])
        self._record("duplicate-box", image, line=len(image.lines), note="exact repeat of line 1")

        mixed = next_train()
        mixed.lines[0] = _as_polygon(mixed.lines[0], self.rng)
        self._record("mixed-label-types", mixed, note="one polygon among boxes")

        truncated = next_train()
        truncated.extension, truncated.damage = ".jpg", "truncate"
        self._record("corrupt-image", truncated, with_label=False, note="JPEG cut off at 60% of its bytes")
        not_image = next_train()
        not_image.damage = "not-image"
        self._record("corrupt-image", not_image, with_label=False, note="text saved under an image name")

        for _ in range(2):
            unlabeled = next_train()
            unlabeled.has_label_file = False
            self._record("missing-label", unlabeled, with_label=False,
                         note="objects in the picture but no label file")

        orphan = "labels/train/train_99999.txt"
        self.defects.append(Defect("orphan-label", None, None, orphan, None, "label file whose image was deleted"))

        original = next_train()
        copy = _Image("train", original.stem + "_copy", original.pixels.copy(), list(original.lines),
                      original.extension)
        images.append(copy)
        self._record("duplicate-image", copy, with_label=False, note=f"byte-identical copy of {original.image_path}")

        source = next_train()
        leaked = cv2.resize(source.pixels, None, fx=0.9, fy=0.9, interpolation=cv2.INTER_AREA)
        leaked = cv2.convertScaleAbs(leaked, alpha=1.05, beta=12)
        leak = _Image("val", "val_leak_" + source.stem, leaked, list(source.lines), ".jpg")
        images.append(leak)
        self._record("split-leak", leak, with_label=False,
                     note=f"{source.image_path} resized to 90%, brightened and re-encoded")

        name = self.names[self.spec.shifted_class]
        self.defects.append(Defect("scale-shift", "val", None, None, None,
                                   f"class '{name}' drawn {self.spec.shift_scale:g}x smaller in val than in train"))
        return [(orphan, b"0 0.5 0.5 0.2 0.2\n")]

    def _record(self, check: str, image: _Image, line: int | None = None, note: str = "",
                with_label: bool = True) -> None:
        label = image.label_path if with_label else None
        self.defects.append(Defect(check, image.split, image.image_path, label, line, note))

    def _save(self, image: _Image) -> None:
        image_path, label_path = self.root / image.image_path, self.root / image.label_path
        image_path.parent.mkdir(parents=True, exist_ok=True)
        label_path.parent.mkdir(parents=True, exist_ok=True)
        if image.damage == "not-image":
            data = b"this is not an image\n"
        else:
            params = [cv2.IMWRITE_JPEG_QUALITY, 88] if image.extension == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
            data = cv2.imencode(image.extension, image.pixels, params)[1].tobytes()
            if image.damage == "truncate":
                data = data[: int(len(data) * 0.6)]
        image_path.write_bytes(data)
        if image.has_label_file:
            newline = "\r\n" if image.crlf else "\n"
            label_path.write_bytes("".join(line + newline for line in image.lines).encode())


def _box_line(cls: int, cx: float, cy: float, w: float, h: float) -> str:
    return f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def _exponent(text: str) -> str:
    value = float(text)
    return text if value == int(value) and "." not in text else f"{value:.5e}"


def _as_polygon(line: str, rng: np.random.Generator) -> str:
    """The same box written as a polygon: its four corners plus points on its edges (same bounding box)."""
    cls, cx, cy, w, h = (float(v) for v in line.split())
    x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    points = [(x1, y1), ((x1 + x2) / 2, y1 + rng.uniform(0, h / 3)), (x2, y1), (x2, y2),
              (x1 + rng.uniform(0, w / 3), (y1 + y2) / 2), (x1, y2)]
    return f"{int(cls)} " + " ".join(f"{x:.6f} {y:.6f}" for x, y in points)

