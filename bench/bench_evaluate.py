"""Benchmark: COCO mAP evaluation (ours vs pycocotools on the same data) and NMS throughput.

    python bench/bench_evaluate.py                        # 5,000 images x 20 predictions, NMS on 16 x 8400 x 80
    python bench/bench_evaluate.py --images 300 --runs 2  # a quick check that it works

Prints markdown tables: median wall time over --runs runs (after one warm-up), and the mAP difference between
the two evaluators on the benchmark data (it must be below 0.001). Timings are only meaningful on a quiet machine.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.evaluation import evaluate_detections  # noqa: E402
from trainer.model.nms import non_max_suppression  # noqa: E402

IMAGE_SIZE = (640, 480)


def synthetic_detections(images: int, per_image: int, num_classes: int, seed: int = 0
                         ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Ground truth (about 7 boxes per image) and `per_image` predictions: jittered hits, misses, false alarms."""
    rng = np.random.default_rng(seed)
    width, height = IMAGE_SIZE
    ground_truth, predictions = [], []
    for _ in range(images):
        count = int(rng.integers(0, 15))
        corner = rng.uniform(0, [width - 40, height - 40], (count, 2))
        size = rng.uniform(8, 200, (count, 2))
        truth = np.column_stack([corner, np.minimum(corner + size, [width, height]), rng.integers(0, num_classes,
                                                                                                 count)])
        ground_truth.append(truth)
        hits = truth[rng.random(count) < 0.8][:per_image]
        scale = np.column_stack([hits[:, 2] - hits[:, 0], hits[:, 3] - hits[:, 1]] * 2) if len(hits) else 0
        boxes = hits[:, :4] + rng.normal(0, 0.08, (len(hits), 4)) * scale
        classes = np.where(rng.random(len(hits)) < 0.9, hits[:, 4], rng.integers(0, num_classes, len(hits)))
        found = np.column_stack([boxes, rng.uniform(0.3, 1.0, len(hits)), classes])
        alarms = per_image - len(found)
        corner = rng.uniform(0, [width - 40, height - 40], (alarms, 2))
        false = np.column_stack([corner, corner + rng.uniform(8, 200, (alarms, 2)), rng.uniform(0.001, 0.6, alarms),
                                 rng.integers(0, num_classes, alarms)])
        table = np.vstack([found, false])
        table[:, 2:4] = np.maximum(table[:, 2:4], table[:, :2] + 1)
        predictions.append(table)
    return ground_truth, predictions


