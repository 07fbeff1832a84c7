"""The training / evaluation dataset built from the dataset index.

What is trained on follows the audit: only usable boxes (`DatasetIndex.usable_boxes`); unreadable images and
images whose label file cannot be used are skipped; label lines with an error-level finding are skipped,
with one warning per image (not per batch). An image that loses every line is skipped too: training it as a
background would teach the model that its objects are not there. Background images (no label file, or an
empty one) are kept: they teach what is not an object.

Training mode augments (mosaic, random affine, colour, flips; see augment.py); evaluation mode only
letterboxes, in a fixed order, and returns the letterbox ratio and padding so predictions map back to
original pixels exactly. Each training sample is a pure function of (seed, epoch, draw, index): results do
not depend on the number of workers, and a resumed run sees the same augmentations.
"""

from __future__ import annotations

import copy
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from torch.utils.data import Dataset

from dataset_doctor.dataset.box_rules import OUT_OF_BOUNDS_TOLERANCE
from dataset_doctor.dataset.images import DEFAULT_MAX_PIXELS, budget_reduction
from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.errors import DoctorError
from dataset_doctor.findings import ERROR, display_name
from dataset_doctor.rebalance.paste import PasteOptions, PasteSource, paste_instance
from trainer.data.augment import (
    PixelOps,
    augment_sample,
    boxes_to_normalized_cxcywh,
    letterbox,
    normalized_cxcywh_to_boxes,
    resize_to_fit,
)
from trainer.data.collate import Sample
from trainer.data.config import CACHE_MODES, AugmentConfig, round_imgsz
from trainer.data.sampler import SampleKey

logger = logging.getLogger(__name__)
Log = Callable[[str], None]
MAX_SKIP_WARNINGS = 100  # beyond this many skipped images / line groups, one summary line (the audit lists all)
RAM_HEADROOM = 0.8  # cache only if the estimate fits in this fraction of the available memory
_DECODE_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}


@dataclass
class ImageSet:
    """The images of one split fit for training or evaluation, with their usable boxes."""

    split: str
    names: list[str]  # image paths relative to the dataset root (as in findings)
    paths: list[str]  # absolute image paths
    image_ids: np.ndarray  # image_id in the index, per image
    sizes: np.ndarray  # (n, 2) int64 (width, height) as the index measured them
    labels: list[np.ndarray]  # per image (k, 5) float32: class, cx, cy, w, h normalized to the image
    skipped_images: int = 0
    skipped_lines: int = 0

    def __len__(self) -> int:
        return len(self.paths)

    def image_classes(self) -> list[np.ndarray]:
        """Class ids of each image's boxes (what the balanced sampler weighs)."""
        return [labels[:, 0].astype(np.int64) for labels in self.labels]

    @property
    def backgrounds(self) -> int:
        return sum(1 for labels in self.labels if not len(labels))

    def subset(self, positions: Sequence[int]) -> ImageSet:
        """The images at these positions, in the order given."""
        positions = [int(p) for p in positions]
        return ImageSet(self.split, [self.names[p] for p in positions], [self.paths[p] for p in positions],
                        self.image_ids[positions], self.sizes[positions], [self.labels[p] for p in positions])


