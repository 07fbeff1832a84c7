"""Writing pasted instances into the output's train images (`doctor rebalance --method paste|auto`).

A host is an original train image of the output: its link is replaced by a new file holding the host with its
pastes (same name and format), and its label file by the new labels. The source dataset is only read (a
hard-linked host is unlinked first, never written through). Every paste is a row of manifest.csv: the source
image and line, the host image and the line the instance has in the host's new label file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dataset_doctor.dataset.datayaml import label_path_for
from dataset_doctor.dataset.images import read_image_file
from dataset_doctor.errors import DoctorError
from dataset_doctor.rebalance.augment import clip_yolo_boxes
from dataset_doctor.rebalance.paste import PasteOptions, PasteSource, paste_instance
from dataset_doctor.rebalance.paste_plan import PasteJob
from dataset_doctor.rebalance.sources import TrainSources

_ENCODABLE = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
JPEG_QUALITY = 95


@dataclass(frozen=True)
class PasteRecord:
    """One pasted instance as manifest.csv records it."""

    host_file: str  # relative to DIR
    source: str  # absolute path of the source image
    source_line: int  # the instance's line in the source label file
    line: int | None  # its line in the host's new label file (None: a later paste hid it)
    transform: str
    seed: int
    carried: int  # boxes the patch brought (the instance included)


@dataclass(frozen=True)
class PastedHost:
    position: int
    file: str  # relative to DIR
    classes: np.ndarray  # every class written to its label file
    dropped: int  # host boxes hidden by pastes and dropped


def class_size_pools(sources: TrainSources) -> dict[int, np.ndarray]:
    """Per class, the normalised areas (w * h) of its train boxes: what pasted sizes are drawn from."""
    areas = (sources.boxes["w"] * sources.boxes["h"]).to_numpy(np.float64)
    classes = sources.boxes["cls"].to_numpy(np.int64)
    return {int(k): areas[classes == k] for k in np.unique(classes)}


def pixel_boxes(normalised: np.ndarray, width: int, height: int) -> np.ndarray:
    """YOLO cx cy w h (clipped to the image) -> pixel x1 y1 x2 y2."""
    boxes = clip_yolo_boxes(normalised)
    return np.column_stack([(boxes[:, 0] - boxes[:, 2] / 2) * width, (boxes[:, 1] - boxes[:, 3] / 2) * height,
                            (boxes[:, 0] + boxes[:, 2] / 2) * width, (boxes[:, 1] + boxes[:, 3] / 2) * height])


def yolo_lines(boxes: np.ndarray, classes: np.ndarray, width: int, height: int) -> str:
    """Pixel boxes -> label text, clipped to the image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, x2 = np.clip(boxes[:, 0], 0, width) / width, np.clip(boxes[:, 2], 0, width) / width
    y1, y2 = np.clip(boxes[:, 1], 0, height) / height, np.clip(boxes[:, 3], 0, height) / height
    return "".join(f"{int(cls)} {(a + c) / 2:.6f} {(b + d) / 2:.6f} {c - a:.6f} {d - b:.6f}\n"
                   for cls, a, b, c, d in zip(classes, x1, y1, x2, y2))


def write_pastes(sources: TrainSources, originals: Sequence[str], staging: Path, jobs: Sequence[PasteJob],
                 options: PasteOptions = PasteOptions()) -> tuple[list[PastedHost], list[PasteRecord]]:
    """Apply every job to its host (in `number` order) and write the hosts into `staging`."""
    pools = class_size_pools(sources)
    by_host: dict[int, list[PasteJob]] = {}
    for job in jobs:
        by_host.setdefault(job.host, []).append(job)
    groups = dict(list(sources.boxes.groupby("position")))
    hosts, records = [], []
    cache: dict[int, np.ndarray] = {}

    def image_at(position: int) -> np.ndarray:
        if position not in cache:
            if len(cache) > 64:
                cache.clear()
            path = sources.images.at[position, "path"]
            pixels = read_image_file(path)
            if pixels is None:
                from dataset_doctor.rebalance.materialize import undecodable  # materialize imports this module

                raise undecodable(path)
            cache[position] = pixels
        return cache[position]

    def labels_at(position: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        group = groups.get(position)
        if group is None:
            return np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return (group[["cx", "cy", "w", "h"]].to_numpy(np.float64), group["cls"].to_numpy(np.int64),
                group["line"].to_numpy(np.int64))

    for host in sorted(by_host):
        image = image_at(host)
        height, width = image.shape[:2]
        normalised, classes, _ = labels_at(host)
        boxes = pixel_boxes(normalised, width, height)
        host_count = len(boxes)
        origin = np.full(host_count, -1)  # which paste record a box came from (-1: the host's own)
        is_instance = np.zeros(host_count, dtype=bool)  # the pasted instance itself (not a carried neighbour)
        pending: list[tuple[PasteJob, str, int]] = []
        for job in sorted(by_host[host], key=lambda j: j.number):
            source_image = image_at(job.source)
            source_normalised, source_classes, source_lines = labels_at(job.source)
            row = sources.boxes.iloc[job.box]
            index = int(np.flatnonzero(source_lines == int(row["line"]))[0])
            source = PasteSource(source_image, pixel_boxes(source_normalised, *source_image.shape[1::-1]),
                                 source_classes, index)
            result = paste_instance(image, boxes, classes, source, pools.get(int(row["cls"]), np.zeros(0)),
                                    np.random.default_rng(job.seed), options)
            image, boxes, classes = result.image, result.boxes, result.classes
            origin = np.concatenate([origin[result.host_kept], np.full(len(result.pasted), len(pending))])
            is_instance = np.concatenate([is_instance[result.host_kept], np.arange(len(result.pasted)) == 0])
            pending.append((job, result.describe, len(result.pasted)))
        file = originals[host]
        _write_image(staging / file, image, sources.images.at[host, "path"])
        label_path = label_path_for(staging / file)
        label_path.parent.mkdir(parents=True, exist_ok=True)
        if label_path.is_symlink() or label_path.exists():
            label_path.unlink()  # never write through a link into the source
        label_path.write_text(yolo_lines(boxes, classes, width, height))
        # a later paste in a dense scene may hide an earlier instance: its row then has no line
        first_line = {int(origin[i]): i + 1 for i in np.flatnonzero(is_instance)}
        for record_index, (job, transform, carried) in enumerate(pending):
            row = sources.boxes.iloc[job.box]
            records.append(PasteRecord(file, sources.images.at[job.source, "path"], int(row["line"]),
                                       first_line.get(record_index), transform, job.seed, carried))
        kept_host = int((origin == -1).sum())
        hosts.append(PastedHost(host, file, classes.copy(), host_count - kept_host))
    return hosts, records


def _write_image(target: Path, image: np.ndarray, source: str) -> None:
    suffix = target.suffix.lower()
    extension = suffix if suffix in _ENCODABLE else ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if extension in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(extension, image, params)
    if not ok:
        raise DoctorError("could not encode a pasted image", source)
    if target.is_symlink() or target.exists():
        target.unlink()  # a link to the source: replace it, never write through it
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(encoded.tobytes())
