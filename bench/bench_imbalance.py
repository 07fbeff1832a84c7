"""Training ablation of the imbalance levers (issue 20): which one helps a model, by how much, over seeds.

    PYTHONPATH=. nice -n 10 python bench/bench_imbalance.py --work /tmp/imbalance      # hours on 2 CPU cores
    PYTHONPATH=. nice -n 10 python bench/bench_imbalance.py --work /tmp/imbalance-quick --quick   # smoke run

Configurations, each trained from scratch (scale n) with the same epochs (but (g)), imgsz and batch:
    (a) nothing            --class-weights none
    (b) class weights      --class-weights auto
    (c) image rebalance    doctor rebalance --method images --target T, then (b)
    (d) paste rebalance    doctor rebalance --method paste --target T, then (b)
    (e) online copy-paste  --copy-paste P with (b); every other configuration trains with --copy-paste 0 (doctor
        train's default is 0.5 since this ablation)
    (f) balanced sampler   --sampler balanced --class-weights none
    (g) (b) for as many steps as (c): more epochs, by (c)'s train images / the source's (the control that
        separates what (c)'s copies add from what its extra steps add)
    (h) (c) for as many steps as (b): fewer epochs, by the source's train images / (c)'s, with warmup and
        close-mosaic epochs scaled alike (image copies at the others' compute; affordable where (c) is not)
on the sample dataset (800 / 200, seed 0) and on aquarium (real, 7 classes, 6-749 train instances), three
seeds each. Each run's best.pt is scored by `doctor val --split val --json` on the dataset's own val split
(never a rebalanced one): val mAP50-95 and the mean val AP50 of the rarest third of classes (by train
instances of the source). The table reports mean and spread (sample standard deviation) over the seeds.

Every run is a separate `doctor` process. Each (dataset, configuration, seed) result is stored under
WORK/scores as soon as it finishes (its name carries epochs, imgsz and batch, so runs with other settings are never
reused), and a rerun skips the stored ones: an interrupted ablation resumes where it stopped (a run killed mid-
training goes on from its last checkpoint). The markdown table is rewritten to --table (default WORK/imbalance.md)
after every finished run, so a partial ablation still leaves a table. At the start it prints the runs left and a
rough ETA (from the runs already timed in WORK, else from the CPU training rate measured in bench/README.md), and
after each run the ETA from the runs so far.

`--quick` is the smoke run that proves every lever runs end to end: 1 epoch, imgsz 64, batch 8, seed 0,
`--workers 0`, both datasets cut to their first 60 train / 30 val images (a copy under WORK), targets 60,
all seven configurations. Its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import cache
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
    "g": ("class weights, as many steps as (c)", [], "auto", None),
    "h": ("image rebalance + weights, as many steps as (b)",
          ["--warmup-epochs", "{warmup_epochs}", "--close-mosaic", "{close_mosaic}"], "auto", "images"),
}
# (c) trains on the source plus its image copies, so at the same epochs it takes more steps than the others: (g)
# is (b) trained for as many steps, which separates what the copies add from what the extra steps add.
STEPS_LIKE = {"g": "images"}
# (h) is (c) cut to the source's steps: on the sample 400 / 100 (c)'s copy holds 1,091 images (2.7x), so (c) and
# (g) at 30 epochs take about 3 h of both cores for three seeds; (h) costs what (b) costs and asks whether the
# copies help at equal compute.
STEPS_OF_SOURCE = {"h"}


CPU_RATE_320 = 7.5  # training images per second, scale n, imgsz 320, 2 cores (bench/README.md "Training")
RUN_OVERHEAD_S = 60.0  # per run before any is timed: start-up, validation, reports, `doctor val`
QUICK = {"epochs": 1, "imgsz": 64, "batch": 8, "seeds": [0], "images": (60, 30), "sample_target": 60,
         "aquarium_target": 60, "workers": 0}


def doctor(*arguments: str) -> None:
    """One `doctor` command in its own process; exit code 1 (findings/warnings) is not a failure."""
    command = [sys.executable, "-m", "dataset_doctor", *arguments]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    if completed.returncode not in (0, 1):
        raise SystemExit(f"failed: {' '.join(command)}\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")


def subset(data_yaml: Path, out: Path, train: int, val: int) -> Path:
    """The first `train` / `val` images of a dataset (with their labels) copied to OUT: a small one for --quick."""
    import shutil

    from dataset_doctor.dataset.index import build_index

    if (out / "data.yaml").is_file():
        return out / "data.yaml"
    index = build_index(data_yaml, progress=False)
    for split, count in (("train", train), ("val", val)):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for _, row in index.images_in(split).head(count).iterrows():
            shutil.copyfile(row["path"], out / "images" / split / Path(row["path"]).name)
            if row["label_exists"]:
                shutil.copyfile(row["label_path"], out / "labels" / split / Path(row["label_path"]).name)
    names = ", ".join(repr(name) for name in index.names)
    (out / "data.yaml").write_text(f"train: images/train\nval: images/val\nnames: [{names}]\n")
    return out / "data.yaml"


def run_name(name: str, key: str, seed: int, args: argparse.Namespace) -> str:
    """Settings in the name: a rerun with other epochs/imgsz/batch never reuses a run made with these."""
    return f"{name}-{key}-s{seed}-e{args.epochs}-i{args.imgsz}-b{args.batch}"


@cache
def train_images(data_yaml: Path, method: str | None, target: int, max_copies: int) -> int:
    """Train images a configuration trains on: the source's, plus the image copies the plan adds (cached: the
    epochs, the flags and the ETA each ask, and each answer indexes the dataset and solves the plan)."""
    from dataset_doctor.dataset.index import build_index
    from dataset_doctor.rebalance.plan import make_rebalance_plan
    from dataset_doctor.rebalance.sources import collect_train_sources

    sources = collect_train_sources(build_index(data_yaml, progress=False))
    added = make_rebalance_plan(sources.count_matrix(), target, max_copies).plan.added_images if method == "images" \
        else 0
    return len(sources.images) + int(added)


def step_ratio(key: str, data_yaml: Path, target: int, args: argparse.Namespace) -> float:
    """Epochs of this configuration / --epochs: 1, or the image ratio that gives it another run's steps."""
    source = train_images(data_yaml, None, target, args.max_copies)
    if key in STEPS_LIKE:
        return train_images(data_yaml, STEPS_LIKE[key], target, args.max_copies) / source
    if key in STEPS_OF_SOURCE:
        return source / train_images(data_yaml, CONFIGS[key][3], target, args.max_copies)
    return 1.0


