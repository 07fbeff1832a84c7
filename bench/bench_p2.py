"""Benchmark the stride-4 P2 detection level (issue 21, item 3): val AP of n-p2 vs n on tiny objects, equal epochs.

    PYTHONPATH=. OMP_NUM_THREADS=2 nice -n 10 python bench/bench_p2.py                 # 400 + 100 images, 10 epochs
    PYTHONPATH=. python bench/bench_p2.py --train-images 800 --val-images 200 --epochs 30   # quiet machine

The dataset is the sample generator (seed 0) with its objects drawn small: heights log-uniform in
[--min-object-px, --max-object-px] pixels on images of 320-640 px, i.e. 2-9 px at the default --imgsz 320, where
stride 8 (P3) puts several objects in one cell. Both models train in a fresh `doctor train` process with the same
settings (CPU, evaluation only at the end) and are scored by the run's own final val evaluation (results.csv).
Prints a markdown table; writes only inside --work (a temporary folder unless given).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="folder for the dataset and runs (default: temporary, removed)")
    parser.add_argument("--train-images", type=int, default=400)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--min-object-px", type=int, default=6)
    parser.add_argument("--max-object-px", type=int, default=18)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--models", default="n,n-p2")
    args = parser.parse_args()

    from dataset_doctor.sample.generate import write_sample_dataset
    from dataset_doctor.sample.spec import SampleSpec
    from trainer.config import parse_model_name
    from trainer.model.detector import Detector, ModelConfig, count_gflops, count_parameters

    temporary = None if args.work else tempfile.TemporaryDirectory()
    work = args.work or Path(temporary.name)
    data = work / "tiny" / "data.yaml"
    if not data.is_file():
        write_sample_dataset(work / "tiny", seed=0, spec=SampleSpec(
            train_images=args.train_images, val_images=args.val_images, min_object_px=args.min_object_px,
            max_object_px=args.max_object_px))
    print(f"tiny-object sample: {args.train_images} + {args.val_images} images, object heights "
          f"{args.min_object_px}-{args.max_object_px} px on 320-640 px images; imgsz {args.imgsz}, "
          f"{args.epochs} epochs, batch {args.batch}\n")
    print("| model | params | GFLOPs at imgsz | val mAP50 | val mAP50-95 | train wall s |")
    print("|---|---|---|---|---|---|", flush=True)
    for name in args.models.split(","):
        run = work / "runs" / name
        started = time.perf_counter()
        if not (run / "results.csv").is_file():
            command = [sys.executable, "-m", "dataset_doctor", "train", str(data), "--model", name, "--epochs",
                       str(args.epochs), "--eval-every", str(args.epochs), "--imgsz", str(args.imgsz), "--batch",
                       str(args.batch), "--device", "cpu", "--seed", "0", "--project", str(work / "runs"),
                       "--name", name, "--exist-ok", "--no-live-report", "--no-tensorboard", "--workers", "1",
                       "--copy-paste", "0"]  # as recorded in bench/README.md, before it was on by default
            completed = subprocess.run(command, capture_output=True, text=True,
                                       env={**os.environ, "PYTHONPATH": str(REPO)})
            if completed.returncode != 0:
                raise SystemExit(f"failed: {' '.join(command)}\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
        wall = time.perf_counter() - started
        with open(run / "results.csv", newline="") as handle:
            last = list(csv.DictReader(handle))[-1]
        scale, p2 = parse_model_name(name)
        model = Detector(ModelConfig(scale=scale, num_classes=10, p2=p2))
        print(f"| {name} | {count_parameters(model):,} | {count_gflops(model, args.imgsz):.2f} | "
              f"{float(last['val_map50']):.3f} | {float(last['val_map50_95']):.3f} | {wall:.0f} |", flush=True)
    if temporary is not None:
        temporary.cleanup()


if __name__ == "__main__":
    main()
