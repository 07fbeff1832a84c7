"""Training throughput of `doctor train` against Ultralytics YOLOv8n, side by side, per phase (issue 22).

    python -m bench.bench_speed --ultralytics-python /tmp/ultra/bin/python                 # sample, 320 and 640
    python -m bench.bench_speed --data aquarium/data.yaml --imgsz 640 --ultralytics-python ...   # real data

For every image size and phase (mosaic on for every epoch, or off), each tool trains `--repeats` short runs in
fresh processes, alternating ours / theirs so that any drift in the machine touches both; scale n from its yaml,
batch 16, CPU, both cores, `--epochs` epochs on the first `--train-images` train images (a .txt list, so nothing
is copied), no evaluation but the one at the end. The measured epochs are the middle ones: the first holds
worker start-up and one-off kernel selection, the last the final evaluation. An epoch's length is the
difference of the cumulative `time` column of results.csv, which both tools write the same way (wall time,
checkpoint saving included), so images/s = train images / epoch seconds for both. Reports the median over
runs x middle epochs per tool and the ratio of medians; prints a markdown table, writes nothing else but its
work folder.

Threads: both tools use all cores (Ultralytics' select_device() sets min(8, cores - 1) torch threads on CPU,
one on 2 cores, whatever the caller set; its constant is patched to the core count so the comparison is at
equal cores). Each tool runs with its own OpenMP defaults: both leave libgomp's spinning threads, and
ours gives up threads while other programs use the cores (trainer/core_sharing.py; alone it changes nothing);
`--omp-policy` forces one OMP_WAIT_POLICY on both (which also turns our adapting off). Ultralytics is
AGPL-3.0: it runs as a separate program in its own environment (bench_train.py says how to make one), nothing
of it is imported here.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent

_ULTRALYTICS_SCRIPT = textwrap.dedent("""
    import sys
    import ultralytics.utils.torch_utils as torch_utils
    from ultralytics import YOLO
    data, epochs, imgsz, batch, project, name, threads, mosaic = sys.argv[1:9]
    torch_utils.NUM_THREADS = int(threads)  # select_device() would use cores - 1
    model = YOLO("yolov8n.yaml")
    model.train(data=data, epochs=int(epochs), imgsz=int(imgsz), batch=int(batch), device="cpu", workers=2,
                project=project, name=name, exist_ok=True, seed=0, plots=False, val=False, amp=False,
                verbose=False, mosaic=float(mosaic), close_mosaic=0)
""")


def subset_yaml(data: Path, train_images: int, work: Path) -> Path:
    """A data.yaml over the first `train_images` train images and the first 20 val images (lists of paths),
    read with the project's own data.yaml resolver (so `../train/images` and .txt splits work as in training)."""
    from dataset_doctor.dataset.datayaml import list_split_images, load_data_yaml

    config = load_data_yaml(data)
    lists = {}
    for split, count in (("train", train_images), ("val", 20)):
        images = list_split_images(config, split)
        if len(images) < count and split == "train":
            raise SystemExit(f"{data}: {len(images)} train images, fewer than --train-images {count}")
        listing = work / f"{split}.txt"
        listing.write_text("".join(f"{path.resolve()}\n" for path in images[:count]))
        lists[split] = str(listing)
    subset = work / "subset.yaml"
    subset.write_text(yaml.safe_dump({"path": str(work), "train": lists["train"], "val": lists["val"],
                                      "nc": config.nc, "names": list(config.names)}))
    return subset


def images_per_size(option: str) -> dict[int, int]:
    """--train-images as {imgsz: count}: "320:200,640:100", or one count ("150") for every size (key 0)."""
    if ":" not in option:
        return {0: int(option)}
    return {int(size): int(count) for size, count in (item.split(":") for item in option.split(","))}


def epoch_seconds(results_csv: Path) -> list[float]:
    """Lengths of the middle epochs from a cumulative time column (ours: time_s; Ultralytics: time)."""
    rows = list(csv.DictReader(line.replace(" ", "") for line in results_csv.read_text().splitlines()))
    column = "time_s" if "time_s" in rows[0] else "time"
    ends = [float(row[column]) for row in rows]
    lengths = [end - start for start, end in zip([0.0, *ends], ends)]
    return lengths[1:-1]


def _run(command: list[str], env: dict) -> None:
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")


