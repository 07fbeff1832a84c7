"""`doctor rebalance` benchmark: new 640 px images per second, and plan vs naive vs repeat-factor on the sample.

    PYTHONPATH=. python bench/bench_rebalance.py                     # full scale: 800/200 sample, 640 px throughput
    PYTHONPATH=. python bench/bench_rebalance.py --train-images 120 --throughput-images 30 --targets 40
                                                                     # a quick check that it runs

Three parts, each printed as markdown:
1. Throughput: a sample dataset whose images are all 640x640 is generated, and every train image is copied
   `--copies` times through the real writer (decode, augment, encode, write labels), with 1 and with
   `--workers` processes. Reported: new images per second over the whole write (originals linked, manifest
   included), the number the issue asks for (>= 50/s on 2 cores).
2. Per class, before and after, on the sample dataset (default 800 train / 200 val, seed 0) at the first
   target: plan, plan as written (after augmentation), naive and repeat-factor (expected counts).
3. Summary over all `--targets`: added images, surplus instances and the max/min instance ratio per method.
4. `--objects` (issue 20): images / paste / auto written on three datasets: a blood-cell-shaped one (the
   frequent class in every image, generated here), the sample, and `--aquarium` (read in place, never
   written). Per method: written max/min ratio, surplus instances, added images (naive oversampling's
   beside), pasted instances, the frequent class's growth, and whether the output's audit shows a
   scale-shift finding the source does not.
       PYTHONPATH=. nice -n 10 python bench/bench_rebalance.py --objects-only
Run on a quiet machine: other processes on the cores make the throughput meaningless.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_doctor.dataset.index import build_index  # noqa: E402
from dataset_doctor.rebalance.materialize import write_rebalanced_dataset  # noqa: E402
from dataset_doctor.rebalance.plan import RebalancePlan, make_rebalance_plan  # noqa: E402
from dataset_doctor.rebalance.sources import collect_train_sources  # noqa: E402
from dataset_doctor.sample.generate import write_sample_dataset  # noqa: E402
from dataset_doctor.sample.spec import SampleSpec  # noqa: E402


def throughput(work: Path, train_images: int, copies: int, workers: list[int]) -> list[tuple[int, int, float]]:
    """(workers, new images, new images per second) for a 640x640 sample with `copies` copies of every image."""
    spec = SampleSpec(train_images=train_images, val_images=10, min_side=640, max_side=640, inject_defects=False)
    data_yaml = write_sample_dataset(work / "sample640", seed=1, spec=spec)
    sources = collect_train_sources(build_index(data_yaml, progress=False))
    plan = np.full(len(sources.images), copies, dtype=np.int64)
    rows = []
    for count in workers:
        out = work / f"throughput-{count}"
        started = time.perf_counter()
        result = write_rebalanced_dataset(sources, plan, out, workers=count, progress=False)
        seconds = time.perf_counter() - started
        rows.append((count, result.added_images, result.added_images / seconds))
        shutil.rmtree(out)
    return rows


def _count(value: float) -> str:
    value = round(float(value), 1)
    return str(int(value)) if value.is_integer() else f"{value:.1f}"


def per_class_table(names: tuple[str, ...], plan: RebalancePlan, written: np.ndarray) -> str:
    lines = [f"Target {plan.target}, max {plan.max_copies} copies per image (repeat-factor: expected counts, "
             f"{plan.repeat_factor.note})", "",
             "| class | before | plan | plan, as written | naive | repeat-factor |", "|---|---:|---:|---:|---:|---:|"]
    for k, name in enumerate(names):
        lines.append(f"| {name} | {plan.before[k]} | {plan.plan.instances[k]} | {written[k]} | "
                     f"{plan.naive.instances[k]} | {_count(plan.repeat_factor.instances[k])} |")
    lines.append(f"| **added images** | | {_count(plan.plan.added_images)} | {_count(plan.plan.added_images)} | "
                 f"{_count(plan.naive.added_images)} | {_count(plan.repeat_factor.added_images)} |")
    lines.append(f"| **max/min ratio** | {plan.ratio(plan.before):.2f} | {plan.ratio(plan.plan.instances):.2f} | "
                 f"{plan.ratio(written):.2f} | {plan.ratio(plan.naive.instances):.2f} | "
                 f"{plan.ratio(plan.repeat_factor.instances):.2f} |")
    return "\n".join(lines)


def summary_table(plans: list[tuple[RebalancePlan, float]]) -> str:
    lines = ["| target | before ratio | method | added images | surplus instances | max/min ratio "
             "| planning time (all three) |",
             "|---:|---:|---|---:|---:|---:|---:|"]
    for plan, seconds in plans:
        for outcome in plan.outcomes:
            lines.append(f"| {plan.target} | {plan.ratio(plan.before):.2f} | {outcome.method} | "
                         f"{_count(outcome.added_images)} | {_count(plan.surplus(outcome))} | "
                         f"{plan.ratio(outcome.instances):.2f} | "
                         f"{f'{seconds:.2f}s' if outcome.method == 'plan' else ''} |")
    return "\n".join(lines)


def blood_like_dataset(root: Path, train: int = 250, val: int = 60, seed: int = 0) -> Path:
    """Every image full of the frequent class (30 'red' cells), 'white' in half of them, 'platelet' in a third:
    the case where copying an image to add one rare box adds thirty common ones. Smooth noise backgrounds,
    cells as filled ellipses, 320x240 PNG."""
    import cv2

    rng = np.random.default_rng(seed)
    colours = {0: (90, 90, 220), 1: (200, 120, 160), 2: (80, 160, 80)}
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = cv2.resize(rng.integers(150, 255, (6, 8, 3), dtype=np.uint8), (320, 240),
                               interpolation=cv2.INTER_CUBIC)
            cells = [(0, rng.uniform(0.09, 0.13)) for _ in range(30)]
            if rng.random() < 0.5:
                cells.append((1, rng.uniform(0.16, 0.22)))
            if rng.random() < 0.33:
                cells.append((2, rng.uniform(0.04, 0.06)))
            lines = []
            for cls, side in cells:
                w, h = side * rng.uniform(0.9, 1.1), side * 4 / 3 * rng.uniform(0.9, 1.1)
                cx, cy = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
                cv2.ellipse(image, (int(cx * 320), int(cy * 240)), (int(w * 160), int(h * 120)), 0, 0, 360,
                            colours[cls], -1)
                lines.append(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{split}_{i:04d}.png"), image)
            (root / "labels" / split / f"{split}_{i:04d}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [red, white, platelet]\n")
    return root / "data.yaml"


def _shifted_classes(data_yaml: Path) -> set[str]:
    """Classes `doctor audit` flags for scale-shift (an output is audited with its rebalance.json, as the CLI does)."""
    from dataset_doctor.audit import AuditOptions, run_audit
    from dataset_doctor.audit.rebalanced import read_rebalance_origin

    index = build_index(data_yaml, progress=False)
    table = run_audit(index, AuditOptions(), origin=read_rebalance_origin(data_yaml, index.names)).scale_shift
    return set(table.loc[table["flagged"], "class"])


def _size_drift(source: Path, output: Path) -> str:
    """The largest KS D between a class's train box areas (w * h) in the output and in the source, and which."""
    from scipy.stats import ks_2samp

    before = collect_train_sources(build_index(source, progress=False))
    after = collect_train_sources(build_index(output, progress=False)).boxes
    worst, name = 0.0, ""
    for k, label in enumerate(before.names):
        a = before.boxes.loc[before.boxes["cls"] == k]
        b = after.loc[after["cls"] == k]
        if len(a) and len(b):
            statistic = float(ks_2samp(a["w"] * a["h"], b["w"] * b["h"]).statistic)
            if statistic > worst:
                worst, name = statistic, label
    return f"{worst:.2f} ({name})"


