"""The classification sample: one large digit per photo crop, in the folder-per-class layout, with planted defects.

The same ingredients as the detection sample (scikit-learn's digits pasted on crops of its two photos, see
generate.py), laid out as `ROOT/train/<class>/*.jpg` and `ROOT/val/<class>/*.jpg`. Long-tailed: class k has
about `max_train / (k + 1) ** tail_exponent` train images. Planted defects, listed in manifest.json with the
check that must find each: a truncated JPEG, a file that is not an image, an image at the root of train/, an
image in a nested folder, an exact duplicate, a train/val leak (a re-encoded, resized copy in val), a tiny image,
grayscale and RGBA images among RGB ones, and a class (the rarest) without a val folder. Deterministic for a seed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from dataset_doctor.atomic import check_output_folder, staged_directory
from dataset_doctor.errors import DoctorError
from dataset_doctor.sample.generate import Defect, _SampleWriter
from dataset_doctor.sample.spec import CLASS_NAMES, SampleSpec


@dataclass(frozen=True)
class ClassifySampleSpec:
    """What the classification sample looks like; the defaults are what demo and tests use."""

    max_train: int = 60  # train images of the most frequent class
    tail_exponent: float = 1.0  # class k (0-based) gets max_train / (k + 1) ** tail_exponent train images
    min_train: int = 6  # ...but at least this many, so every class can be learnt a little
    val_per_class: int = 12
    min_side: int = 64  # image sides drawn from [min_side, max_side]
    max_side: int = 96
    missing_in_val: int = 9  # this class gets no val folder (a class val cannot measure)
    inject_defects: bool = True

    def train_counts(self) -> list[int]:
        return [max(self.min_train, round(self.max_train / (k + 1) ** self.tail_exponent))
                for k in range(len(CLASS_NAMES))]


def write_classify_sample(out_dir: str | Path, seed: int = 0, spec: ClassifySampleSpec | None = None) -> Path:
    """Write the classification sample into `out_dir` (new or empty) and return the dataset root.

    Written into a temporary sibling and renamed at the end, so an interrupted run leaves nothing behind.
    """
    spec = spec or ClassifySampleSpec()
    if spec.min_train < 1 or spec.val_per_class < 1 or spec.min_side < 32:
        raise DoctorError("the classification sample needs at least 1 train and 1 val image per class and sides "
                          "of at least 32 px")
    out = check_output_folder(Path(out_dir).expanduser().resolve(), can_force=False)
    with staged_directory(out, "sample") as staging:
        _ClassifyWriter(staging, seed, spec).write()
    return out


class _ClassifyWriter:
    def __init__(self, root: Path, seed: int, spec: ClassifySampleSpec):
        self.root, self.seed, self.spec = root, seed, spec
        self.rng = np.random.default_rng(seed)
        # the detection writer supplies the photo backgrounds and the digit pasting, drawing from our generator
        # The digit is the image's subject, as in a crop classifier's input: 40 px up to 90% of the short side
        # (the detection sample's digits, 20 px up to 45%, left a from-scratch classifier at the class prior
        # after 30 epochs: bench/README.md), and near the centre (_picture), where evaluation's centre crop and
        # most of training's random crops keep it whole.
        self.paint = _SampleWriter(root, seed, SampleSpec(min_object_px=40, max_object_px=90))
        self.paint.rng = self.rng
        self.defects: list[Defect] = []

    def write(self) -> None:
        spec = self.spec
        written: dict[str, list[str]] = {"train": [], "val": []}
        for k, name in enumerate(CLASS_NAMES):
            for i in range(spec.train_counts()[k]):
                written["train"].append(self._save(f"train/{name}/{name}_{i:04d}.jpg", self._picture(k)))
            if k != spec.missing_in_val:
                for i in range(spec.val_per_class):
                    written["val"].append(self._save(f"val/{name}/{name}_v{i:04d}.jpg", self._picture(k)))
        if spec.inject_defects:
            self._inject_defects()
        if 0 <= spec.missing_in_val < len(CLASS_NAMES):
            self.defects.append(Defect("missing-in-val", "val", None, None, None,
                                       f"class '{CLASS_NAMES[spec.missing_in_val]}' has no val folder"))
        manifest = {"generator": "dataset-doctor classify sample", "task": "classify", "seed": self.seed,
                    "spec": asdict(spec), "classes": list(CLASS_NAMES),
                    "train_counts": spec.train_counts(), "defects": [asdict(d) for d in self.defects]}
        (self.root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    def _picture(self, cls: int) -> np.ndarray:
        """A photo crop with one digit of class `cls` filling much of it, off the centre by at most half the free
        room either way."""
        rng, spec = self.rng, self.spec
        width, height = (int(v) for v in rng.integers(spec.min_side, spec.max_side + 1, size=2))
        pixels = self.paint._background(width, height)
        for _ in range(5):
            if self.paint._paste_digit(pixels, cls, [], shrink=1.0, max_share=0.9, centre_jitter=0.5) is not None:
                break
        return pixels

    def _save(self, relative: str, pixels: np.ndarray, data: bytes | None = None) -> str:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            extension = Path(relative).suffix
            params = [cv2.IMWRITE_JPEG_QUALITY, 90] if extension == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
            data = cv2.imencode(extension, pixels, params)[1].tobytes()
        path.write_bytes(data)
        return relative

    def _record(self, check: str, relative: str, note: str) -> None:
        self.defects.append(Defect(check, relative.split("/", 1)[0], relative, None, None, note))

    def _inject_defects(self) -> None:
        names = CLASS_NAMES
        corrupt = f"train/{names[1]}/{names[1]}_corrupt.jpg"
        data = cv2.imencode(".jpg", self._picture(1))[1].tobytes()
        self._save(corrupt, np.zeros(0), data[: len(data) * 6 // 10])
        self._record("corrupt-image", corrupt, "JPEG cut at 60%")

        notes = f"train/{names[0]}/notes.txt"
        self._save(notes, np.zeros(0), b"labelled by hand, batch 3\n")
        self._record("non-image-file", notes, "a text file in a class folder")

        stray = "train/stray_0000.jpg"
        self._save(stray, self._picture(0))
        self._record("misplaced-image", stray, "image at the root of train/")

        nested = f"train/{names[2]}/extra/{names[2]}_nested.jpg"
        self._save(nested, self._picture(2))
        self._record("misplaced-image", nested, "image in a folder nested inside a class folder")

        original = self.root / f"train/{names[0]}/{names[0]}_0000.jpg"
        duplicate = f"train/{names[0]}/{names[0]}_copy.jpg"
        self._save(duplicate, np.zeros(0), original.read_bytes())
        self._record("duplicate-image", duplicate, f"exact copy of {original.relative_to(self.root)}")

        source = self.root / f"train/{names[3]}/{names[3]}_0000.jpg"
        pixels = cv2.imdecode(np.fromfile(source, np.uint8), cv2.IMREAD_COLOR)
        resized = cv2.resize(pixels, (pixels.shape[1] * 9 // 10, pixels.shape[0] * 9 // 10),
                             interpolation=cv2.INTER_AREA)
        leak = f"val/{names[3]}/{names[3]}_leak.jpg"
        self._save(leak, np.zeros(0), cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes())
        self._record("split-leak", leak, f"resized, re-encoded copy of {source.relative_to(self.root)}")

        tiny = f"train/{names[4]}/{names[4]}_tiny.jpg"
        self._save(tiny, cv2.resize(self._picture(4), (14, 14), interpolation=cv2.INTER_AREA))
        self._record("tiny-image", tiny, "14 x 14 pixels")

        for i in range(2):
            gray = f"train/{names[5]}/{names[5]}_gray{i}.png"
            self._save(gray, cv2.cvtColor(self._picture(5), cv2.COLOR_BGR2GRAY))
            self._record("color-mode-mix", gray, "grayscale PNG among RGB JPEGs")
        rgba = f"train/{names[6]}/{names[6]}_rgba.png"
        self._save(rgba, cv2.cvtColor(self._picture(6), cv2.COLOR_BGR2BGRA))
        self._record("color-mode-mix", rgba, "RGBA PNG among RGB JPEGs")
