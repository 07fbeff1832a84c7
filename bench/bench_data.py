"""Data loader throughput: images/s of the training pipeline (mosaic, affine, HSV, flip, collate) and of the
evaluation pipeline (letterbox only), at imgsz 320 and 640, with 0 and 2 worker processes.

    PYTHONPATH=. python bench/bench_data.py                    # the bundled sample dataset (800 train images)
    PYTHONPATH=. python bench/bench_data.py --data data.yaml   # any dataset
    PYTHONPATH=. python bench/bench_data.py --batches 5 --train-images 60   # a quick check

Prints a markdown table. Time starts after two warm-up batches (worker start-up and first file reads are
not throughput); the page cache is warm after the first configuration, as it is during training.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_doctor.dataset.index import build_index  # noqa: E402
from dataset_doctor.sample.generate import write_sample_dataset  # noqa: E402
from dataset_doctor.sample.spec import SampleSpec  # noqa: E402
from trainer.data.config import AugmentConfig, DataConfig  # noqa: E402
from trainer.data.loader import build_eval_loader, build_train_loader, set_loader_epoch  # noqa: E402

WARMUP_BATCHES = 2


def measure(loader, batches: int) -> tuple[float, int]:
    """(images per second, batches timed) over `batches` batches after the warm-up, cycling epochs if needed."""
    timed, images, epoch, started = 0, 0, 0, None
    while timed < batches:
        set_loader_epoch(loader, epoch)
        for step, batch in enumerate(loader):
            if started is None and (epoch > 0 or step + 1 >= WARMUP_BATCHES):
                started = time.perf_counter()
                continue
            if started is not None:
                images += len(batch)
                timed += 1
                if timed >= batches:
                    break
        epoch += 1
    return images / (time.perf_counter() - started), timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="data.yaml (default: generate the sample dataset)")
    parser.add_argument("--train-images", type=int, default=800, help="size of the generated sample's train split")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[320, 640])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--copy-paste", type=float, default=0.0,
                        help="online copy-paste probability (doctor train's default is 0.5; 0: as the numbers in "
                             "bench/README.md, which predate it)")
    parser.add_argument("--batches", type=int, default=30, help="timed batches per configuration")
    parser.add_argument("--cache", choices=["none", "ram"], default="none")
    parser.add_argument("--modes", nargs="+", choices=["train", "eval"], default=["train", "eval"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-data-") as scratch:
        os.environ.setdefault("DOCTOR_CACHE_DIR", str(Path(scratch) / "cache"))
        data_yaml = args.data
        if data_yaml is None:
            spec = SampleSpec(train_images=args.train_images, val_images=max(20, args.train_images // 4))
            data_yaml = write_sample_dataset(Path(scratch) / "sample", seed=0, spec=spec)
        index = build_index(data_yaml, progress=False)
        quiet = lambda message: None  # noqa: E731 - skipped-line warnings are not what is measured

        print(f"dataset: {data_yaml} ({len(index.images_in('train'))} train images); cores: {os.cpu_count()}, "
              f"torch threads: {torch.get_num_threads()}, batch {args.batch}, cache {args.cache}\n")
        print("| mode | imgsz | workers | batches timed | images/s |")
        print("|---|---:|---:|---:|---:|")
        for mode in args.modes:
            for imgsz in args.imgsz:
                for workers in args.workers:
                    data = DataConfig(imgsz=imgsz, workers=workers, cache=args.cache)
                    if mode == "train":
                        loader = build_train_loader(index, data, AugmentConfig(copy_paste=args.copy_paste),
                                                    args.batch, epochs=None, log=quiet, warn=quiet)
                    else:
                        loader = build_eval_loader(index, "train", data, args.batch, log=quiet, warn=quiet)
                    rate, timed = measure(loader, args.batches)
                    print(f"| {mode} | {imgsz} | {workers} | {timed} | {rate:.1f} |", flush=True)
                    del loader


if __name__ == "__main__":
    main()