def config_epochs(key: str, data_yaml: Path, target: int, args: argparse.Namespace) -> int:
    """--epochs, or for a STEPS_LIKE / STEPS_OF_SOURCE configuration the epochs that give it those steps."""
    if key not in STEPS_LIKE and key not in STEPS_OF_SOURCE:
        return args.epochs
    return max(1, round(args.epochs * step_ratio(key, data_yaml, target, args)))


def extra_arguments(key: str, data_yaml: Path, target: int, args: argparse.Namespace) -> list[str]:
    """The configuration's own `doctor train` flags, with its placeholders filled in."""
    from trainer.data.config import AugmentConfig
    from trainer.finetune import SCRATCH_WARMUP_EPOCHS

    ratio = step_ratio(key, data_yaml, target, args) if key in STEPS_OF_SOURCE else 1.0
    values = {"copy_paste": args.copy_paste, "warmup_epochs": f"{SCRATCH_WARMUP_EPOCHS * ratio:.3g}",
              "close_mosaic": max(1, round(AugmentConfig().close_mosaic * ratio))}  # doctor train's defaults, scaled
    own = [part.format(**values) for part in CONFIGS[key][1]]
    # doctor train pastes online by default (0.5, set from this ablation): every other lever is measured without
    return own if "--copy-paste" in own else ["--copy-paste", "0", *own]


