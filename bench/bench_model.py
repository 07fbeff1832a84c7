"""Model and loss throughput on CPU (or CUDA): parameters, GFLOPs, inference and training-step speed per scale.

    PYTHONPATH=. python bench/bench_model.py --scales n,s --imgsz 640 --batch 16 --threads 2 --iters 5

Synthetic inputs (random images, random boxes), so it measures compute only, not the data pipeline. Prints one
markdown table. Timings are only meaningful on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from trainer.model.detector import SCALES, Detector, ModelConfig, count_gflops, count_parameters
from trainer.model.loss import DetectionLoss


def synthetic_targets(batch: int, boxes_per_image: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """(N, 6) rows [image, class, cx, cy, w, h] in the data pipeline's format, boxes inside the image."""
    count = batch * boxes_per_image
    size = torch.rand(count, 2, generator=generator) * 0.3 + 0.02
    centre = size / 2 + torch.rand(count, 2, generator=generator) * (1 - size)
    image = torch.arange(batch).repeat_interleave(boxes_per_image).float()[:, None]
    cls = torch.randint(0, num_classes, (count, 1), generator=generator).float()
    return torch.cat((image, cls, centre, size), dim=1)


def timed(function, warmup: int, iters: int, sync) -> float:
    """Median seconds per call after warmup."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(iters):
        sync()
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_scale(scale: str, args: argparse.Namespace, device: torch.device) -> dict[str, str]:
    generator = torch.Generator().manual_seed(0)
    model = Detector(ModelConfig(scale=scale, num_classes=args.classes)).to(device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    criterion = DetectionLoss.for_model(model).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.937, nesterov=True)
    images = torch.rand(args.batch, 3, args.imgsz, args.imgsz, generator=generator).to(device)
    images = images.contiguous(memory_format=memory_format)
    targets = synthetic_targets(args.batch, args.boxes, args.classes, generator).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def train_step() -> None:
        total, _ = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()

    model.train()
    with torch.no_grad():
        raw = model(images)
    loss_only = timed(lambda: criterion(raw, targets), args.warmup, args.iters, sync)
    train = timed(train_step, args.warmup, args.iters, sync)

    model.eval()
    with torch.no_grad():
        infer = timed(lambda: model(images), args.warmup, args.iters, sync)
        model.fuse()
        infer_fused = timed(lambda: model(images), args.warmup, args.iters, sync)
    return {
        "scale": scale,
        "params": f"{count_parameters(model):,}",  # fused: BatchNorm folded, conv biases added
        "GFLOPs": f"{count_gflops(model, args.imgsz):.1f}",
        "train img/s": f"{args.batch / train:.1f}",
        "loss ms/batch": f"{loss_only * 1000:.1f}",
        "infer img/s": f"{args.batch / infer:.1f}",
        "infer fused img/s": f"{args.batch / infer_fused:.1f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="n", help="comma-separated, from " + ",".join(SCALES))
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--boxes", type=int, default=8, help="synthetic boxes per image")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [bench_scale(scale, args, device) for scale in args.scales.split(",")]
    print(f"device {device}, threads {args.threads}, imgsz {args.imgsz}, batch {args.batch}, {args.classes} classes, "
          f"{args.boxes} boxes/image, channels_last {args.channels_last}, median of {args.iters}\n")
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(row[c] for c in columns) + " |")


if __name__ == "__main__":
    main()
