"""Benchmark `doctor audit`: throughput cold and warm on a 10k+ image dataset, peak memory, and the Ultralytics
label scan side by side.

    PYTHONPATH=. python bench/bench_audit.py                       # full scale: 10k+ images, 1M-box memory case
    PYTHONPATH=. python bench/bench_audit.py --images 1200 --memory-boxes 50000 --runs 2   # a quick check
    PYTHONPATH=. python bench/bench_audit.py --ultralytics-python /path/to/other-venv/bin/python
    PYTHONPATH=. python bench/bench_audit.py --data-dir DIR --ultralytics-python PY --warm-pairs 15  # warm, in turn

Cases (each run in a fresh process, timed from build_index to the end of run_audit, imports excluded, as
the Ultralytics scan is timed from its dataset constructor on; images/s is the median over --runs):
- cold: the index cache is emptied first, so every image is read, decoded (reduced size), hashed and every
  label parsed, on all cores; then every audit check. The OS page cache is warm for both tools alike.
- warm: the cache is valid: every file is still stat'ed to validate it, then every check runs.
- cli: `doctor audit data.yaml --json FILE` end to end on a warm cache, interpreter start and imports included.
- dense: a synthetic dataset shaped like the issue's reference measurement (--dense-images images of
  --dense-boxes boxes each; default 10k x 14 = 140k boxes) on small noise images, cold and warm, with the
  Ultralytics scan on it too when given: box-heavy labels on cheap-to-decode images.
- memory: a synthetic dataset of --memory-boxes boxes (50 per small noise image, 80 classes), cold and warm:
  peak resident memory of the auditing process (scan workers are forked copies sharing its pages).
- ultralytics cold / warm: its YOLODataset label scan (image header check, JPEG end marker, label parsing,
  its own cache), run as a separate program with another interpreter: Ultralytics is AGPL-3.0, so nothing of
  it is imported here.

A peer environment for Ultralytics that leaves the project's untouched (it reads the project's torch, NumPy and
OpenCV through a .pth file; only Ultralytics' own extras are installed into it):
    python -m venv /tmp/ultra && echo "$PWD/.venv/lib/python3.11/site-packages" \
        > /tmp/ultra/lib/python3.11/site-packages/project.pth
    /tmp/ultra/bin/pip install --no-deps ultralytics ultralytics-thop "torchvision==0.28.*"
    /tmp/ultra/bin/pip install pillow psutil requests polars matplotlib

The replica is built from the sample dataset (or --source) by bench/audit_datasets.py: distinct flipped /
rotated / inverted re-encodings, so copies are neither byte- nor near-duplicates (--jpeg-only re-encodes the
sample's PNGs, 11% of its images but over half of a cold scan's decoding time, as JPEG). Prints a markdown
table; no number is written anywhere else.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

_ULTRALYTICS_SCAN = '''
import glob, json, os, sys, time
from ultralytics.data.dataset import YOLODataset
from ultralytics.data.utils import check_det_dataset
data_yaml, mode = sys.argv[1], sys.argv[2]
data = check_det_dataset(data_yaml)
if mode == "cold":
    root = os.path.dirname(os.path.abspath(data_yaml))
    for cache in glob.glob(os.path.join(root, "**", "*.cache"), recursive=True):
        os.remove(cache)
started = time.perf_counter()
images = 0
for split in ("train", "val"):
    images += len(YOLODataset(img_path=data[split], imgsz=640, augment=False, data=data, task="detect").labels)
print(json.dumps({"seconds": time.perf_counter() - started, "images_kept": images}))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000, help="at least this many images in the replica")
    parser.add_argument("--source", type=Path, help="data.yaml to replicate (default: the sample dataset, seed 0)")
    parser.add_argument("--jpeg-only", action="store_true",
                        help="re-encode PNG sources as JPEG in the replica (most real datasets are JPEG only)")
    parser.add_argument("--data-dir", type=Path, help="keep / reuse the generated datasets here (default: temp)")
    parser.add_argument("--runs", type=int, default=5, help="runs per case; the median is reported")
    parser.add_argument("--workers", type=int, help="scan processes (default: all cores)")
    parser.add_argument("--memory-boxes", type=int, default=1_000_000, help="boxes in the memory case (0: skip)")
    parser.add_argument("--dense-images", type=int, default=10_000, help="images in the dense case (0: skip)")
    parser.add_argument("--dense-boxes", type=int, default=14, help="boxes per image in the dense case")
    parser.add_argument("--ultralytics-python", type=Path, help="interpreter of an environment with ultralytics")
    parser.add_argument("--warm-pairs", type=int, default=0,
                        help="only the warm audit against the warm Ultralytics scan, in this many alternating "
                             "pairs of fresh processes (needs --ultralytics-python)")
    parser.add_argument("--measure", choices=["cold", "warm"], help=argparse.SUPPRESS)  # internal: one run
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure_once(args.data, args.workers)))
        return

    work = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-audit-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.warm_pairs:
            if not args.ultralytics_python:
                parser.error("--warm-pairs needs --ultralytics-python")
            print_pairs(warm_pairs(args, work))
            return
        rows = run_benchmark(args, work)
    finally:
        if args.data_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows, args)


def run_benchmark(args: argparse.Namespace, work: Path) -> list[dict]:
    from audit_datasets import replicate_dataset, synthetic_boxes_dataset

    from dataset_doctor.sample.generate import write_sample_dataset

    replica = replica_yaml(args, work)
    if not replica.exists():
        source = args.source or (work / "sample-source" / "data.yaml")
        if not source.exists():
            write_sample_dataset(source.parent, seed=0)
        print(f"building a {args.images}+ image replica of {source} ...", file=sys.stderr)
        replicate_dataset(source, replica.parent, args.images, jpeg_only=args.jpeg_only)
    rows = [timed_case("cold", replica, args, cold=True), timed_case("warm", replica, args, cold=False),
            cli_case(replica, args)]
    rows[0]["note"] = describe_dataset(replica)
    if args.ultralytics_python:
        rows += ultralytics_cases(replica, args)
    if args.dense_images:
        dense = work / f"dense-{args.dense_images}x{args.dense_boxes}" / "data.yaml"
        if not dense.exists():
            print(f"building a {args.dense_images} x {args.dense_boxes}-box dataset ...", file=sys.stderr)
            synthetic_boxes_dataset(dense.parent, args.dense_images * args.dense_boxes, args.dense_boxes)
        rows += [timed_case("dense cold", dense, args, cold=True), timed_case("dense warm", dense, args, cold=False)]
        if args.ultralytics_python:
            rows += [{**row, "case": row["case"].replace("ultralytics", "ultralytics dense")}
                     for row in ultralytics_cases(dense, args)]
    if args.memory_boxes:
        synthetic = work / f"boxes-{args.memory_boxes}" / "data.yaml"
        if not synthetic.exists():
            print(f"building a {args.memory_boxes}-box dataset ...", file=sys.stderr)
            synthetic_boxes_dataset(synthetic.parent, args.memory_boxes)
        memory_args = argparse.Namespace(**{**vars(args), "runs": 1})
        rows += [timed_case("memory cold", synthetic, memory_args, cold=True),
                 timed_case("memory warm", synthetic, memory_args, cold=False)]
    return rows


def measure_once(data_yaml: Path, workers: int | None) -> dict:
    """One audit in this process (the caller chose the cache state): seconds and peak memory."""
    # weights.py imports scikit-learn lazily, and its compute_class_weight imports sklearn.preprocessing on
    # first use: imports, not audit work (the cli case includes them).
    import sklearn.preprocessing  # noqa: F401
    import sklearn.utils.class_weight  # noqa: F401

    import dataset_doctor.audit.runner  # noqa: F401  (SciPy: a cache hit never loads it, the cli case shows that)
    from dataset_doctor.audit.result_cache import audit_with_cache
    from dataset_doctor.dataset.index import build_index

    started = time.perf_counter()
    index = build_index(data_yaml, workers=workers, progress=False)
    indexed = time.perf_counter()
    result = audit_with_cache(index)  # as doctor audit: warm, the checks' results come from the cache too
    finished = time.perf_counter()
    return {"seconds": finished - started, "index_seconds": indexed - started, "audit_seconds": finished - indexed,
            "images": len(index.images), "boxes": len(index.boxes), "files_read": index.files_read,
            "findings": len(result.findings), "peak_rss_mib": _peak_rss_mib()}


def _peak_rss_mib() -> float:
    """This process's own peak resident memory. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a
    child started by a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def replica_yaml(args: argparse.Namespace, work: Path) -> Path:
    return work / f"replica-{args.images}{'-jpeg' if args.jpeg_only else ''}" / "data.yaml"


