"""Training ablation of the imbalance levers (issue 20): which one helps a model, by how much, over seeds.

    PYTHONPATH=. nice -n 10 python bench/bench_imbalance.py --work /tmp/imbalance      # hours on 2 CPU cores
    PYTHONPATH=. python bench/bench_imbalance.py --epochs 1 --seeds 0 --datasets sample --imgsz 64   # a smoke run

Configurations, each trained from scratch (scale n) with the same epochs, imgsz and batch:
    (a) nothing            --class-weights none
    (b) class weights      --class-weights auto
    (c) image rebalance    doctor rebalance --method images --target T, then (b)
    (d) paste rebalance    doctor rebalance --method paste --target T, then (b)
    (e) online copy-paste  --copy-paste P with (b)
    (f) balanced sampler   --sampler balanced --class-weights none
on the sample dataset (800 / 200, seed 0) and on aquarium (real, 7 classes, 6-749 train instances), three
seeds each. Each run's best.pt is scored by `doctor val --split val --json` on the dataset's own val split
(never a rebalanced one): val mAP50-95 and the mean val AP50 of the rarest third of classes (by train
instances of the source). The table reports mean and spread (sample standard deviation) over the seeds.

Every run is a separate `doctor` process; finished runs are kept under --work and reused when the script is
started again, so an interrupted ablation resumes where it stopped. Prints a markdown table and writes it to
--table (default WORK/imbalance.md) for bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONFIGS = {
    "a": ("nothing", [], "none", None),
    "b": ("class weights", [], "auto", None),
    "c": ("image rebalance + weights", [], "auto", "images"),
    "d": ("paste rebalance + weights", [], "auto", "paste"),
    "e": ("--copy-paste online + weights", ["--copy-paste", "{copy_paste}"], "auto", None),
    "f": ("balanced sampler", ["--sampler", "balanced"], "none", None),
}


def doctor(*arguments: str) -> None:
    command = [sys.executable, "-m", "dataset_doctor", *arguments]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    if completed.returncode not in (0, 1):
        raise SystemExit(f"failed: {' '.join(command)}\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")


def rarest_third(data_yaml: Path) -> list[str]:
    """Names of the rarest third (at least one) of the classes with train instances, by source counts."""
    from dataset_doctor.dataset.index import build_index

    index = build_index(data_yaml, progress=False)
    instances = np.asarray(index.instances("train"))
    present = np.flatnonzero(instances > 0)
    order = present[np.argsort(instances[present], kind="stable")]
    return [index.names[int(k)] for k in order[:max(1, len(order) // 3)]]


def rebalanced(work: Path, data_yaml: Path, method: str, target: int, max_copies: int) -> Path:
    out = work / f"{data_yaml.parent.name}-{method}-{target}"
    if not (out / "data.yaml").is_file():
        doctor("rebalance", str(data_yaml), "--target", str(target), "--out", str(out), "--method", method,
               "--max-copies", str(max_copies))
    return out / "data.yaml"


def run_one(work: Path, name: str, data_yaml: Path, key: str, seed: int, args: argparse.Namespace,
            target: int) -> dict:
    """Train one configuration with one seed (or reuse its finished run) and score it on the source's val."""
    _, extra, weights, method = CONFIGS[key]
    run_name = f"{name}-{key}-s{seed}"
    scores = work / "scores" / f"{run_name}.json"
    if scores.is_file():
        return json.loads(scores.read_text())
    train_yaml = rebalanced(work, data_yaml, method, target, args.max_copies) if method else data_yaml
    run = work / "runs" / run_name
    if not (run / "weights" / "best.pt").is_file():
        doctor("train", str(train_yaml), "--model", "n", "--epochs", str(args.epochs), "--imgsz", str(args.imgsz),
               "--batch", str(args.batch), "--seed", str(seed), "--class-weights", weights,
               "--project", str(work / "runs"), "--name", run_name, "--exist-ok", "--device", "cpu",
               "--eval-every", str(args.epochs), "--patience", "0",
               *[part.format(copy_paste=args.copy_paste) for part in extra])
    scores.parent.mkdir(parents=True, exist_ok=True)
    doctor("val", str(run / "weights" / "best.pt"), str(data_yaml), "--split", "val", "--json", str(scores))
    return json.loads(scores.read_text())


def spread(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values.mean():.3f}"


def rare_ap50(run: dict, names: list[str]) -> float:
    """Mean val AP50 over these classes (a class without val instances is left out, as in the means)."""
    values = [entry["ap50"] for entry in run["per_class"]
              if entry["class"] in names and entry["ap50"] is not None and np.isfinite(entry["ap50"])]
    return float(np.mean(values)) if values else float("nan")


def table(results: dict[tuple[str, str], list[dict]], rare: dict[str, list[str]], seeds: list[int]) -> str:
    lines = [f"| dataset | configuration | val mAP50-95 (mean ± sd, {len(seeds)} seeds) | rarest-third val AP50 |",
             "|---|---|---:|---:|"]
    for (name, key), runs in results.items():
        maps = np.array([run["map50_95"] for run in runs])
        rare_ap = np.array([rare_ap50(run, rare[name]) for run in runs])
        lines.append(f"| {name} | ({key}) {CONFIGS[key][0]} | {spread(maps)} | {spread(rare_ap)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="runs, rebalanced copies and scores (kept)")
    parser.add_argument("--datasets", nargs="+", default=["sample", "aquarium"])
    parser.add_argument("--aquarium", type=Path, default=Path("/work/shared/datasets/aquarium/data.yaml"))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--copy-paste", type=float, default=0.5, help="(e): probability per image")
    parser.add_argument("--sample-target", type=int, default=300)
    parser.add_argument("--aquarium-target", type=int, default=200)
    parser.add_argument("--max-copies", type=int, default=30)
    parser.add_argument("--table", type=Path, help="markdown output (default WORK/imbalance.md)")
    args = parser.parse_args()

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    datasets: dict[str, tuple[Path, int]] = {}
    if "sample" in args.datasets:
        sample = work / "sample" / "data.yaml"
        if not sample.is_file():
            doctor("sample", str(sample.parent), "--seed", "0")
        datasets["sample"] = (sample, args.sample_target)
    if "aquarium" in args.datasets:
        datasets["aquarium"] = (args.aquarium, args.aquarium_target)
    rare = {name: rarest_third(path) for name, (path, _) in datasets.items()}
    results: dict[tuple[str, str], list[dict]] = {}
    for name, (data_yaml, target) in datasets.items():
        for key in args.configs:
            for seed in args.seeds:
                results.setdefault((name, key), []).append(run_one(work, name, data_yaml, key, seed, args, target))
                print(f"done: {name} ({key}) seed {seed}", file=sys.stderr, flush=True)
    text = table(results, rare, args.seeds)
    (args.table or work / "imbalance.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