def object_methods(work: Path, name: str, data_yaml: Path, target: int, workers: int, max_copies: int,
                   max_pastes: int) -> list[str]:
    """Markdown rows: images / paste / auto written at `target`, with the naive baseline's image count."""
    from dataset_doctor.rebalance.paste_plan import assign_pastes, paste_goals, plan_methods
    from dataset_doctor.rebalance.report import methods_record, rebalance_json

    sources = collect_train_sources(build_index(data_yaml, progress=False))
    counts = sources.count_matrix()
    before = counts.sum(axis=0)
    frequent = int(np.argmax(before))
    plan = make_rebalance_plan(counts, target, max_copies)
    comparison = plan_methods(sources.boxes, counts, plan, max_per_host=max_pastes)
    source_shift = _shifted_classes(data_yaml)
    rows = []
    for method, outcome in comparison.outcomes.items():
        out = work / f"{name}-{method}"
        started = time.perf_counter()
        record = {"classes": list(sources.names), "before": before.tolist(), "target": target, "method": method,
                  "object_methods": methods_record(comparison, sources.names)}
        written = write_rebalanced_dataset(sources, outcome.copies, out, workers=workers, progress=False,
                                           pastes=assign_pastes(sources.boxes, len(sources.images),
                                                                outcome.pastes, 0, max_pastes, outcome.clean_pastes),
                                           paste_goals=paste_goals(outcome, before, target), max_pastes=max_pastes,
                                           extra_files={"rebalance.json": lambda _, r=record: rebalance_json(r)})
        seconds = time.perf_counter() - started
        new_shift = sorted(_shifted_classes(out / "data.yaml") - source_shift)
        drift = _size_drift(data_yaml, out / "data.yaml")
        rows.append(f"| {name} | {target} | {comparison.ratio(before):.2f} | {method} | "
                    f"{comparison.ratio(written.instances):.2f} | {_count(comparison.surplus(written.instances))} | "
                    f"{written.added_images} | {_count(plan.naive.added_images)} | {written.pasted} | "
                    f"{written.instances[frequent] / before[frequent]:.2f}x | "
                    f"{', '.join(new_shift) if new_shift else 'none'} | {drift} | {seconds:.0f}s |")
        shutil.rmtree(out)
    return rows