def ours_cache_and_env(data_yaml: Path) -> tuple[Path, dict]:
    """The cache folder our runs on this dataset use (beside it), and their environment."""
    cache = data_yaml.parent.parent / f"cache-{data_yaml.parent.name}"
    return cache, {**os.environ, "DOCTOR_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}


def peer_script_and_env(scratch: str) -> tuple[Path, dict]:
    """The Ultralytics scan program written into `scratch`, and an environment that keeps its settings there
    and does not put this project on its path."""
    script = Path(scratch) / "ultralytics_scan.py"
    script.write_text(_ULTRALYTICS_SCAN)
    env = {**os.environ, "YOLO_CONFIG_DIR": scratch, "YOLO_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    return script, env


def timed_case(name: str, data_yaml: Path, args: argparse.Namespace, cold: bool) -> dict:
    cache, env = ours_cache_and_env(data_yaml)
    command = [sys.executable, str(Path(__file__)), "--measure", "cold" if cold else "warm", "--data", str(data_yaml)]
    if args.workers:
        command += ["--workers", str(args.workers)]
    if not cold:
        shutil.rmtree(cache, ignore_errors=True)
        subprocess.run(command, env=env, check=True, capture_output=True)  # fill the cache
    results = []
    for _ in range(args.runs):
        if cold:
            shutil.rmtree(cache, ignore_errors=True)
        output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    first = results[0]
    seconds = statistics.median(r["seconds"] for r in results)
    expected_reads = first["images"] if cold else 0
    return {"case": name, "images": first["images"], "boxes": first["boxes"], "runs": len(results),
            "seconds": seconds, "rate": first["images"] / seconds,
            "split": f"index {statistics.median(r['index_seconds'] for r in results):.3f} s + audit "
                     f"{statistics.median(r['audit_seconds'] for r in results):.3f} s",
            "rss": max(r["peak_rss_mib"] for r in results),
            "note": "" if all(r["files_read"] >= expected_reads if cold else r["files_read"] == 0 for r in results)
            else "cache state not as intended"}


def cli_case(data_yaml: Path, args: argparse.Namespace) -> dict:
    _, env = ours_cache_and_env(data_yaml)
    with tempfile.TemporaryDirectory() as scratch:
        # --no-html: this case times the audit and its JSON; the HTML report has its own benchmark
        # (bench_audit_report.py), and would otherwise land in doctor_reports/ of the working directory.
        command = [sys.executable, "-m", "dataset_doctor", "audit", str(data_yaml), "--json", f"{scratch}/audit.json",
                   "--no-html"]
        subprocess.run(command, env=env, capture_output=True)  # warm the cache
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(command, env=env, capture_output=True)
            times.append(time.perf_counter() - started)
        splits = json.loads(Path(f"{scratch}/audit.json").read_text())["splits"]
        images = sum(entry["images"] for entry in splits.values())
    seconds = statistics.median(times)
    return {"case": "cli warm", "images": images, "boxes": "", "runs": len(times), "seconds": seconds,
            "rate": images / seconds, "split": "end to end: interpreter, imports, Rich output, JSON", "rss": None,
            "note": ""}


def ultralytics_cases(data_yaml: Path, args: argparse.Namespace) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        script, env = peer_script_and_env(scratch)
        images = sum(1 for _ in (data_yaml.parent / "images").rglob("*") if _.is_file())
        for mode in ("cold", "warm"):
            if mode == "warm":
                subprocess.run([str(args.ultralytics_python), str(script), str(data_yaml), "warm"], env=env,
                               capture_output=True)
            results = []
            for _ in range(args.runs):
                completed = subprocess.run([str(args.ultralytics_python), str(script), str(data_yaml), mode],
                                           env=env, capture_output=True, text=True)
                if completed.returncode:
                    return [{"case": "ultralytics", "images": "", "boxes": "", "runs": 0, "seconds": float("nan"),
                             "rate": float("nan"), "split": "", "rss": None,
                             "note": f"failed: {completed.stderr.strip().splitlines()[-1:]}"}]
                results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
            seconds = statistics.median(r["seconds"] for r in results)
            rows.append({"case": f"ultralytics {mode}", "images": images, "boxes": "", "runs": len(results),
                         "seconds": seconds, "rate": images / seconds, "split": "YOLODataset label scan",
                         "rss": None,
                         "note": f"kept {results[0]['images_kept']}: an image with a bad line is dropped whole"
                         if results[0]["images_kept"] < images else ""})
    return rows


def warm_pairs(args: argparse.Namespace, work: Path) -> list[tuple[float, float]]:
    """(ours, peer) warm seconds, run in turn in fresh processes: a machine that drifts by more than the gap
    between two tools (this one did: the peer's warm scan went from 0.49 to 0.34 s within half an hour) then
    moves both numbers of a pair alike."""
    replica = replica_yaml(args, work)
    if not replica.exists():
        raise SystemExit(f"{replica} not found: run the benchmark once without --warm-pairs to build it")
    _, env = ours_cache_and_env(replica)
    ours = [sys.executable, str(Path(__file__)), "--measure", "warm", "--data", str(replica)]
    with tempfile.TemporaryDirectory() as scratch:
        script, peer_env = peer_script_and_env(scratch)
        peer = [str(args.ultralytics_python), str(script), str(replica), "warm"]
        subprocess.run(ours, env=env, check=True, capture_output=True)  # both caches filled
        subprocess.run(peer, env=peer_env, check=True, capture_output=True)
        pairs = []
        for _ in range(args.warm_pairs):
            mine = json.loads(subprocess.run(ours, env=env, check=True, capture_output=True,
                                             text=True).stdout.strip().splitlines()[-1])
            theirs = json.loads(subprocess.run(peer, env=peer_env, check=True, capture_output=True,
                                               text=True).stdout.strip().splitlines()[-1])
            if mine["files_read"]:
                raise SystemExit("the warm run read files: the cache was not valid")
            pairs.append((mine["seconds"], theirs["seconds"]))
    return pairs


def print_pairs(pairs: list[tuple[float, float]]) -> None:
    ours, peer = [p[0] for p in pairs], [p[1] for p in pairs]
    ratios = sorted(theirs / mine for mine, theirs in pairs)
    print(f"\nwarm audit vs warm Ultralytics scan, {len(pairs)} alternating pairs of fresh processes\n")
    print("| ours median s (range) | Ultralytics median s (range) | ratio of medians | per-pair ratio median (range) |")
    print("|---:|---:|---:|---:|")
    print(f"| {statistics.median(ours):.3f} ({min(ours):.3f}-{max(ours):.3f}) | {statistics.median(peer):.3f} "
          f"({min(peer):.3f}-{max(peer):.3f}) | {statistics.median(peer) / statistics.median(ours):.2f}x | "
          f"{statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}) |")


def describe_dataset(data_yaml: Path) -> str:
    files = [path for path in (data_yaml.parent / "images").rglob("*") if path.is_file()]
    by_format: dict[str, list[int]] = {}
    for path in files:
        by_format.setdefault(path.suffix.lower().lstrip("."), []).append(path.stat().st_size)
    return ", ".join(f"{len(sizes)} {kind} (mean {statistics.mean(sizes) / 1024:.0f} KiB)"
                     for kind, sizes in sorted(by_format.items()))


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    import cv2
    import numpy as np
    import pandas as pd

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"\n`doctor audit` benchmark: {cores} cores, Python {sys.version.split()[0]}, NumPy {np.__version__}, "
          f"pandas {pd.__version__}, OpenCV {cv2.__version__}; median of {args.runs} runs\n")
    print("| case | images | boxes | runs | median s | images/s | where the time goes | peak RSS MiB | note |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---|")
    for row in rows:
        rss = "" if row["rss"] is None else f"{row['rss']:.0f}"
        print(f"| {row['case']} | {row['images']} | {row['boxes']} | {row['runs']} | {row['seconds']:.3f} | "
              f"{row['rate']:,.0f} | {row['split']} | {rss} | {row['note']} |")
    print("\nPeak RSS is the auditing process's own (VmHWM); scan workers are forked copies sharing its pages.")


if __name__ == "__main__":
    main()