def seconds_per_image_epoch(work: Path, imgsz: int) -> float:
    """From the runs timed in WORK at this imgsz, else the README's CPU rate scaled by pixels (a rough guess)."""
    timed = [json.loads(path.read_text()) for path in (work / "timing").glob(f"*-i{imgsz}-*.json")]
    if timed:
        return sum(t["seconds"] for t in timed) / sum(t["images"] * t["epochs"] for t in timed)
    return 1.0 / min(CPU_RATE_320 * (320 / imgsz) ** 2, 60.0)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def rarest_third(data_yaml: Path) -> list[str]:
    """Names of the rarest third (at least one) of the classes with train instances, by source counts."""
    from dataset_doctor.dataset.index import build_index

    index = build_index(data_yaml, progress=False)
    instances = np.asarray(index.instances("train"))
    present = np.flatnonzero(instances > 0)
    order = present[np.argsort(instances[present], kind="stable")]
    return [index.names[int(k)] for k in order[:max(1, len(order) // 3)]]


def rebalanced(work: Path, data_yaml: Path, method: str, target: int, max_copies: int) -> Path:
    out = work / f"{data_yaml.parent.name}-{method}-{target}-c{max_copies}"
    if not (out / "data.yaml").is_file():
        doctor("rebalance", str(data_yaml), "--target", str(target), "--out", str(out), "--method", method,
               "--max-copies", str(max_copies))
    return out / "data.yaml"


def run_state(run: Path, epochs: int) -> str:
    """"done" (every epoch in results.csv and a best checkpoint), "killed" (a last checkpoint short of that) or
    "new". A killed run's best.pt exists from its first epoch on, so best.pt alone does not mean finished."""
    from trainer.run_dir import RESULTS_FILE, read_results

    finished = len(read_results(run)) if (run / RESULTS_FILE).is_file() else 0
    if finished >= epochs and (run / "weights" / "best.pt").is_file():
        return "done"
    return "killed" if (run / "weights" / "last.pt").is_file() else "new"


def run_one(work: Path, name: str, data_yaml: Path, key: str, seed: int, args: argparse.Namespace,
            target: int) -> dict:
    """Train one configuration with one seed (or reuse its stored result) and score it on the source's val."""
    _, _, weights, method = CONFIGS[key]
    label = run_name(name, key, seed, args)
    scores = work / "scores" / f"{label}.json"
    if scores.is_file():
        return json.loads(scores.read_text())
    started = time.perf_counter()
    train_yaml = rebalanced(work, data_yaml, method, target, args.max_copies) if method else data_yaml
    run = work / "runs" / label
    epochs = config_epochs(key, data_yaml, target, args)
    state = run_state(run, epochs)
    if state == "killed":  # an interrupted ablation: go on from the run's last checkpoint, never score it half-trained
        doctor("train", "--resume", str(run))
    elif state == "new":
        doctor("train", str(train_yaml), "--model", "n", "--epochs", str(epochs), "--imgsz", str(args.imgsz),
               "--batch", str(args.batch), "--seed", str(seed), "--class-weights", weights,
               "--project", str(work / "runs"), "--name", label, "--exist-ok", "--device", "cpu",
               "--eval-every", str(epochs), "--patience", "0", "--no-live-report",
               *(["--workers", str(args.workers)] if args.workers is not None else []),
               *extra_arguments(key, data_yaml, target, args))
    partial = scores.with_suffix(".partial")  # renamed when complete: a killed `doctor val` leaves no score
    partial.parent.mkdir(parents=True, exist_ok=True)
    doctor("val", str(run / "weights" / "best.pt"), str(data_yaml), "--split", "val", "--imgsz", str(args.imgsz),
           "--json", str(partial), *(["--workers", str(args.workers)] if args.workers is not None else []))
    timing = work / "timing" / f"{label}.json"
    timing.parent.mkdir(parents=True, exist_ok=True)
    timing.write_text(json.dumps({"seconds": time.perf_counter() - started, "epochs": epochs,
                                  "images": train_images(train_yaml, None, target, args.max_copies)}) + "\n")
    partial.replace(scores)
    return json.loads(scores.read_text())


def spread(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values.mean():.3f}"


def rare_ap50(run: dict, names: list[str]) -> float:
    """Mean val AP50 over these classes (a class without val instances is left out, as in the means)."""
    values = [entry["ap50"] for entry in run["per_class"]
              if entry["class"] in names and entry["ap50"] is not None and np.isfinite(entry["ap50"])]
    return float(np.mean(values)) if values else float("nan")


def table(results: dict[tuple[str, str], list[dict]], rare: dict[str, list[str]], seeds: list[int]) -> str:
    """Mean ± sd over the seeds stored so far; the seeds column says how many (a partial ablation has fewer)."""
    lines = ["| dataset | configuration | seeds done | val mAP50-95 (mean ± sd) | rarest-third val AP50 |",
             "|---|---|---:|---:|---:|"]
    for (name, key), runs in results.items():
        maps = np.array([run["map50_95"] for run in runs])
        rare_ap = np.array([rare_ap50(run, rare[name]) for run in runs])
        lines.append(f"| {name} | ({key}) {CONFIGS[key][0]} | {len(runs)} of {len(seeds)} | {spread(maps)} | "
                     f"{spread(rare_ap)} |")
    return "\n".join(lines)


def stored_results(work: Path, datasets: dict, args: argparse.Namespace) -> dict[tuple[str, str], list[dict]]:
    """The scores stored so far, in table order (datasets, then configurations), seeds in order."""
    results: dict[tuple[str, str], list[dict]] = {}
    for name in datasets:
        for key in args.configs:
            runs = [work / "scores" / f"{run_name(name, key, seed, args)}.json" for seed in args.seeds]
            found = [json.loads(path.read_text()) for path in runs if path.is_file()]
            if found:
                results[name, key] = found
    return results


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
    parser.add_argument("--workers", type=int, help="data-loading workers of train and val (default: theirs)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings at once, each with cores / jobs torch threads and one loader worker "
                             "(two one-thread runs train 1.2x more images/s in all than one two-thread run "
                             "on 2 cores; scores do not change, CPU training is deterministic)")
    parser.add_argument("--sample-images", type=int, nargs=2, default=(800, 200), metavar=("TRAIN", "VAL"),
                        help="size of the generated sample")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 epoch, imgsz 64, batch 8, seed 0, 60/30-image datasets, targets 60")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.imgsz, args.batch = QUICK["epochs"], QUICK["imgsz"], QUICK["batch"]
        args.seeds, args.workers = QUICK["seeds"], QUICK["workers"]
        args.sample_target, args.aquarium_target = QUICK["sample_target"], QUICK["aquarium_target"]

    if args.jobs > 1:  # children inherit it; doctor train and doctor val honour OMP_NUM_THREADS
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // args.jobs))
        args.workers = 1 if args.workers is None else args.workers
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    datasets: dict[str, tuple[Path, int]] = {}
    if "sample" in args.datasets:
        sample = work / ("sample" if tuple(args.sample_images) == (800, 200) else
                         "sample-{}-{}".format(*args.sample_images)) / "data.yaml"
        if not sample.is_file():
            doctor("sample", str(sample.parent), "--seed", "0", "--train-images", str(args.sample_images[0]),
                   "--val-images", str(args.sample_images[1]))
        datasets[sample.parent.name] = (sample, args.sample_target)
    if "aquarium" in args.datasets:
        datasets["aquarium"] = (args.aquarium, args.aquarium_target)
    if args.quick:
        datasets = {name: (subset(path, work / f"{name}-quick", *QUICK["images"]), target)
                    for name, (path, target) in datasets.items()}
    rare = {name: rarest_third(path) for name, (path, _) in datasets.items()}
    todo = [(name, key, seed) for name in datasets for key in args.configs for seed in args.seeds
            if not (work / "scores" / f"{run_name(name, key, seed, args)}.json").is_file()]
    image_epochs = {(name, key): train_images(datasets[name][0], CONFIGS[key][3], datasets[name][1], args.max_copies)
                    * config_epochs(key, datasets[name][0], datasets[name][1], args) for name, key, _ in todo}
    total = len(datasets) * len(args.configs) * len(args.seeds)
    rate = seconds_per_image_epoch(work, args.imgsz)
    timed = any((work / "timing").glob(f"*-i{args.imgsz}-*.json"))
    overhead = 0.0 if timed else RUN_OVERHEAD_S * len(todo)  # timed runs' rate already holds their overhead
    print(f"{len(todo)} of {total} runs left ({total - len(todo)} stored in {work / 'scores'}); rough ETA "
          f"{_duration(sum(image_epochs[name, key] for name, key, _ in todo) * rate + overhead)} "
          f"({1 / rate:.1f} train images/s {'as timed here' if timed else 'assumed'}; a shared machine is slower)",
          file=sys.stderr, flush=True)
    table_path = args.table or work / "imbalance.md"
    for name, key in sorted({(name, key) for name, key, _ in todo}):  # shared copies made once, before any run
        method, (data_yaml, target) = CONFIGS[key][3], datasets[name]
        if method:
            rebalanced(work, data_yaml, method, target, args.max_copies)
    # Seed-major: a partial ablation holds every configuration with the first seeds, not some with all three.
    order = [(name, key, seed) for seed in args.seeds for name in datasets for key in args.configs]
    started, finished = time.perf_counter(), 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        running = {pool.submit(run_one, work, name, datasets[name][0], key, seed, args, datasets[name][1]):
                   (name, key, seed) for name, key, seed in order}
        for future in as_completed(running):
            name, key, seed = running[future]
            future.result()
            table_path.write_text(table(stored_results(work, datasets, args), rare, args.seeds) + "\n")
            if (name, key, seed) in todo:
                finished += 1
                left = len(todo) - finished
                eta = (time.perf_counter() - started) / finished * left
                print(f"done: {name} ({key}) seed {seed}; {left} left, ETA {_duration(eta)}", file=sys.stderr,
                      flush=True)
    results = stored_results(work, datasets, args)
    text = table(results, rare, args.seeds)
    table_path.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