OBJECT_HEADER = ("| dataset | target | before max/min | method | written max/min | surplus instances | added images "
                 "| naive added images | pasted instances | frequent class growth | new scale-shift "
                 "| max size KS D vs source train | write time |\n"
                 "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="data.yaml for parts 2-3 (default: generate the sample dataset)")
    parser.add_argument("--train-images", type=int, default=800, help="train images of the generated sample")
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--targets", type=int, nargs="+", default=[400, 200, 800, 1500])
    parser.add_argument("--max-copies", type=int, default=10)
    parser.add_argument("--throughput-images", type=int, default=250, help="640x640 source images for part 1")
    parser.add_argument("--copies", type=int, default=4, help="copies of each of them")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed at the end)")
    parser.add_argument("--objects-only", action="store_true", help="only part 4 (images / paste / auto)")
    parser.add_argument("--aquarium", type=Path, default=Path("/work/shared/datasets/aquarium/data.yaml"))
    parser.add_argument("--blood-target", type=int, default=600, help="below the frequent class's count")
    parser.add_argument("--sample-target", type=int, default=1200, help="every class can reach it")
    parser.add_argument("--aquarium-target", type=int, default=500, help="every class can reach it")
    parser.add_argument("--object-max-copies", type=int, default=100,
                        help="part 4: copies of one image / pastes of one instance at most (the sample's and "
                             "aquarium's rarest classes need ~20 and ~80 to reach their targets)")
    parser.add_argument("--max-pastes", type=int, default=16, help="part 4: pastes into one image at most")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-rebalance-", dir=args.work))
    try:
        if args.objects_only:
            print(f"# doctor rebalance: images / paste / auto ({os.cpu_count()} CPUs visible, max "
                  f"{args.object_max_copies} copies or pastes per source, {args.max_pastes} pastes per image)\n")
            print(OBJECT_HEADER)
            cases = [("blood-like", blood_like_dataset(work / "blood"), args.blood_target),
                     ("sample", write_sample_dataset(work / "sample", seed=0, spec=SampleSpec(
                         train_images=args.train_images, val_images=args.val_images)), args.sample_target)]
            if args.aquarium.is_file():
                cases.append(("aquarium", args.aquarium, args.aquarium_target))
            for name, data_yaml, target in cases:
                for row in object_methods(work, name, data_yaml, target, args.workers, args.object_max_copies,
                                          args.max_pastes):
                    print(row, flush=True)
            return
        print(f"# doctor rebalance benchmark ({os.cpu_count()} CPUs visible)\n")
        rows = throughput(work, args.throughput_images, args.copies, sorted({1, args.workers}))
        print("## New 640x640 images per second (decode, augment, JPEG encode, labels, manifest)\n")
        print("| workers | new images | images/s |\n|---:|---:|---:|")
        for count, images, rate in rows:
            print(f"| {count} | {images} | {rate:.1f} |")

        data_yaml = args.data or write_sample_dataset(
            work / "sample", seed=0, spec=SampleSpec(train_images=args.train_images, val_images=args.val_images))
        sources = collect_train_sources(build_index(data_yaml, progress=False))
        counts = sources.count_matrix()
        plans = []
        for target in args.targets:
            started = time.perf_counter()
            plans.append((make_rebalance_plan(counts, target, args.max_copies), time.perf_counter() - started))
        first = plans[0][0]
        written = write_rebalanced_dataset(sources, first.plan.copies, work / "rebalanced", workers=args.workers,
                                           progress=False)
        print(f"\n## Before / after on {data_yaml} ({len(sources.images)} usable train images)\n")
        print(per_class_table(sources.names, first, written.instances))
        print(f"\n{written.lost_boxes} box(es) were cut off by augmentation ('as written' counts them out).\n")
        print("## Plan vs baselines over targets\n")
        print(summary_table(plans))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
