"""Build a large YOLO dataset for benchmarks by replicating a small one (the sample, or a real one).

Copies are re-encoded with a tiny per-copy pixel change, so they are distinct files with distinct content
hashes, like a real dataset (byte copies would let the OS page cache and hash de-duplication flatter us).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset_doctor.datayaml import label_path_for, list_split_images, load_data_yaml
from dataset_doctor.index import build_index
from dataset_doctor.sample import write_sample_dataset


def replicate(source_yaml: Path, out: Path, train_images: int) -> Path:
    """A dataset at `out` whose train split holds `train_images` images cycled from the source's train split."""
    config = load_data_yaml(source_yaml)
    readable = build_index(config, progress=False, use_cache=False).images
    readable = set(readable.loc[readable["readable"], "path"])
    sources = [p for p in list_split_images(config, "train") if str(p) in readable]
    val_sources = list_split_images(config, "val")
    for split, files, count in (("train", sources, train_images), ("val", val_sources, len(val_sources))):
        image_dir, label_dir = out / "images" / split, out / "labels" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for number in range(count):
            source = files[number % len(files)]
            copy = number // len(files)
            name = f"{source.stem}_{copy:03d}"
            if copy == 0:
                shutil.copyfile(source, image_dir / f"{name}{source.suffix}")
            else:
                pixels = cv2.imread(str(source))
                pixels[copy % pixels.shape[0], :, copy % 3] ^= 1  # a one-bit change in one row: a new file
                cv2.imwrite(str(image_dir / f"{name}.jpg"), pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])
            label = label_path_for(source)
            if label.exists():
                shutil.copyfile(label, label_dir / f"{name}.txt")
    (out / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val",
                                                   "names": list(config.names)}, sort_keys=False))
    return out / "data.yaml"


def big_dataset(out: Path, source: str, train_images: int) -> Path:
    """`source` is "sample" (generated here) or a data.yaml path."""
    if (out / "data.yaml").exists():
        return out / "data.yaml"
    if source == "sample":
        source_yaml = write_sample_dataset(out.parent / f"{out.name}-source", seed=0)
    else:
        source_yaml = Path(source)
    return replicate(source_yaml, out, train_images)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", default="sample", help='"sample" or a data.yaml to replicate')
    parser.add_argument("--train-images", type=int, default=10_000)
    arguments = parser.parse_args()
    print(big_dataset(arguments.out, arguments.source, arguments.train_images))
