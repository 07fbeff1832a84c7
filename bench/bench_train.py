"""Benchmark `doctor train` on CPU: throughput, val mAP, and rare-class AP with class weights on and off;
Ultralytics YOLOv8n trained from its yaml with the same settings side by side when a peer environment exists.

    python bench/bench_train.py                                   # sample dataset, n, imgsz 320, 30 epochs
    python bench/bench_train.py --epochs 2 --runs ours-weighted   # a quick check
    python bench/bench_train.py --ultralytics-python /tmp/ultra/bin/python

Every configuration trains in a fresh process, evaluates only at the end (so images/s is training alone, for
both tools), and is then measured by one evaluator: its best.pt predicts val at conf 0.001 (ours through
`doctor predict`, Ultralytics' through its own predict) and `doctor evaluate` scores both (COCO protocol).
Threads: both tools use all cores (Ultralytics' select_device() sets min(8, cores - 1) torch threads on CPU,
one on 2 cores, whatever the caller set; its constant is patched to the core count so the comparison is at
equal cores). Prints markdown tables; writes nothing else.

Ultralytics is AGPL-3.0: it runs as a separate program in its own environment, nothing of it is imported here.
A peer environment that reuses this project's NumPy / OpenCV but has its own torch (PyPI's torchvision does
not load beside the 2.13.0 CPU wheel; 2.14.1 + torchvision 0.29.1 lie on local disk here, run on the CPU):
    python -m venv /tmp/ultra && echo "$PWD/.venv/lib/python3.11/site-packages" \\
        > /tmp/ultra/lib/python3.11/site-packages/project.pth
    /tmp/ultra/bin/pip install --no-deps ultralytics==8.4.190 ultralytics-thop
    /tmp/ultra/bin/pip install torch==2.14.1 torchvision==0.29.1 pillow psutil requests polars matplotlib
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = ("ours-weighted", "ours-unweighted", "ultralytics")

_ULTRALYTICS_SCRIPT = textwrap.dedent("""
    import sys
    import ultralytics.utils.torch_utils as torch_utils
    from ultralytics import YOLO
    data, epochs, imgsz, batch, project, threads = sys.argv[1:7]
    # select_device() resets torch to min(8, cores - 1) threads on CPU (one on 2 cores): patch its constant.
    torch_utils.NUM_THREADS = int(threads)
    model = YOLO("yolov8n.yaml")
    model.train(data=data, epochs=int(epochs), imgsz=int(imgsz), batch=int(batch), device="cpu", workers=2,
                project=project, name="ultralytics", exist_ok=True, seed=0, plots=False, val=False, amp=False,
                verbose=False)
