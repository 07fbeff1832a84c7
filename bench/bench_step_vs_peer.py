"""One YOLOv8n training step, ours against Ultralytics', compute only: how much of the training-speed target
(issue 22: >= 1.10x Ultralytics' images/s) the model's own arithmetic leaves room for.

    PYTHONPATH=. python bench/bench_step_vs_peer.py --ultralytics-python /tmp/ultra/bin/python --imgsz 640

Both tools get the same synthetic batch (random pixels; 8 random boxes per image, 10 classes), batch 16, SGD
with momentum 0.937 and Nesterov, torch on --threads threads, and each step is cut into forward, loss (target
assignment included), backward and optimizer step. Ours runs in channels-last as `doctor train` does (and
contiguous, with --contiguous, to show what that layout buys); Ultralytics' model is built from its own
yolov8n.yaml (no weights are downloaded) and runs as its trainer runs it, contiguous. Each sample is a fresh
process, and the tools take turns (ours, peer, ours, peer, ...) so a machine that drifts moves both alike;
medians over processes of each process's median step. Ultralytics is AGPL-3.0: its side is a separate program
run with its own interpreter; nothing of it is imported here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PHASES = ("forward", "loss", "backward", "optimizer")

# Runs with the peer's interpreter: argv = imgsz batch classes boxes threads warmup iters
_PEER_STEP = '''
import json, statistics, sys, time
import torch
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel
imgsz, batch, classes, boxes, threads, warmup, iters = map(int, sys.argv[1:8])
torch.set_num_threads(threads)
torch.manual_seed(0)
model = DetectionModel("yolov8n.yaml", nc=classes, verbose=False)
model.args = get_cfg()  # the loss gains (box 7.5, cls 0.5, dfl 1.5), as its trainer sets them
model.train()
generator = torch.Generator().manual_seed(0)
images = torch.rand(batch, 3, imgsz, imgsz, generator=generator)
count = batch * boxes
size = torch.rand(count, 2, generator=generator) * 0.3 + 0.02
centre = size / 2 + torch.rand(count, 2, generator=generator) * (1 - size)
cls = torch.randint(0, classes, (count, 1), generator=generator).float()
targets = {"img": images, "batch_idx": torch.arange(batch).repeat_interleave(boxes).float(), "cls": cls,
           "bboxes": torch.cat((centre, size), 1)}
criterion = model.init_criterion()
optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.937, nesterov=True)
phases = {name: [] for name in ("forward", "loss", "backward", "optimizer")}
for step in range(warmup + iters):
    t0 = time.perf_counter()
    predictions = model(images)
    t1 = time.perf_counter()
    loss, _ = criterion(predictions, targets)
    t2 = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss.sum().backward()
    t3 = time.perf_counter()
    optimizer.step()
    t4 = time.perf_counter()
    if step >= warmup:
        for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            phases[name].append(seconds)
print(json.dumps({"torch": torch.__version__, **{k: statistics.median(v) for k, v in phases.items()}}))
'''


def our_step(args: argparse.Namespace) -> dict:
    """One process's median phase times for our model, loss and optimizer (the --measure side): the same
    loop as _PEER_STEP, which has to stay a separate text because the peer's interpreter runs it."""
    import torch

    from bench.bench_model import synthetic_targets
    from trainer.model.detector import Detector, ModelConfig
    from trainer.model.loss import DetectionLoss

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layout = torch.contiguous_format if args.measure == "contiguous" else torch.channels_last
    model = Detector(ModelConfig(scale="n", num_classes=args.classes)).to(memory_format=layout)
    criterion = DetectionLoss.for_model(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.937, nesterov=True)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, args.imgsz, args.imgsz, generator=generator).contiguous(memory_format=layout)
    targets = synthetic_targets(args.batch, args.boxes, args.classes, generator)
    model.train()
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    for step in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        outputs = model(images)
        t1 = time.perf_counter()
        total, _ = criterion(outputs, targets)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        if step >= args.warmup:
            for name, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[name].append(seconds)
    return {"torch": torch.__version__, **{name: statistics.median(values) for name, values in phases.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ultralytics-python", type=Path, required=False,
                        help="interpreter of an environment with ultralytics")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--boxes", type=int, default=8, help="synthetic boxes per image")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=3, help="processes per tool, in turn")
    parser.add_argument("--contiguous", action="store_true", help="also ours in the contiguous layout")
    parser.add_argument("--measure", choices=["channels-last", "contiguous"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(our_step(args)))
        return
    if not args.ultralytics_python:
        parser.error("--ultralytics-python is required")

    shape = [str(v) for v in (args.imgsz, args.batch, args.classes, args.boxes, args.threads, args.warmup,
                              args.iters)]
    common = ["--imgsz", shape[0], "--batch", shape[1], "--classes", shape[2], "--boxes", shape[3], "--threads",
              shape[4], "--warmup", shape[5], "--iters", shape[6]]
    ours_env = {**os.environ, "PYTHONPATH": str(REPO)}
    kinds = ["ours channels-last"] + (["ours contiguous"] if args.contiguous else []) + ["Ultralytics"]
    samples: dict[str, list[dict]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "peer_step.py"
        script.write_text(_PEER_STEP)
        peer_env = {**os.environ, "YOLO_CONFIG_DIR": scratch, "YOLO_OFFLINE": "1"}
        peer_env.pop("PYTHONPATH", None)
        commands = {
            "ours channels-last": ([sys.executable, __file__, "--measure", "channels-last", *common], ours_env),
            "ours contiguous": ([sys.executable, __file__, "--measure", "contiguous", *common], ours_env),
            "Ultralytics": ([str(args.ultralytics_python), str(script), *shape], peer_env),
        }
        for _ in range(args.pairs):
            for kind in kinds:
                command, env = commands[kind]
                completed = subprocess.run(command, env=env, capture_output=True, text=True, cwd=scratch)
                if completed.returncode:
                    raise SystemExit(f"{kind} failed: {completed.stderr.strip()[-2000:]}")
                samples[kind].append(json.loads(completed.stdout.strip().splitlines()[-1]))
    print_table(samples, args)


def print_table(samples: dict[str, list[dict]], args: argparse.Namespace) -> None:
    print(f"\nimgsz {args.imgsz}, batch {args.batch}, {args.classes} classes, {args.boxes} boxes/image, "
          f"{args.threads} threads; median over {args.pairs} processes per tool of each one's median of "
          f"{args.iters} steps (after {args.warmup})\n")
    print("| tool | torch | " + " | ".join(f"{p} ms" for p in PHASES) + " | step ms | images/s | vs Ultralytics |")
    print("|---|---|" + "---:|" * (len(PHASES) + 3))
    steps = {kind: statistics.median(sum(s[p] for p in PHASES) for s in runs) for kind, runs in samples.items()}
    for kind, runs in samples.items():
        phases = " | ".join(f"{1000 * statistics.median(s[p] for s in runs):.0f}" for p in PHASES)
        print(f"| {kind} | {runs[0]['torch']} | {phases} | {1000 * steps[kind]:.0f} | "
              f"{args.batch / steps[kind]:.2f} | {steps['Ultralytics'] / steps[kind]:.2f}x |")


if __name__ == "__main__":
    main()
