"""Benchmark the reports at a hundred classes: build time and file size of the audit and training reports.

    PYTHONPATH=. nice -n 10 python bench/bench_hundred_classes.py                        # 800 + 200 images
    PYTHONPATH=. nice -n 10 python bench/bench_hundred_classes.py --train-images 200 --val-images 50  # quicker

The dataset is `doctor sample --classes 100` (seed 0). Timed, each once (the index scan and the training run
are not timed): the audit (run_audit on a warm index), building + writing the audit report, and building +
writing the training report of a one-epoch scale-n run at --imgsz (its numbers are meaningless, its tables and
figures hold all hundred classes). Prints a markdown table; nothing is written anywhere else.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-images", type=int, default=800)
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--imgsz", type=int, default=64, help="training size of the one-epoch run")
    args = parser.parse_args()

    from dataset_doctor.audit import AuditOptions, run_audit
    from dataset_doctor.dataset.index import build_index
    from dataset_doctor.sample.generate import write_sample_dataset
    from dataset_doctor.sample.spec import SampleSpec
    from reports.audit_report import write_audit_report
    from reports.training_report import build_training_report
    from trainer.config import TrainConfig, TrainSettings
    from trainer.data.config import AugmentConfig, DataConfig
    from trainer.loop import train

    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        data_yaml = write_sample_dataset(root / "hundred", seed=0, spec=SampleSpec(
            train_images=args.train_images, val_images=args.val_images, classes=100))
        index = build_index(data_yaml, progress=False)
        rows = []
        started = time.perf_counter()
        result = run_audit(index, AuditOptions())
        rows.append(("audit (run_audit, warm index)", time.perf_counter() - started, None))
        started = time.perf_counter()
        page = write_audit_report(result, index, root / "audit.html")
        rows.append(("audit report (build + write)", time.perf_counter() - started, page.stat().st_size))
        config = TrainConfig(data=str(data_yaml), epochs=1, batch=16, project=str(root / "runs"), name="exp",
                             save_batches=0, seed=0)
        run_dir = train(TrainSettings(config, DataConfig(imgsz=args.imgsz, workers=0), AugmentConfig()),
                        progress=False)
        started = time.perf_counter()
        page = build_training_report(run_dir, search_dirs=[root / "nowhere"])
        rows.append(("training report (build + write)", time.perf_counter() - started, page.stat().st_size))
    print(f"\n100 classes, {args.train_images} train + {args.val_images} val images\n")
    print("| step | seconds | file size |\n|---|---:|---:|")
    for name, seconds, size in rows:
        print(f"| {name} | {seconds:.2f} | {'' if size is None else f'{size / 1e6:.2f} MB'} |")


if __name__ == "__main__":
    main()