def pycocotools_inputs(ground_truth: list[np.ndarray], predictions: list[np.ndarray], num_classes: int
                       ) -> tuple[dict, list[dict]]:
    """The same data as a COCO ground-truth dataset and a result list (pycocotools' native input)."""
    width, height = IMAGE_SIZE
    dataset = {"images": [{"id": i + 1, "width": width, "height": height} for i in range(len(ground_truth))],
               "annotations": [], "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
    for i, boxes in enumerate(ground_truth):
        for x1, y1, x2, y2, cls in boxes.tolist():
            dataset["annotations"].append({"id": len(dataset["annotations"]) + 1, "image_id": i + 1,
                                           "category_id": int(cls) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                           "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    results = [{"image_id": i + 1, "category_id": int(cls) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
               for i, boxes in enumerate(predictions) for x1, y1, x2, y2, score, cls in boxes.tolist()]
    return dataset, results


def run_pycocotools(dataset: dict, results: list[dict]) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = dataset
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[0])


def median_seconds(task: Callable[[], object], runs: int, prepare: Callable[[], object] | None = None) -> float:
    """Median wall time of `task` over `runs` runs after one warm-up; `prepare` (untimed) runs before each."""
    times = []
    for run in range(runs + 1):
        if prepare is not None:
            prepare()
        started = time.perf_counter()
        task()
        if run:  # the first run warms caches and imports
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def synthetic_raw_output(batch: int, anchors_side: tuple[int, ...], num_classes: int, background_logit: float,
                         seed: int = 0) -> torch.Tensor:
    """A detector's raw output (B, 4 + nc, anchors) at 640 px: boxes and class scores around 10 objects per image.

    Anchor points lie on the usual stride 8 / 16 / 32 grids. Anchors inside an object predict a jittered copy of
    it with a score for its class falling off from the centre; all other scores are sigmoid(N(background_logit,
    1.5)), which sets how many candidates pass a low confidence threshold.
    """
    generator = torch.Generator().manual_seed(seed)
    points = torch.cat([torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="xy"), 0)
                        .reshape(2, -1).float().add(0.5).mul(640 / side) for side in anchors_side], dim=1)
    anchors = points.shape[1]
    logits = torch.randn(batch, num_classes, anchors, generator=generator) * 1.5 + background_logit
    centres = points[None].repeat(batch, 1, 1) + torch.randn(batch, 2, anchors, generator=generator) * 4
    sizes = torch.rand(batch, 2, anchors, generator=generator) * 150 + 10
    for image in range(batch):
        objects_centre = torch.rand(10, 2, generator=generator) * 560 + 40
        objects_size = torch.rand(10, 2, generator=generator) * 150 + 20
        objects_class = torch.randint(0, num_classes, (10,), generator=generator)
        offset = (points.T[:, None, :] - objects_centre[None]) / (objects_size[None] / 2)  # (anchors, 10, 2)
        inside = offset.abs().max(dim=2).values < 1
        for k in range(10):
            hit = inside[:, k]
            count = int(hit.sum())
            jitter = 1 + torch.randn(4, count, generator=generator) * 0.05
            centres[image, :, hit] = objects_centre[k, :, None] * jitter[:2]
            sizes[image, :, hit] = objects_size[k, :, None] * jitter[2:]
            closeness = 1 - offset[hit, k].abs().max(dim=1).values
            logits[image, objects_class[k], hit] = closeness * 8 - 2
    return torch.cat([centres, sizes, torch.sigmoid(logits)], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000, help="images in the evaluation benchmark")
    parser.add_argument("--predictions-per-image", type=int, default=20)
    parser.add_argument("--classes", type=int, default=10, help="classes in the evaluation benchmark")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per measurement (median reported)")
    parser.add_argument("--nms-batch", type=int, default=16, help="images per NMS call")
    parser.add_argument("--nms-classes", type=int, default=80)
    parser.add_argument("--skip-pycocotools", action="store_true", help="time our evaluator only")
    args = parser.parse_args()

    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {platform.processor() or platform.machine()}\n")

    ground_truth, predictions = synthetic_detections(args.images, args.predictions_per_image, args.classes)
    names = [f"class{c}" for c in range(args.classes)]
    ours = evaluate_detections(ground_truth, predictions, names)
    ours_seconds = median_seconds(lambda: evaluate_detections(ground_truth, predictions, names), args.runs)
    data = f"{args.images:,} images x {args.predictions_per_image} predictions, {args.classes} classes"
    print("| evaluation | data | ours, median s | pycocotools, median s | speed-up | mAP50-95 ours - pycocotools |")
    print("|---|---|---|---|---|---|")
    if args.skip_pycocotools:
        print(f"| COCO bbox mAP | {data} | {ours_seconds:.3f} | - | - | - |")
    else:
        dataset, results = pycocotools_inputs(ground_truth, predictions, args.classes)
        state: dict = {}

        def fresh_inputs() -> None:  # loadRes and evaluate annotate their inputs in place
            state["inputs"] = copy.deepcopy((dataset, results))

        coco_seconds = median_seconds(lambda: state.update(stat=run_pycocotools(*state["inputs"])), args.runs,
                                      prepare=fresh_inputs)
        print(f"| COCO bbox mAP | {data} | {ours_seconds:.3f} | {coco_seconds:.3f} | "
              f"{coco_seconds / ours_seconds:.1f}x | {ours.map50_95 - state['stat']:.1e} |")

    print("\n| NMS setting | batch | classes | candidates per image | median ms per batch | images/s |")
    print("|---|---|---|---|---|---|")
    settings = [
        ("mAP: conf 0.001, IoU 0.7, multi-label", 0.001, 0.7, True, -11.0),
        ("predict: conf 0.25, IoU 0.45", 0.25, 0.45, False, -11.0),
        ("untrained model: conf 0.001, every score above it (30,000 cap)", 0.001, 0.7, True, 0.0),
    ]
    for label, conf, iou, multi_label, background in settings:
        raw = synthetic_raw_output(args.nms_batch, (80, 40, 20), args.nms_classes, background)
        scores = raw[:, 4:]
        candidates = (scores > conf).sum(dim=(1, 2)) if multi_label else (scores.max(dim=1).values > conf).sum(1)
        per_image = int(candidates.float().mean())
        seconds = median_seconds(partial(non_max_suppression, raw, conf, iou, multi_label=multi_label), args.runs)
        print(f"| {label} | {args.nms_batch} | {args.nms_classes} | {per_image:,} | {seconds * 1000:.1f} | "
              f"{args.nms_batch / seconds:,.0f} |")


if __name__ == "__main__":
    main()
