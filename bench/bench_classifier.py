"""The YOLO classifier (trainer/model/classifier.py): parameters and GFLOPs at 224 per scale against the published
YOLOv5-cls table, and CPU training throughput (images/s of forward + backward + SGD step) at 224.

    nice -n 10 python -m bench.bench_classifier            # the table, then 20 timed steps per batch size
    nice -n 10 python -m bench.bench_classifier --steps 5  # quick check
    nice -n 10 python -m bench.bench_classifier weights    # sample val top-1, class weights on vs off

`weights` trains the n classifier on `doctor sample --task classify` data (written to a temporary folder) with
class-weighted cross-entropy on and off, the same seeds, and prints val top-1 and the rare-class accuracy: the
mean recall (the share of a class's own val images classified right) over the rarest third of the classes that
have val images, by train count. The sample's rarest class has no val folder (a planted defect), so it cannot
count.

Parameters and FLOPs are exact (FLOPs counted on the meta device, 2 x multiply-accumulates). Throughput is the
median of the timed steps after 3 warm-up steps, on synthetic 224 px images (the data pipeline is not timed).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from trainer.model.classifier import Classifier, ClassifierConfig
from trainer.model.detector import count_gflops, count_parameters

# YOLOv5 v6.2's YOLOv5-cls table (ImageNet, 1000 classes, 224 px) as issue 23 quotes it: params (M), FLOPs (B).
PUBLISHED_YOLOV5_CLS = {"n": (2.5, 0.5), "s": (5.4, 1.4), "m": (12.9, 3.9)}


def model_table() -> str:
    lines = ["| scale | parameters (1000 classes) | GFLOPs at 224 | YOLOv5-cls published | ratio params / FLOPs |",
             "|---|---|---|---|---|"]
    for scale, (params, flops) in PUBLISHED_YOLOV5_CLS.items():
        model = Classifier(ClassifierConfig(scale=scale, num_classes=1000))
        ours_params, ours_flops = count_parameters(model) / 1e6, count_gflops(model, 224)
        lines.append(f"| {scale} | {ours_params:.2f} M | {ours_flops:.2f} | {params} M / {flops} B | "
                     f"{ours_params / params:.2f} / {ours_flops / flops:.2f} |")
    return "\n".join(lines)


def throughput(scale: str, batch: int, steps: int, imgsz: int = 224, num_classes: int = 10) -> float:
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(scale=scale, num_classes=num_classes)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    images = torch.rand(batch, 3, imgsz, imgsz)
    targets = torch.randint(0, num_classes, (batch,))
    times = []
    for step in range(steps + 3):
        started = time.perf_counter()
        loss = F.cross_entropy(model(images), targets, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= 3:
            times.append(time.perf_counter() - started)
    return batch / statistics.median(times)


def rare_class_accuracy(val_per_class: list[dict], train_counts: dict[str, int]) -> tuple[float, list[str]]:
    """Mean val recall over the rarest third (by train images) of the classes with val images, and those classes."""
    measured = [row for row in val_per_class if row["support"] > 0]
    measured.sort(key=lambda row: (train_counts.get(row["class"], 0), row["class"]))
    rare = measured[:max(1, math.ceil(len(measured) / 3))]
    return float(sum(row["recall"] for row in rare) / len(rare)), [row["class"] for row in rare]


def weights_run(root: Path, project: Path, class_weights: str, seed: int, epochs: int, imgsz: int,
                batch: int, **augment: float) -> dict:
    """One classifier run on the sample; its last epoch's val metrics."""
    from trainer.classify_loop import train_classifier
    from trainer.config import ClassifyConfig

    started = time.perf_counter()
    run_dir = train_classifier(ClassifyConfig(
        data=str(root), model="n", epochs=epochs, imgsz=imgsz, batch=batch, class_weights=class_weights,
        seed=seed, project=str(project), name=f"{class_weights}-{seed}", cache="ram", **augment),
        log=lambda message: None)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    train_counts = dict(zip(metrics["classes"], _train_counts(root)))
    rare, rare_names = rare_class_accuracy(metrics["val"]["per_class"], train_counts)
    return {"class_weights": class_weights, "seed": seed, "val_top1": metrics["val"]["top1"], "rare": rare,
            "rare_classes": rare_names, "seconds": time.perf_counter() - started}