def select_images(index: DatasetIndex, split: str, warn: Log | None = None,
                  tolerance: float = OUT_OF_BOUNDS_TOLERANCE, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageSet:
    """The images and usable boxes of `split`, warning once for each skipped image or group of skipped lines.

    An image above `max_pixels` is kept when it can be decoded at a reduced size within it (a JPEG), else skipped:
    decoding it whole would take gigabytes (a 1 MB PNG can hold 32000x32000 pixels).
    """
    if split not in index.splits:
        raise DoctorError(f"the dataset has no '{split}' split", index.config.yaml_path)
    warnings = _SkipWarnings(_or_default(warn, logger.warning))
    images = index.images_in(split)
    bad_label_files, bad_lines = _label_errors(index, split, tolerance)
    usable = index.usable_boxes(split, tolerance)
    labels_of = _labels_by_image(usable)
    no_boxes = np.zeros((0, 5), dtype=np.float32)

    kept = ImageSet(split, [], [], np.zeros(0, dtype=np.int64), np.zeros((0, 2), dtype=np.int64), [])
    kept_ids: list[int] = []
    kept_sizes: list[tuple[int, int]] = []
    for image_id, name, label, path, readable, image_error, width, height, image_format in zip(
            images["image_id"], images["image"], images["label"], images["path"], images["readable"],
            images["image_error"], images["width"], images["height"], images["format"]):
        if not readable:
            warnings.add(f"{name}: skipped, unreadable image ({image_error})")
            kept.skipped_images += 1
            continue
        if budget_reduction((int(width), int(height)), image_format, max_pixels) is None:
            warnings.add(f"{name}: skipped, {width}x{height} pixels is above the --max-pixels budget of "
                         f"{max_pixels / 1e6:g} megapixels and a {image_format} cannot be decoded at a reduced size")
            kept.skipped_images += 1
            continue
        if name in bad_label_files:
            warnings.add(f"{label}: skipped {name}, unusable label file ({bad_label_files[name]})")
            kept.skipped_images += 1
            continue
        labels = labels_of.get(int(image_id), no_boxes)
        if name in bad_lines:
            lines = bad_lines[name]
            listed = ", ".join(f"{line} ({check})" for line, check in lines[:8]) + (" ..." if len(lines) > 8 else "")
            kept.skipped_lines += len(lines)
            if not len(labels):
                warnings.add(f"{label}: skipped {name}, every label line is an error: line {listed}")
                kept.skipped_images += 1
                continue
            warnings.add(f"{label}: skipped {len(lines)} label line(s) with errors: line {listed}")
        kept.names.append(name)
        kept.paths.append(path)
        kept.labels.append(labels)
        kept_ids.append(int(image_id))
        kept_sizes.append((int(width), int(height)))
    kept.image_ids = np.asarray(kept_ids, dtype=np.int64)
    kept.sizes = np.asarray(kept_sizes, dtype=np.int64).reshape(-1, 2)
    warnings.finish()
    if not len(kept):
        raise DoctorError(f"split '{split}' has no usable image (run `doctor audit` to see why)",
                          index.config.yaml_path)
    return kept


def _labels_by_image(boxes: pd.DataFrame) -> dict[int, np.ndarray]:
    """image_id -> (k, 5) float32 class, cx, cy, w, h, in line order."""
    ids = boxes["image_id"].to_numpy()
    values = boxes[["cls", "cx", "cy", "w", "h"]].to_numpy(dtype=np.float32)
    order = np.argsort(ids, kind="stable")
    ids, values = ids[order], values[order]
    unique, starts = np.unique(ids, return_index=True)
    return dict(zip(unique.tolist(), np.split(values, starts[1:]))) if len(ids) else {}


def _label_errors(index: DatasetIndex, split: str,
                  tolerance: float) -> tuple[dict[str, str], dict[str, list[tuple[int, str]]]]:
    """Per image name: why its label file is unusable; and its error lines as (line, check), sorted."""
    problems = index.problems
    in_split = problems[(problems["split"] == split) & (problems["severity"] == ERROR)
                        & problems["image"].notna() & problems["label"].notna()]
    whole_file = in_split[in_split["line"].isna()]
    bad_label_files = dict(zip(whole_file["image"], whole_file["message"]))
    line_rows = [in_split.loc[in_split["line"].notna(), ["image", "line", "check"]]]
    boxes = index.boxes
    errors = index.box_errors(tolerance)
    bad_boxes = (errors != "").to_numpy() & (boxes["split"] == split).to_numpy()
    line_rows.append(pd.DataFrame({"image": boxes["image"][bad_boxes], "line": boxes["line"][bad_boxes],
                                   "check": errors[bad_boxes]}))
    lines = pd.concat([rows for rows in line_rows if len(rows)], ignore_index=True) if any(
        len(rows) for rows in line_rows) else pd.DataFrame(columns=["image", "line", "check"])
    bad_lines: dict[str, list[tuple[int, str]]] = {}
    for image, group in lines.drop_duplicates().groupby("image", sort=False):
        bad_lines[image] = sorted((int(line), str(check)) for line, check in zip(group["line"], group["check"]))
    return bad_label_files, bad_lines


class _SkipWarnings:
    """One warning per skipped item, up to MAX_SKIP_WARNINGS, then a single summary line."""

    def __init__(self, warn: Log):
        self.warn, self.count, self.seen = warn, 0, set()

    def add(self, message: str) -> None:
        message = display_name(message)  # a file name that is not UTF-8, printable
        if message in self.seen:  # the same file listed twice in a split
            return
        self.seen.add(message)
        self.count += 1
        if self.count <= MAX_SKIP_WARNINGS:
            self.warn(message)

    def finish(self) -> None:
        if self.count > MAX_SKIP_WARNINGS:
            self.warn(f"... and {self.count - MAX_SKIP_WARNINGS} more skipped images or lines "
                      "(`doctor audit` lists them all)")


def _or_default(callback: Log | None, default: Log) -> Log:
    return default if callback is None else callback


def read_image(path: str, reduction: int = 1) -> np.ndarray:
    """Decode an image file as RGB uint8 (EXIF orientation applied, as the index measured it).

    reduction 2, 4 or 8 decodes a JPEG at that fraction of its size straight from the DCT coefficients
    (libjpeg's scaled decoding): several times faster than a full decode followed by a resize.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DoctorError(f"cannot read image: {error.strerror or error}", path) from None
    image = cv2.imdecode(data, _DECODE_FLAGS[reduction]) if data.size else None
    if image is None:
        raise DoctorError("cannot decode image (did it change since the dataset was indexed?)", path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_reduction(path: str, width: int, height: int, imgsz: int) -> int:
    """The largest JPEG decode reduction that keeps the long side >= imgsz and divides both sides.

    Exact division keeps the reduced image an exact 1/k scale of the original (a partial last DCT block
    would stretch it by a fraction of a pixel), so boxes stay exact.
    """
    if not path.lower().endswith((".jpg", ".jpeg")):
        return 1
    for factor in (8, 4, 2):
        if width % factor == 0 and height % factor == 0 and max(width, height) // factor >= imgsz:
            return factor
    return 1


def load_resized(path: str, size: tuple[int, int], imgsz: int,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, tuple[int, int]]:
    """(the image resized so its long side is imgsz, the (height, width) of the file), decoding as little as
    the indexed size (width, height) allows, and never more than `max_pixels` (select_images left out the
    images that cannot be decoded reduced)."""
    width, height = int(size[0]), int(size[1])
    reduction = decode_reduction(path, width, height, imgsz)
    over_budget = width * height > max_pixels
    if over_budget:
        # libjpeg's 1/k scale rounds a partial block up: a fraction of a pixel in thousands, boxes are normalized
        reduction = max(reduction, budget_reduction((width, height), "jpeg", max_pixels) or 8)
    image = read_image(path, reduction)
    if reduction > 1 and image.shape[:2] != (-(-height // reduction), -(-width // reduction)):
        if over_budget:
            raise DoctorError("the image changed since the dataset was indexed (its size differs)", path)
        image, reduction = read_image(path), 1  # the file no longer has the indexed size: decode it whole
    original = (height, width) if reduction > 1 else image.shape[:2]
    return resize_to_fit(image, imgsz), (int(original[0]), int(original[1]))


RECENT_IMAGES_BYTES = 256 * 2**20  # per training process (each loader worker has its own): YoloDataset.load


class YoloDataset(Dataset):
    """Images of an ImageSet as Samples: augmented when `augment` is given, else letterboxed only.

    Index it with a SampleKey (what the samplers yield) or a plain int (uses the epoch of `set_epoch`).
    `epochs` is the run length: with it, mosaic stops for the last `augment.close_mosaic` epochs.
    """

    def __init__(self, images: ImageSet, imgsz: int = 640, augment: AugmentConfig | None = None, *,
                 seed: int = 0, epochs: int | None = None, cache: str = "none", workers: int | None = None,
                 log: Log | None = None, warn: Log | None = None, max_pixels: int = DEFAULT_MAX_PIXELS):
        if cache not in CACHE_MODES:
            raise DoctorError(f"cache must be one of {', '.join(CACHE_MODES)}, got {cache!r}")
        self.images, self.imgsz = images, round_imgsz(imgsz, _or_default(warn, logger.warning))
        self.augment = augment.checked() if augment is not None else None
        self.seed, self.epochs, self.epoch = seed, epochs, 0
        self.max_pixels = max_pixels  # larger images decode reduced (select_images skipped those that cannot)
        self.pixel_ops = PixelOps(self.augment.pixel_ops if self.augment else 0.0)
        self.partner_probabilities: np.ndarray | None = None
        self.paste_table: PasteTable | None = None
        if self.augment is not None and self.augment.copy_paste > 0:
            self.set_paste_weights(None)
        self.cache: list[tuple[np.ndarray, tuple[int, int]]] | None = None
        self.recent: OrderedDict[int, tuple[np.ndarray, tuple[int, int]]] = OrderedDict()  # see load()
        self.recent_bytes = 0
        if cache == "ram":
            self.cache = _fill_ram_cache(self, workers, _or_default(log, logger.info),
                                         _or_default(warn, logger.warning))

    @property
    def training(self) -> bool:
        return self.augment is not None

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        """The epoch used for plain-int indexing (SampleKeys carry their own)."""
        self.epoch = epoch

    def mosaic_active(self, epoch: int) -> bool:
        """Mosaic is on from the start until `close_mosaic` epochs before the end of the run."""
        if self.augment is None or self.augment.mosaic <= 0:
            return False
        return self.epochs is None or epoch < self.epochs - self.augment.close_mosaic

    def set_partner_weights(self, weights: np.ndarray | None) -> None:
        """Draw the 3 extra mosaic images with these weights (the balanced sampler's), not uniformly.

        Otherwise three quarters of every mosaic would ignore the balancing.
        """
        if weights is None:
            self.partner_probabilities = None
            return
        weights = np.asarray(weights, dtype=np.float64)
        self.partner_probabilities = weights / weights.sum()

    def set_paste_weights(self, class_weights: Sequence[float] | None) -> None:
        """Draw `--copy-paste` instances with probability proportional to their class weight (1: uniform).

        With the loss's inverse-frequency weights every class is drawn about equally often, so the rare ones
        are pasted far more often than they occur.
        """
        self.paste_table = PasteTable.from_labels(self.images.labels, class_weights)

    def pasted_tile(self, index: int, rng: np.random.Generator,
                    loaded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """tile(index), with probability `copy_paste` with one train instance pasted into it
        (dataset_doctor.rebalance.paste: the same paste `doctor rebalance --method paste` writes)."""
        tile = self.tile(index, loaded)
        table = self.paste_table
        if self.augment is None or self.augment.copy_paste <= 0 or table is None or not table.ready:
            return tile
        if rng.random() >= self.augment.copy_paste:
            return tile
        image_index, box_index = table.draw(rng, exclude=index)
        if image_index < 0:
            return tile
        source_image, source_boxes, source_classes = self.tile(image_index)
        source = PasteSource(source_image, source_boxes, source_classes, box_index)
        pasted = paste_instance(tile[0], tile[1], tile[2], source, table.pools[int(source_classes[box_index])],
                                rng, PasteOptions(flip=False, jitter=True))  # the pipeline flips on its own
        return pasted.image, pasted.boxes.astype(np.float32), pasted.classes

    def view(self, positions: Sequence[int] | None = None, evaluation: bool = True) -> YoloDataset:
        """A dataset over some of these images (all by default) sharing the RAM cache; evaluation=True drops
        augmentation (e.g. the fixed train subset evaluated like val)."""
        clone = copy.copy(self)
        clone.recent, clone.recent_bytes = OrderedDict(), 0  # keyed by position: never shared with a view
        if positions is not None:
            clone.images = self.images.subset(positions)
            clone.cache = [self.cache[int(p)] for p in positions] if self.cache is not None else None
            clone.partner_probabilities = None
        if evaluation:
            clone.augment, clone.pixel_ops = None, PixelOps(0.0)
        return clone

    def cached_bytes(self) -> int:
        """Memory held by the RAM cache (0 without one)."""
        return sum(image.nbytes for image, _ in self.cache) if self.cache is not None else 0

    def __getstate__(self) -> dict:
        """Loader workers start with an empty buffer of recent images: never pickle up to 256 MB into each one."""
        state = self.__dict__.copy()
        state["recent"], state["recent_bytes"] = OrderedDict(), 0
        return state

    def load(self, index: int) -> tuple[np.ndarray, tuple[int, int]]:
        """The image resized to fit imgsz (long side = imgsz), RGB, and the (height, width) of the file.

        Without --cache, training keeps the most recently loaded images, resized, up to RECENT_IMAGES_BYTES per
        process (least recently used out first): a mosaic draws four images, so each is loaded about four times an
        epoch, and decoding was most of the loader's time (on the sample at 320: 61 images/s per process without
        the buffer, about 180 with it; bench/README.md). Ultralytics' loader keeps a similar buffer of recent
        images. Kept images are read-only, so no augmentation can change one, and the pixels are exactly those
        a fresh decode gives: the buffer changes the time, not the training.
        """
        if self.cache is not None:
            return self.cache[index]
        if self.augment is None:
            return load_resized(self.images.paths[index], self.images.sizes[index], self.imgsz, self.max_pixels)
        kept = self.recent.get(index)
        if kept is not None:
            self.recent.move_to_end(index)
            return kept
        loaded = load_resized(self.images.paths[index], self.images.sizes[index], self.imgsz, self.max_pixels)
        if loaded[0].nbytes <= RECENT_IMAGES_BYTES:
            loaded[0].flags.writeable = False
            self.recent[index] = loaded
            self.recent_bytes += loaded[0].nbytes
            while self.recent_bytes > RECENT_IMAGES_BYTES:
                self.recent_bytes -= self.recent.popitem(last=False)[1][0].nbytes
        return loaded

    def tile(self, index: int, loaded: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(resized image, boxes in its pixels x1y1x2y2, classes): the input of the augmentations. `loaded`: the
        image as load(index) returned it, when the caller has it already (one decode per image, not two)."""
        image = loaded if loaded is not None else self.load(index)[0]
        labels = self.images.labels[index]
        height, width = image.shape[:2]
        boxes = normalized_cxcywh_to_boxes(labels[:, 1:5], width, height)
        return image, np.clip(boxes, 0, [width, height, width, height]), labels[:, 0].astype(np.int64)

    def __getitem__(self, key: SampleKey | int) -> Sample:
        if isinstance(key, tuple):
            index, epoch, draw = int(key[0]), int(key[1]), int(key[2])
        else:
            index, epoch, draw = int(key), self.epoch, int(key)
        image, original_size = self.load(index)
        resized_height, resized_width = image.shape[:2]
        ratio = (resized_width / original_size[1], resized_height / original_size[0])
        pad = ((self.imgsz - resized_width) // 2, (self.imgsz - resized_height) // 2)
        if self.augment is None:
            tile_image, boxes, classes = self.tile(index, image)
            boxed = letterbox(tile_image, boxes, self.imgsz)
            output, boxes = boxed.image, boxed.boxes
        else:
            rng = np.random.default_rng([self.seed, epoch, draw, index])
            indices = [index]
            if self.mosaic_active(epoch) and rng.random() < self.augment.mosaic:
                partners = rng.choice(len(self), size=3, p=self.partner_probabilities)
                indices += [int(i) for i in partners]
            tiles = [self.pasted_tile(i, rng, image if position == 0 else None) for position, i in enumerate(indices)]
            output, boxes, classes = augment_sample(tiles, self.imgsz, rng,
                                                    self.augment, self.pixel_ops)
        normalized = boxes_to_normalized_cxcywh(boxes, self.imgsz, self.imgsz)
        labels = np.concatenate([classes[:, None], normalized], axis=1).astype(np.float32)
        return Sample(np.ascontiguousarray(output), labels, index, int(self.images.image_ids[index]), epoch, draw,
                      (int(original_size[0]), int(original_size[1])), ratio, pad)


@dataclass(frozen=True)
class PasteTable:
    """Every train instance as (image, box) with its draw probability, and each class's normalised box areas."""

    image_of: np.ndarray  # (n,) image position of each instance
    box_of: np.ndarray  # (n,) row in that image's labels
    probabilities: np.ndarray  # (n,)
    pools: dict[int, np.ndarray]  # class -> normalised areas w * h of its train boxes

    @property
    def ready(self) -> bool:
        return len(self.image_of) > 0 and len(np.unique(self.image_of)) > 1

    @staticmethod
    def from_labels(labels: Sequence[np.ndarray], class_weights: Sequence[float] | None) -> PasteTable:
        image_of = np.concatenate([np.full(len(rows), i) for i, rows in enumerate(labels)] or [np.zeros(0)])
        box_of = np.concatenate([np.arange(len(rows)) for rows in labels] or [np.zeros(0)])
        stacked = np.concatenate([rows for rows in labels if len(rows)] or [np.zeros((0, 5), np.float32)])
        classes = stacked[:, 0].astype(np.int64)
        if class_weights is None:
            weights = np.ones(len(classes))
        else:
            table = np.asarray(class_weights, dtype=np.float64)
            weights = table[np.clip(classes, 0, len(table) - 1)] if len(table) else np.ones(len(classes))
        probabilities = weights / weights.sum() if weights.sum() > 0 else weights
        areas = (stacked[:, 3] * stacked[:, 4]).astype(np.float64)
        pools = {int(k): areas[classes == k] for k in np.unique(classes)}
        return PasteTable(image_of.astype(np.int64), box_of.astype(np.int64), probabilities, pools)

    def draw(self, rng: np.random.Generator, exclude: int) -> tuple[int, int]:
        """(image, box) of an instance from another image than `exclude`; (-1, -1) after a few misses."""
        for _ in range(8):
            pick = int(rng.choice(len(self.image_of), p=self.probabilities))
            if self.image_of[pick] != exclude:
                return int(self.image_of[pick]), int(self.box_of[pick])
        return -1, -1


def build_dataset(index: DatasetIndex, split: str, imgsz: int = 640, augment: AugmentConfig | None = None, *,
                  seed: int = 0, epochs: int | None = None, cache: str = "none", workers: int | None = None,
                  log: Log | None = None, warn: Log | None = None,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> YoloDataset:
    """select_images + YoloDataset: augment=None gives the evaluation dataset."""
    images = select_images(index, split, warn, max_pixels=max_pixels)
    return YoloDataset(images, imgsz, augment, seed=seed, epochs=epochs, cache=cache, workers=workers, log=log,
                       warn=warn, max_pixels=max_pixels)


def _fill_ram_cache(dataset: YoloDataset, workers: int | None, log: Log,
                    warn: Log) -> list[tuple[np.ndarray, tuple[int, int]]] | None:
    """Decode and resize every image once, in threads (OpenCV releases the GIL), after checking memory."""
    needed = estimate_cache_bytes(dataset)
    available = available_memory_bytes()
    where = f"{len(dataset)} {dataset.images.split} images at imgsz {dataset.imgsz}"
    if available is not None and needed > RAM_HEADROOM * available:
        warn(f"--cache ram: {where} need about {needed / 2**30:.1f} GiB, more than {RAM_HEADROOM:.0%} of the "
             f"{available / 2**30:.1f} GiB available: not caching")
        return None
    free = f" of {available / 2**30:.1f} GiB available" if available is not None else ""
    log(f"caching {where} in RAM: about {needed / 2**30:.2f} GiB{free}")
    threads = max(1, workers if workers else (os.cpu_count() or 1))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(load_resized, dataset.images.paths, dataset.images.sizes,
                             [dataset.imgsz] * len(dataset), [dataset.max_pixels] * len(dataset)))


def estimate_cache_bytes(dataset: YoloDataset) -> int:
    """Bytes of all images resized to fit imgsz, from the sizes the index measured (nothing decoded)."""
    sizes = dataset.images.sizes.astype(np.float64)
    scale = dataset.imgsz / np.maximum(sizes.max(axis=1), 1)
    resized = np.maximum(np.round(sizes * scale[:, None]), 1)
    return int((resized[:, 0] * resized[:, 1] * 3).sum())


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages; None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
