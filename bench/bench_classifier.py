"""The YOLO classifier (trainer/model/classifier.py): parameters and GFLOPs at 224 per scale against the published
YOLOv5-cls table, and CPU training throughput (images/s of forward + backward + SGD step) at 224.

    nice -n 10 python -m bench.bench_classifier            # the table, then 20 timed steps per batch size
    nice -n 10 python -m bench.bench_classifier --steps 5  # quick check

Parameters and FLOPs are exact (FLOPs counted on the meta device, 2 x multiply-accumulates). Throughput is the
median of the timed steps after 3 warm-up steps, on synthetic 224 px images (the data pipeline is not timed).
"""

from __future__ import annotations

import argparse
import statistics
import time

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scales", default="n,s")
    args = parser.parse_args()
    print(model_table())
    print()
    print(f"| scale | batch | train images/s at 224 (CPU, {torch.get_num_threads()} threads) |")
    print("|---|---|---|")
    for scale in args.scales.split(","):
        for batch in (16, 32):
            print(f"| {scale} | {batch} | {throughput(scale, batch, args.steps):.1f} |")


if __name__ == "__main__":
    main()
