"""Benchmark adding classes to a trained model (issue 21): new-class AP and base-class forgetting per method.

    PYTHONPATH=. OMP_NUM_THREADS=2 nice -n 10 python bench/bench_finetune.py            # imgsz 160, 8 + 5 epochs
    PYTHONPATH=. python bench/bench_finetune.py --imgsz 320 --base-epochs 30 --finetune-epochs 15   # quiet machine

The dataset is `doctor sample` (seed 0, 10 classes, --train-images / --val-images: 800 + 200), split by image into two
derived datasets written next to it (the sample itself is left as written):
- base: every image without a box of the new classes, its label lines of the six base classes (zero .. five);
  data.yaml names those six.
- new: every image with a box of a new class (six .. nine), only those lines kept: the base objects in these
  images are unlabelled, as when new data is annotated for the new classes only. data.yaml names all ten
  (base first, same ids), so fine-tuning keeps the base classes' head rows by name and adds four.
Lines whose class is not an integer of either set are dropped; the sample's other deliberate defects (e.g. a
malformed line of a kept class) travel along, and the index skips them with a warning as in the sample.

Then, each in a fresh `doctor train` process (scale n, CPU, evaluation only at the end, no class weights):
train base from scratch; fine-tune from its best.pt on `new` with (a) plain fine-tuning, (b) `--freeze backbone`,
(c) `--replay base/data.yaml --replay-ratio R`. All fine-tunes use the --weights defaults (lr0 a tenth, one
warmup epoch). Every model is scored by one evaluator in this process (conf 0.001, COCO protocol, the same
letterboxing as val): new-class AP50 = mean AP50 of the four new classes on new's val split; base-class AP50 =
mean AP50 of the six base classes on base's val split, the fine-tuned model's class columns picked by name
(trainer.forgetting.BaseClassView). Forgetting = base AP50 of the base model minus that after fine-tuning.
Prints markdown tables; writes only inside --work (a temporary folder unless given).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO)]

BASE = ("zero", "one", "two", "three", "four", "five")
NEW = ("six", "seven", "eight", "nine")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def doctor(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "dataset_doctor", *arguments]


def run(command: list[str]) -> float:
    """Run one step in its own process; its wall time. A failure stops the bench with the step's output."""
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if completed.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    return time.perf_counter() - started


def class_of(line: str) -> int | None:
    """The class id of a label line, None for a line that is not a box or polygon of an integer class."""
    parts = line.split()
    if len(parts) < 5:
        return None
    try:
        value = float(parts[0])
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def derive(sample: Path, out: Path) -> dict[str, dict[str, int]]:
    """Write out/base and out/new from the sample (see the module docstring); images and boxes per split."""
    base_ids, new_ids = set(range(len(BASE))), set(range(len(BASE), len(BASE) + len(NEW)))
    counts: dict[str, dict[str, int]] = {}
    for split in ("train", "val"):
        for image in sorted((sample / "images" / split).rglob("*")):
            if image.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            relative = image.relative_to(sample / "images" / split)
            label = (sample / "labels" / split / relative).with_suffix(".txt")
            lines = label.read_text(encoding="utf-8", errors="replace").splitlines() if label.is_file() else []
            classes = [class_of(line) for line in lines]
            target = "new" if any(c in new_ids for c in classes) else "base"
            keep = new_ids if target == "new" else base_ids
            kept = [line.strip() for line, c in zip(lines, classes) if c in keep]
            destination = out / target / "images" / split / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, destination)
            label_out = (out / target / "labels" / split / relative).with_suffix(".txt")
            label_out.parent.mkdir(parents=True, exist_ok=True)
            label_out.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
            tally = counts.setdefault(f"{target} {split}", {"images": 0, "boxes": 0})
            tally["images"] += 1
            tally["boxes"] += len(kept)
    for target, names in (("base", BASE), ("new", BASE + NEW)):
        (out / target / "data.yaml").write_text(
            "train: images/train\nval: images/val\nnames:\n" + "".join(f"  - {name}\n" for name in names),
            encoding="utf-8")
    return counts


def mean_ap50(result, names: tuple[str, ...]) -> float:
    values = [row["ap50"] for row in result.per_class_rows() if row["class"] in names and row["ap50"] is not None]
    return sum(values) / len(values) if values else float("nan")


