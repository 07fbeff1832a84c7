"""ONNX Runtime CPU vs torch eager: latency per image (batch 1) and throughput (batch 16) per scale.

    PYTHONPATH=. nice -n 10 python bench/bench_export.py --scales n,s --imgsz 640 --threads 2 --iters 5

Untrained models with 80 classes (the speed does not depend on the weights), exported by `doctor export`'s code
(fused, raw head, static batch 1 for latency, dynamic for throughput); torch eager is the same fused model under
no_grad. Both end at the decoded head tensor (no NMS). Prints one markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from trainer.checkpoint import save_checkpoint
from trainer.export.onnx_export import ExportOptions, export_onnx, model_for_export
from trainer.model.detector import Detector, ModelConfig


def median_seconds(function, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="n,s")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    arguments = parser.parse_args()
    import onnxruntime

    torch.set_num_threads(arguments.threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = arguments.threads, 1
    print(f"| scale | imgsz | torch eager b1 ms/img | ORT CPU b1 ms/img | torch eager b{arguments.batch} img/s "
          f"| ORT CPU b{arguments.batch} img/s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for scale in arguments.scales.split(","):
            print(bench_scale(scale, Path(folder), arguments, options, onnxruntime), flush=True)


def bench_scale(scale: str, folder: Path, arguments: argparse.Namespace, options, onnxruntime) -> str:
    """One table row: export the scale (static and dynamic), then time torch eager and ORT on the same inputs."""
    size = arguments.imgsz
    model = Detector(ModelConfig(scale=scale, num_classes=80))
    weights = folder / f"{scale}.pt"
    save_checkpoint(weights, {"model_config": vars(model.config), "model": model.state_dict(),
                              "names": [str(i) for i in range(80)]})
    static, dynamic = folder / f"{scale}.onnx", folder / f"{scale}-dynamic.onnx"
    export_onnx(weights, static, ExportOptions(imgsz=size))
    export_onnx(weights, dynamic, ExportOptions(imgsz=size, dynamic=True))
    fused, _ = model_for_export(weights)
    one = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    many = np.random.default_rng(1).random((arguments.batch, 3, size, size), dtype=np.float32)
    session_one = onnxruntime.InferenceSession(str(static), options, providers=["CPUExecutionProvider"])
    session_many = onnxruntime.InferenceSession(str(dynamic), options, providers=["CPUExecutionProvider"])

    def eager(images: np.ndarray) -> None:
        with torch.no_grad():
            fused(torch.from_numpy(images))

    iters_many = max(2, arguments.iters // 2)
    torch_one = median_seconds(lambda: eager(one), 2, arguments.iters)
    ort_one = median_seconds(lambda: session_one.run(None, {"images": one}), 2, arguments.iters)
    torch_many = median_seconds(lambda: eager(many), 1, iters_many)
    ort_many = median_seconds(lambda: session_many.run(None, {"images": many}), 1, iters_many)
    return (f"| {scale} | {size} | {torch_one * 1000:.1f} | {ort_one * 1000:.1f} | "
            f"{arguments.batch / torch_many:.1f} | {arguments.batch / ort_many:.1f} |")

if __name__ == "__main__":
    main()
