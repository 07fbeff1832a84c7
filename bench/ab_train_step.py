"""Interleaved A/B of the training step's parts changed for issue 22, old and new alternating in one process.

    PYTHONPATH=. nice -n 10 python bench/ab_train_step.py layout --imgsz 320 --pairs 8 --threads 1
    PYTHONPATH=. nice -n 10 python bench/ab_train_step.py optimizer --repeats 7 --threads 1

layout: a train step (forward, DetectionLoss, backward, SGD) of the n model, batch 8, synthetic images and
boxes (bench_model.synthetic_targets), contiguous (NCHW) against channels-last (NHWC), one step of each in
turn. optimizer: gradient clipping + AdamW step with the per-parameter loop (torch's CPU default), foreach and
fused, and the EMA update as a per-tensor loop against the multi-tensor one (trainer/ema.py). Prints medians;
alternating keeps a loaded machine's noise on both sides alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import synthetic_targets  # noqa: E402

from trainer.ema import ModelEMA  # noqa: E402
from trainer.model.detector import Detector, ModelConfig  # noqa: E402
from trainer.model.loss import DetectionLoss  # noqa: E402


def layout(args: argparse.Namespace) -> None:
    generator = torch.Generator().manual_seed(0)
    setups = {}
    for name, memory_format in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        torch.manual_seed(0)
        model = Detector(ModelConfig(scale=args.scale, num_classes=10)).train().to(memory_format=memory_format)
        images = torch.rand(args.batch, 3, args.imgsz, args.imgsz, generator=generator)
        setups[name] = (model, DetectionLoss.for_model(model), torch.optim.SGD(model.parameters(), lr=1e-4),
                        images.contiguous(memory_format=memory_format), synthetic_targets(args.batch, 8, 10, generator))

    def step(name: str) -> float:
        model, criterion, optimizer, images, targets = setups[name]
        started = time.perf_counter()
        loss, _ = criterion(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    for name in setups:  # warm-up: oneDNN picks its kernels on the first call
        step(name)
    times = {name: [] for name in setups}
    for _ in range(args.pairs):
        for name in setups:
            times[name].append(step(name))
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.3f} s per step of {args.batch} at {args.imgsz} "
              f"({args.batch / statistics.median(values):.2f} images/s); steps {[round(v, 2) for v in values]}")


def optimizer(args: argparse.Namespace) -> None:
    model = Detector(ModelConfig(scale=args.scale, num_classes=10))
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter) * 1e-3
    parameters = list(model.parameters())
    optimizers = {"loop": torch.optim.AdamW(parameters, lr=1e-3, foreach=False),
                  "foreach": torch.optim.AdamW(parameters, lr=1e-3, foreach=True),
                  "fused": torch.optim.AdamW(parameters, lr=1e-3, fused=True)}
    ema = ModelEMA(model)

    def step(name: str) -> float:
        started = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(parameters, 10.0, foreach=name != "loop")
        optimizers[name].step()
        return time.perf_counter() - started

    def ema_loop() -> float:  # the per-tensor update this change replaced
        started = time.perf_counter()
        ema.updates += 1
        decay = ema.current_decay()
        source = model.state_dict()
        for name, value in ema.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(decay).add_(source[name].detach(), alpha=1 - decay)
            else:
                value.copy_(source[name])
        return time.perf_counter() - started

    def ema_foreach() -> float:
        started = time.perf_counter()
        ema.update(model)
        return time.perf_counter() - started

    times: dict[str, list[float]] = {name: [] for name in (*optimizers, "ema loop", "ema foreach")}
    for _ in range(args.repeats):
        for name in optimizers:
            times[name].append(step(name))
        times["ema loop"].append(ema_loop())
        times["ema foreach"].append(ema_foreach())
    for name, values in times.items():
        print(f"{name}: median {1000 * statistics.median(values[1:]):.1f} ms (first of {len(values)} dropped)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("layout", "optimizer"))
    parser.add_argument("--scale", default="n")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    (layout if args.what == "layout" else optimizer)(args)


if __name__ == "__main__":
    main()
