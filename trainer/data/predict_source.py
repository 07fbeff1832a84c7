"""What `doctor predict` runs on: an image, a folder of images, a .txt list, or one split of a data.yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dataset_doctor.dataset.datayaml import is_image_file, list_split_images, load_data_yaml
from dataset_doctor.dataset.images import probe_image_file
from dataset_doctor.errors import DoctorError
from trainer.data.dataset import ImageSet


def image_set_from_source(source: str | Path, split: str = "val", warn=print) -> ImageSet:
    """An unlabelled ImageSet of every readable image in `source` (unreadable ones skipped with a warning)."""
    source = Path(source)
    if not source.exists():
        raise DoctorError("not found", source)
    if source.suffix.lower() in (".yaml", ".yml"):
        config = load_data_yaml(source)
        if split not in config.splits:
            raise DoctorError(f"no '{split}' split", source)
        paths = list_split_images(config, split)
    elif source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.is_file() and is_image_file(p))
    elif source.suffix.lower() == ".txt":
        paths = [Path(line.strip()) if Path(line.strip()).is_absolute() else source.parent / line.strip()
                 for line in source.read_text(encoding="utf-8", errors="replace").splitlines()
                 if line.strip() and is_image_file(line.strip())]
    elif is_image_file(source):
        paths = [source]
    else:
        raise DoctorError("expected an image, a folder of images, a .txt list of images or a data.yaml", source)

    kept, sizes = [], []
    for path in paths:
        probe = probe_image_file(str(path))
        if probe.error:
            warn(f"{path}: skipped ({probe.error})")
            continue
        kept.append(str(path))
        sizes.append((probe.width, probe.height))
    if not kept:
        raise DoctorError("no readable image to predict on", source)
    empty = np.zeros((0, 5), dtype=np.float32)
    return ImageSet("predict", [Path(p).name for p in kept], kept, np.arange(len(kept), dtype=np.int64),
                    np.array(sizes, dtype=np.int64), [empty] * len(kept))
