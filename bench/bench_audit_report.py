"""Benchmark the audit HTML report: build time and file size as datasets grow.

    PYTHONPATH=. python bench/bench_audit_report.py                          # full scale (10k images, 140k boxes)
    PYTHONPATH=. python bench/bench_audit_report.py --images 1200 --dense-images 2000 --runs 1   # a quick check

Cases, each on a warm index cache (the scan is bench_audit.py's business; here it is done once, untimed):
- sample: the bundled sample dataset (1,000 images, 10 classes, every kind of defect, so every gallery);
- replica: a --images replica of the sample (bench/audit_datasets.py: distinct flipped / rotated / inverted
  re-encodings, the sample's defects repeated in each copy, so findings grow with it);
- dense: --dense-images noise images with --dense-boxes boxes each over 80 long-tailed classes: many classes,
  many boxes, the per-box scatter subsampled.
Timed: building the page (figures, thumbnails decoded and encoded, tables) and rendering it to one string,
then writing it; the median over --runs. Reported with the file size, figures and pictures embedded.
Prints a markdown table; no number is written anywhere else.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000, help="images in the replica case (0: skip)")
    parser.add_argument("--dense-images", type=int, default=10_000, help="images in the dense case (0: skip)")
    parser.add_argument("--dense-boxes", type=int, default=14, help="boxes per image in the dense case")
    parser.add_argument("--runs", type=int, default=3, help="builds per case; the median is reported")
    parser.add_argument("--data-dir", type=Path, help="keep / reuse the generated datasets here (default: temp)")
    args = parser.parse_args()

    work = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-audit-report-"))
    os.environ.setdefault("DOCTOR_CACHE_DIR", str(work / "cache"))
    try:
        rows = [measure(name, data_yaml, args.runs, work) for name, data_yaml in datasets(args, work)]
    finally:
        if args.data_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows, args)


def datasets(args: argparse.Namespace, work: Path) -> list[tuple[str, Path]]:
    from audit_datasets import replicate_dataset, synthetic_boxes_dataset

    from dataset_doctor.sample.generate import write_sample_dataset

    sample = work / "sample" / "data.yaml"
    if not sample.exists():
        write_sample_dataset(sample.parent, seed=0)
    found = [("sample", sample)]
    if args.images:
        replica = work / f"replica-{args.images}" / "data.yaml"
        if not replica.exists():
            print(f"building a {args.images}+ image replica ...", file=sys.stderr)
            replicate_dataset(sample, replica.parent, args.images)
        found.append(("replica", replica))
    if args.dense_images:
        dense = work / f"dense-{args.dense_images}x{args.dense_boxes}" / "data.yaml"
        if not dense.exists():
            print(f"building a {args.dense_images} x {args.dense_boxes}-box dataset ...", file=sys.stderr)
            synthetic_boxes_dataset(dense.parent, args.dense_images * args.dense_boxes, args.dense_boxes)
        found.append(("dense, 80 classes", dense))
    return found


def measure(name: str, data_yaml: Path, runs: int, work: Path) -> dict:
    from dataset_doctor.audit import run_audit
    from dataset_doctor.dataset.index import build_index
    from reports.audit_report import build_audit_report

    index = build_index(data_yaml, progress=False)
    result = run_audit(index)
    target = work / f"{name.split(',')[0]}-audit.html"
    build_audit_report(result, index).render()  # imports and plotly.js read once, outside the timing
    builds, writes = [], []
    for _ in range(runs):
        started = time.perf_counter()
        page = build_audit_report(result, index)
        text = page.render()
        built = time.perf_counter()
        page.write(target)
        writes.append(time.perf_counter() - built)
        builds.append(built - started)
    return {"case": name, "images": len(index.images), "boxes": len(result.box_geometry),
            "findings": len(result.findings), "classes": len(result.classes), "build": statistics.median(builds),
            "write": statistics.median(writes), "size": target.stat().st_size / 2**20,
            "figures": text.count('class="plotly-graph-div"'), "pictures": text.count("<img ")}


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    import plotly

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"\nAudit HTML report: {cores} cores, Python {sys.version.split()[0]}, plotly {plotly.__version__}; "
          f"median of {args.runs} builds\n")
    print("| case | images | usable boxes | classes | findings | build + render s | write s | size MiB | figures "
          "| pictures |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['case']} | {row['images']:,} | {row['boxes']:,} | {row['classes']} | {row['findings']:,} | "
              f"{row['build']:.2f} | {row['write']:.3f} | {row['size']:.1f} | {row['figures']} | {row['pictures']} |")
    print("\nSize includes plotly.js (about 4.6 MiB), embedded once. Budget: under 15 MB for the sample dataset.")


if __name__ == "__main__":
    main()
