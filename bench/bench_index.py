"""Benchmark: building the dataset index for a 10k+ image dataset, cold (no cache) and warm (valid cache).

Each measurement runs in a fresh process (so peak memory is per run and no import or page-cache state from
one mode leaks into the other's timing beyond what a real second run would have). Prints a markdown table.

    python bench/bench_index.py --out /tmp/bench-data                   # sample replicated to 10k+ images
    python bench/bench_index.py --out /tmp/bench-aq --source ../shared/datasets/aquarium/data.yaml
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def one_run(data_yaml: str, workers: int | None) -> dict:
    """Runs in the child process: time build_index once and report."""
    from dataset_doctor.dataset.index import build_index

    started = time.perf_counter()
    index = build_index(data_yaml, workers=workers, progress=False)
    seconds = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"seconds": seconds, "images": len(index.images), "boxes": len(index.boxes),
            "files_read": index.files_read, "peak_rss_mb": max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                                                               children) / 1024}


def measure(data_yaml: Path, mode: str, repeats: int, workers: int | None, cache_dir: Path) -> list[dict]:
    results = []
    env = {**os.environ, "DOCTOR_CACHE_DIR": str(cache_dir)}
    for _ in range(repeats):
        if mode == "cold":
            shutil.rmtree(cache_dir, ignore_errors=True)
        command = [sys.executable, __file__, "--child", str(data_yaml)]
        command += ["--workers", str(workers)] if workers else []
        output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "doctor-bench-index")
    parser.add_argument("--source", default="sample")
    parser.add_argument("--train-images", type=int, default=10_000, help="at least this many images in all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(one_run(arguments.child, arguments.workers)))
        return

    # Generated in its own process: Linux carries a process's peak RSS across exec into its children, so the
    # generation's memory would otherwise show up as the index's.
    data_yaml = arguments.out / "data.yaml"
    if not data_yaml.exists():
        generate = ("import sys; from pathlib import Path; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/bench']\n"
                    "from audit_datasets import replicate_dataset\n"
                    "from dataset_doctor.sample.generate import write_sample_dataset\n"
                    "out, source, images = Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])\n"
                    "if source == 'sample':\n"
                    "    source = write_sample_dataset(out.parent / (out.name + '-source'), seed=0)\n"
                    "replicate_dataset(Path(source), out, images)\n")
        subprocess.run([sys.executable, "-c", generate, str(Path(__file__).resolve().parent.parent), str(arguments.out),
                        arguments.source, str(arguments.train_images)], check=True)
    cache_dir = arguments.out.parent / f"{arguments.out.name}-cache"
    # One untimed run first warms the OS page cache: we time our own work, not the disk.
    measure(data_yaml, "cold", 1, arguments.workers, cache_dir)
    rows = []
    for mode in ("cold", "warm"):
        runs = measure(data_yaml, mode, arguments.repeats, arguments.workers, cache_dir)
        seconds = statistics.median(r["seconds"] for r in runs)
        rows.append((mode, runs[0]["images"], runs[0]["boxes"], seconds, runs[0]["images"] / seconds,
                     max(r["peak_rss_mb"] for r in runs), runs[-1]["files_read"]))
    print(f"dataset: {data_yaml} ({os.cpu_count()} cores, {arguments.repeats} runs each, median)\n")
    print("| mode | images | boxes | seconds | images/s | peak RSS MB | files read |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode, images, boxes, seconds, rate, rss, read in rows:
        print(f"| {mode} | {images} | {boxes} | {seconds:.2f} | {rate:,.0f} | {rss:.0f} | {read} |")


if __name__ == "__main__":
    main()