""")


def measured(command: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    """Run a command in a small wrapper process: its output and the peak RSS (MB) of everything it ran."""
    wrapper = ("import resource, subprocess, sys; completed = subprocess.run(sys.argv[1:]); "
               "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
               "sys.exit(completed.returncode)")
    completed = subprocess.run([sys.executable, "-c", wrapper, *command], env=env, capture_output=True, text=True)
    peak = next((int(line.split()[1]) for line in completed.stderr.splitlines() if line.startswith("PEAK_RSS_KB")), 0)
    if completed.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    return completed, peak / 1024


def doctor(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "dataset_doctor", *arguments]


def evaluation(data: Path, predictions: Path, out: Path) -> dict:
    subprocess.run(doctor("evaluate", str(data), "--predictions", str(predictions), "--json", str(out)),
                   check=True, capture_output=True, env=_env())
    return json.loads(out.read_text())


def train_ours(name: str, data: Path, work: Path, args: argparse.Namespace) -> dict:
    weights = "auto" if name == "ours-weighted" else "none"
    command = doctor("train", str(data), "--model", "n", "--epochs", str(args.epochs), "--imgsz", str(args.imgsz),
                     "--batch", str(args.batch), "--device", "cpu", "--class-weights", weights, "--copy-paste", "0",
                     "--eval-every", str(args.epochs), "--project", str(work), "--name", name, "--exist-ok")
    _, peak = measured(command, _env())
    run = work / name
    rows = [line.split(",") for line in (run / "results.csv").read_text().splitlines()]
    header, body = rows[0], rows[1:]
    speeds = sorted(float(row[header.index("images_per_s")]) for row in body)
    predictions = work / f"{name}-predictions"
    subprocess.run(doctor("predict", str(run / "weights/best.pt"), str(data), "--out", str(predictions), "--conf",
                          "0.001", "--imgsz", str(args.imgsz)), check=True, capture_output=True, env=_env())
    return {"run": name, "images_per_s": speeds[len(speeds) // 2], "peak_rss_mb": peak,
            **evaluation(data, predictions / "labels", work / f"{name}.json")}


def train_ultralytics(data: Path, work: Path, args: argparse.Namespace) -> dict:
    script = work / "ultralytics_train.py"
    script.write_text(_ULTRALYTICS_SCRIPT)
    threads = str(len(os.sched_getaffinity(0)))
    _, peak = measured([str(args.ultralytics_python), str(script), str(data), str(args.epochs),
                                str(args.imgsz), str(args.batch), str(work), threads],
                               {**os.environ, "YOLO_OFFLINE": "1"})
    train_images = sum(1 for _ in (data.parent / "images/train").iterdir())
    # Ultralytics' best.pt goes through our evaluator too: predictions written by a second small script.
    predictions = work / "ultralytics-predictions"
    predict_script = work / "ultralytics_predict.py"
    predict_script.write_text(textwrap.dedent(f"""
        from ultralytics import YOLO
        model = YOLO("{work / 'ultralytics/weights/best.pt'}")
        for result in model.predict("{data.parent / 'images/val'}", imgsz={args.imgsz}, conf=0.001, iou=0.7,
                                    device="cpu", stream=True, verbose=False, max_det=300):
            result.save_txt("{predictions}/" + __import__("pathlib").Path(result.path).stem + ".txt", save_conf=True)
    """))
    predictions.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(args.ultralytics_python), str(predict_script)], check=True, capture_output=True,
                   env={**os.environ, "YOLO_OFFLINE": "1"})
    for image in (data.parent / "images/val").iterdir():  # save_txt writes nothing for images without boxes
        (predictions / f"{image.stem}.txt").touch()
    return {"run": "ultralytics", "images_per_s": train_images / _median_epoch_seconds(work / "ultralytics"),
            "peak_rss_mb": peak,
            **evaluation(data, predictions, work / "ultralytics.json")}


def _median_epoch_seconds(run: Path) -> float:
    """Median epoch length from Ultralytics' results.csv (its `time` column is cumulative), measured like ours:
    per epoch. The last epoch is left out when there are others: it also runs Ultralytics' final validation."""
    rows = [line.split(",") for line in (run / "results.csv").read_text().splitlines()]
    ends = [float(row[rows[0].index("time")]) for row in rows[1:]]
    lengths = [end - start for start, end in zip([0.0, *ends], ends)]
    lengths = sorted(lengths[:-1] or lengths)
    return lengths[len(lengths) // 2]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="data.yaml (default: the sample dataset, generated)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--runs", default="ours-weighted,ours-unweighted,ultralytics")
    parser.add_argument("--ultralytics-python", type=Path, help="interpreter of an environment with ultralytics")
    parser.add_argument("--work", type=Path, default=None, help="where runs go (default: a temporary directory)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        data = work / "sample" / "data.yaml"
        if not data.exists():
            subprocess.run(doctor("sample", str(data.parent)), check=True, capture_output=True, env=_env())
    results = []
    for name in args.runs.split(","):
        if name == "ultralytics":
            if args.ultralytics_python is None:
                print("ultralytics: skipped (no --ultralytics-python)")
                continue
            results.append(train_ultralytics(data, work, args))
        else:
            results.append(train_ours(name, data, work, args))

    print(f"\nsample dataset {data}, scale n, imgsz {args.imgsz}, batch {args.batch}, {args.epochs} epochs, CPU "
          f"{len(os.sched_getaffinity(0))} cores; all mAP by `doctor evaluate` on val\n")
    print("| run | train images/s | peak RSS MB | val mAP50 | val mAP50-95 |")
    print("|---|---:|---:|---:|---:|")
    for row in results:
        print(f"| {row['run']} | {row['images_per_s']:.1f} | {row['peak_rss_mb']:.0f} | {row['map50']:.3f} | "
              f"{row['map50_95']:.3f} |")
    if results:
        classes = [entry["class"] for entry in results[0]["per_class"]]
        print("\nval AP50 per class (train instances in the sample fall from 'zero' to 'nine'):\n")
        print("| class | " + " | ".join(row["run"] for row in results) + " |")
        print("|---|" + "---:|" * len(results))
        for position, name in enumerate(classes):
            cells = " | ".join(_ap(row["per_class"][position]["ap50"]) for row in results)
            print(f"| {name} | {cells} |")


def _ap(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