def train_ours(data: Path, work: Path, name: str, imgsz: int, mosaic: bool, args: argparse.Namespace,
               env: dict) -> list[float]:
    _run([str(args.ours_python), "-m", "dataset_doctor", "train", str(data), "--model", "n",
          "--epochs", str(args.epochs), "--imgsz", str(imgsz), "--batch", "16", "--device", "cpu",
          "--eval-every", str(args.epochs),
          "--mosaic", "1" if mosaic else "0", "--close-mosaic", "0", "--no-live-report", "--no-tensorboard",
          "--copy-paste", "0",  # Ultralytics pastes only segmentation polygons: like for like, neither pastes
          "--project", str(work), "--name", name, "--exist-ok"], env)
    return epoch_seconds(work / name / "results.csv")


def train_ultralytics(data: Path, work: Path, name: str, imgsz: int, mosaic: bool, args: argparse.Namespace,
                      env: dict) -> list[float]:
    script = work / "ultralytics_train.py"
    script.write_text(_ULTRALYTICS_SCRIPT)
    _run([str(args.ultralytics_python), str(script), str(data), str(args.epochs), str(imgsz), "16", str(work), name,
          str(len(os.sched_getaffinity(0))), "1.0" if mosaic else "0.0"], {**env, "YOLO_OFFLINE": "1"})
    return epoch_seconds(work / name / "results.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="data.yaml (default: the sample dataset, generated)")
    parser.add_argument("--imgsz", default="320,640", help="comma-separated image sizes")
    parser.add_argument("--phases", default="mosaic,no-mosaic")
    parser.add_argument("--train-images", default="320:200,640:100",
                        help="train images per size (SIZE:COUNT,...), or one count for all")
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first and last are not measured")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ultralytics-python", type=Path, required=True)
    parser.add_argument("--ours-python", type=Path, default=Path(sys.executable),
                        help="interpreter for doctor train (e.g. the peer's, to compare at the same torch version)")
    parser.add_argument("--omp-policy", help="OMP_WAIT_POLICY for both tools (default: each tool's own)")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    if args.epochs < 3:
        raise SystemExit("--epochs must be at least 3 (the first and last epochs are not measured)")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OMP_WAIT_POLICY", None)
    if args.omp_policy:
        env["OMP_WAIT_POLICY"] = args.omp_policy
    data = args.data
    if data is None:
        data = work / "sample" / "data.yaml"
        if not data.exists():
            _run([sys.executable, "-m", "dataset_doctor", "sample", str(data.parent)], env)
    counts = images_per_size(args.train_images)
    rows = []
    for imgsz in [int(size) for size in args.imgsz.split(",")]:
        count = counts.get(imgsz, counts.get(0, 200))
        folder = work / f"{imgsz}"
        folder.mkdir(exist_ok=True)
        subset = subset_yaml(data, count, folder)
        for phase in args.phases.split(","):
            mosaic = phase == "mosaic"
            speeds: dict[str, list[float]] = {"ours": [], "ultralytics": []}
            for repeat in range(args.repeats):
                for tool, train in (("ours", train_ours), ("ultralytics", train_ultralytics)):
                    seconds = train(subset, folder, f"{tool}-{phase}-{repeat}", imgsz, mosaic, args, env)
                    speeds[tool] += [count / s for s in seconds]
                    print(f"{imgsz} {phase} {tool} run {repeat}: " + ", ".join(f"{count / s:.2f}" for s in seconds)
                          + " images/s", flush=True)
            ours, theirs = statistics.median(speeds["ours"]), statistics.median(speeds["ultralytics"])
            rows.append((imgsz, phase, count, ours, theirs, speeds))
    print(f"\n{data}, scale n, batch 16, CPU {len(os.sched_getaffinity(0))} cores, {args.repeats} runs x "
          f"{args.epochs - 2} measured epochs per tool, OMP_WAIT_POLICY {args.omp_policy or 'each tool default'}\n")
    print("| imgsz | phase | train images | ours images/s (median) | Ultralytics images/s (median) | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for imgsz, phase, count, ours, theirs, speeds in rows:
        spread = (f" ({min(speeds['ours']):.1f}-{max(speeds['ours']):.1f})",
                  f" ({min(speeds['ultralytics']):.1f}-{max(speeds['ultralytics']):.1f})")
        print(f"| {imgsz} | {phase} | {count} | {ours:.2f}{spread[0]} | {theirs:.2f}{spread[1]} | "
              f"{ours / theirs:.2f}x |")


if __name__ == "__main__":
    main()
