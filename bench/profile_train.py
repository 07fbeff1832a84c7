"""Where a `doctor train` step spends its time: data wait, forward, loss (assigner included), backward,
optimizer + EMA, and the host syncs of the loop (issue 22).

    PYTHONPATH=. nice -n 10 python bench/profile_train.py sample/data.yaml --imgsz 320 --mosaic 1 --steps 12
    PYTHONPATH=. nice -n 10 python bench/profile_train.py sample/data.yaml --imgsz 640 --mosaic 0 --steps 8 \\
        --torch-profile 3     # also the top operators of 3 steps by torch.profiler

The run is built by trainer.setup.start_run exactly as `doctor train` builds it (real loader, workers,
augmentation, class weights, EMA); the step below is the loop's step (trainer/loop.py) cut into timed phases,
so it measures what training does. Each phase ends with its own work done on CPU (eager ops are synchronous
there; on CUDA a synchronize is added). The first --warmup steps (worker start-up, oneDNN kernel selection) are
not timed. Prints one markdown row per phase with mean ms per step and share of the step; on a loaded machine
the shares are the useful part.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from trainer.config import TrainConfig, TrainSettings
from trainer.data.config import AugmentConfig, DataConfig
from trainer.devices import autocast
from trainer.loop import optimizer_step
from trainer.setup import start_run

PHASES = ("data wait", "to device", "forward", "loss + assigner", "backward", "optimizer + EMA", "loss to host")


def profile(args: argparse.Namespace) -> tuple[dict[str, list[float]], int]:
    """Per-phase seconds of `args.steps` timed steps, and the images they held."""
    work = Path(tempfile.mkdtemp(prefix="profile_train."))
    settings = TrainSettings(
        train=TrainConfig(data=str(args.data), model=args.model, epochs=100, batch=args.batch, device="cpu",
                          project=str(work), name="profile", exist_ok=True, tensorboard=False, save_batches=0,
                          threads=args.threads),
        data=DataConfig(imgsz=args.imgsz, workers=args.workers),
        augment=AugmentConfig(mosaic=args.mosaic, close_mosaic=0, copy_paste=args.copy_paste))
    run = start_run(settings, console=Console(quiet=True))
    run.model.train()
    if args.channels_last:
        run.model.to(memory_format=torch.channels_last)
    first_conv = next(p for p in run.model.parameters() if p.ndim == 4 and p.shape[-1] > 1)
    channels_last = first_conv.is_contiguous(memory_format=torch.channels_last)
    times = {phase: [] for phase in PHASES}
    images = 0
    sync = torch.cuda.synchronize if run.device.device.type == "cuda" else (lambda: None)
    loader = iter(run.train_loader)
    profiler = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup and args.torch_profile:
            profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            profiler.__enter__()
        if profiler is not None and step == args.warmup + args.torch_profile:
            profiler.__exit__(None, None, None)
            print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
            profiler = None
        marks = [time.perf_counter()]
        try:
            batch = next(loader)
        except StopIteration:
            loader = iter(run.train_loader)
            batch = next(loader)
        marks.append(time.perf_counter())
        batch = batch.to(run.device.device, non_blocking=True)
        images_in = batch.images
        if channels_last:  # as the loop does for a channels-last model (trainer/loop.py)
            images_in = images_in.contiguous(memory_format=torch.channels_last)
        sync()
        marks.append(time.perf_counter())
        with autocast(run.device.device, run.device.amp_dtype):
            outputs = run.model(images_in)
        sync()
        marks.append(time.perf_counter())
        loss, items = run.loss(outputs, batch.targets)
        sync()
        marks.append(time.perf_counter())
        run.scaler.scale(loss).backward()
        sync()
        marks.append(time.perf_counter())
        optimizer_step(run)
        if run.ema is not None:
            run.ema.update(run.model)
        sync()
        marks.append(time.perf_counter())
        items.detach().cpu().tolist()
        bool(torch.isfinite(loss.detach()).item())
        marks.append(time.perf_counter())
        if step >= args.warmup:
            images += len(batch)
            for phase, start, end in zip(PHASES, marks, marks[1:]):
                times[phase].append(end - start)
    return times, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="data.yaml (e.g. from `doctor sample sample`)")
    parser.add_argument("--model", default="n")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--mosaic", type=float, default=1.0, help="mosaic probability (0: whole images)")
    parser.add_argument("--copy-paste", type=float, default=0.0,
                        help="online copy-paste probability (doctor train's default is 0.5; 0: as the profiles in "
                             "bench/README.md, which predate it)")
    parser.add_argument("--workers", type=int, default=None, help="loader processes (default: doctor train's)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: doctor train's)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--torch-profile", type=int, default=0, metavar="N",
                        help="also print torch.profiler's top operators over the first N timed steps")
    args = parser.parse_args()
    times, images = profile(args)
    total = sum(sum(values) for values in times.values())
    print(f"\n{args.data}: model {args.model}, imgsz {args.imgsz}, batch {args.batch}, mosaic {args.mosaic}, "
          f"workers {args.workers if args.workers is not None else 'default'}, threads {torch.get_num_threads()}, "
          f"channels_last model {args.channels_last or 'as setup builds it'}, {args.steps} timed steps: "
          f"{images / total:.2f} images/s\n")
    print("| phase | mean ms/step | median ms/step | share |")
    print("|---|---:|---:|---:|")
    for phase, values in times.items():
        print(f"| {phase} | {1000 * sum(values) / len(values):.1f} | {1000 * statistics.median(values):.1f} | "
              f"{100 * sum(values) / total:.1f}% |")


if __name__ == "__main__":
    main()