def score(weights: Path, data: Path, imgsz: int, batch: int) -> object:
    """The model's val result on data's val split, its class columns picked by the dataset's names."""
    import torch

    from dataset_doctor.dataset.datayaml import load_data_yaml
    from dataset_doctor.dataset.index import build_index
    from trainer.data.dataset import build_dataset
    from trainer.data.loader import make_eval_loader
    from trainer.forgetting import BaseClassView
    from trainer.model.inference import evaluate_model
    from trainer.setup import load_model_weights

    model, names = load_model_weights(weights)
    index = build_index(load_data_yaml(data), progress=False)
    loader = make_eval_loader(build_dataset(index, "val", imgsz), batch, 0, "cpu")
    result, _ = evaluate_model(BaseClassView(model, names, list(index.names)), loader, index, torch.device("cpu"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="folder for the datasets and runs (default: temporary, removed)")
    parser.add_argument("--train-images", type=int, default=800, help="of the sample, before the split")
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--base-epochs", type=int, default=8)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--replay-ratio", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    temporary = None if args.work else tempfile.TemporaryDirectory()
    work = args.work or Path(temporary.name)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if not (work / "sample" / "data.yaml").is_file():
        run(doctor("sample", str(work / "sample"), "--seed", "0", "--train-images", str(args.train_images),
                   "--val-images", str(args.val_images)))
    if not (work / "new" / "data.yaml").is_file():
        counts = derive(work / "sample", work)
        print("| derived dataset | images | boxes |\n|---|---|---|")
        for key, tally in counts.items():
            print(f"| {key} | {tally['images']} | {tally['boxes']} |")
    common = ["--model", "n", "--imgsz", str(args.imgsz), "--batch", str(args.batch), "--device", "cpu",
              "--class-weights", "none", "--threads", str(args.threads), "--workers", str(args.workers),
              "--project", str(work / "runs"), "--exist-ok", "--seed", "0", "--no-live-report", "--no-tensorboard",
              "--copy-paste", "0"]  # as recorded in bench/README.md, before it was on by default
    base_weights = work / "runs" / "base" / "weights" / "best.pt"
    seconds = {}
    if not base_weights.is_file():
        seconds["base"] = run(doctor("train", str(work / "base" / "data.yaml"), "--epochs", str(args.base_epochs),
                                     "--eval-every", str(args.base_epochs), "--name", "base", *common))
    base_yaml, new_yaml = work / "base" / "data.yaml", work / "new" / "data.yaml"
    before = mean_ap50(score(base_weights, base_yaml, args.imgsz, args.batch), BASE)
    print(f"\nsample {args.train_images} + {args.val_images} images, scale n, imgsz {args.imgsz}, base "
          f"{args.base_epochs} epochs from scratch, fine-tune {args.finetune_epochs} epochs from its best.pt; "
          f"base-class AP50 of the base model: {before:.3f}\n")
    print("| method | new-class AP50 (new val) | base-class AP50 before | after | drop (forgetting) | train wall s |")
    print("|---|---|---|---|---|---|", flush=True)
    methods = {"plain": [], "freeze backbone": ["--freeze", "backbone"],
               f"replay {args.replay_ratio:g}": ["--replay", str(base_yaml), "--replay-ratio", str(args.replay_ratio)]}
    for method, extra in methods.items():  # each row as soon as its run is done
        weights = work / "runs" / method.split()[0] / "weights" / "best.pt"
        if not weights.is_file():
            seconds[method] = run(doctor("train", str(new_yaml), "--weights", str(base_weights), "--epochs",
                                         str(args.finetune_epochs), "--eval-every", str(args.finetune_epochs),
                                         "--name", method.split()[0], *common, *extra))
        new = mean_ap50(score(weights, new_yaml, args.imgsz, args.batch), NEW)
        after = mean_ap50(score(weights, base_yaml, args.imgsz, args.batch), BASE)
        wall = f"{seconds[method]:.0f}" if method in seconds else "(reused)"
        print(f"| {method} | {new:.3f} | {before:.3f} | {after:.3f} | {before - after:+.3f} | {wall} |", flush=True)
    if "base" in seconds:
        print(f"\nbase training {seconds['base']:.0f} s; whole bench {time.perf_counter() - started:.0f} s")
    if temporary is not None:
        temporary.cleanup()


if __name__ == "__main__":
    main()