def _train_counts(root: Path) -> list[int]:
    """Readable train images per class, in class-id order (the whole split, not the evaluated subset)."""
    from dataset_doctor.dataset.classify_index import build_classify_index

    return [int(count) for count in build_classify_index(root).counts("train")]


def weights_table(seeds: list[int], epochs: int, imgsz: int, batch: int,
                  modes: tuple[str, ...] = ("none", "auto"), max_train: int = 60, **augment: float) -> str:
    from dataset_doctor.sample.classify import ClassifySampleSpec, write_classify_sample

    with tempfile.TemporaryDirectory(prefix="bench-cls-") as folder:
        root = write_classify_sample(Path(folder) / "sample", seed=0, spec=ClassifySampleSpec(max_train=max_train))
        runs = []
        for seed in seeds:
            for mode in modes:
                runs.append(weights_run(root, Path(folder) / "runs", mode, seed, epochs, imgsz, batch, **augment))
                print(f"# finished: {runs[-1]}", flush=True)  # partial results survive a stopped benchmark
    lines = [f"rare classes (rarest third with val images): {', '.join(runs[0]['rare_classes'])}", "",
             "| class weights | seed | val top-1 | rare-class accuracy | seconds |", "|---|---|---|---|---|"]
    for run in runs:
        lines.append(f"| {'on' if run['class_weights'] == 'auto' else 'off'} | {run['seed']} | "
                     f"{run['val_top1']:.3f} | {run['rare']:.3f} | {run['seconds']:.0f} |")
    for mode in modes:
        chosen = [run for run in runs if run["class_weights"] == mode]
        lines.append(f"| {'on' if mode == 'auto' else 'off'} | mean | "
                     f"{statistics.mean(r['val_top1'] for r in chosen):.3f} | "
                     f"{statistics.mean(r['rare'] for r in chosen):.3f} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", nargs="?", default="model", choices=("model", "weights"),
                        help="model: parameters, FLOPs and throughput; weights: class weights on vs off")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scales", default="n,s")
    parser.add_argument("--seeds", default="0,1", help="weights: training seeds")
    parser.add_argument("--epochs", type=int, default=10, help="weights: epochs per run")
    parser.add_argument("--imgsz", type=int, default=96, help="weights: image size")
    parser.add_argument("--batch", type=int, default=32, help="weights: batch size")
    parser.add_argument("--modes", default="none,auto", help="weights: class weights none (off), auto (on), or both "
                                                            "(one process per mode runs them side by side)")
    parser.add_argument("--max-train", type=int, default=60,
                        help="weights: train images of the sample's head class (the tail falls as 1/rank)")
    parser.add_argument("--fliplr", type=float, default=0.5, help="weights: flip probability (digits: 0)")
    parser.add_argument("--crop-scale", type=float, help="weights: smallest random-crop area (default: the "
                                                          "trainer's)")
    args = parser.parse_args()
    if args.command == "weights":
        augment = {"fliplr": args.fliplr, **({"crop_scale": args.crop_scale} if args.crop_scale is not None else {})}
        print(weights_table([int(s) for s in args.seeds.split(",")], args.epochs, args.imgsz, args.batch,
                            tuple(args.modes.split(",")), args.max_train, **augment))
        return
    print(model_table())
    print()
    print(f"| scale | batch | train images/s at 224 (CPU, {torch.get_num_threads()} threads) |")
    print("|---|---|---|")
    for scale in args.scales.split(","):
        for batch in (16, 32):
            print(f"| {scale} | {batch} | {throughput(scale, batch, args.steps):.1f} |")


if __name__ == "__main__":
    main()
