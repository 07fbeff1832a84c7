"""Benchmark: how well `doctor audit --predictions` finds label errors planted in a copy of a dataset's val split.

    python bench/bench_label_errors.py data.yaml --out /tmp/le --predictions PRED_DIR   # real numbers
    python bench/bench_label_errors.py data.yaml --out /tmp/le --synthetic              # smoke test only
    python bench/bench_label_errors.py --speed                                         # engine time, 5,000 images

1. Plants errors of the four kinds in a copy of the val labels (the images are linked, unchanged), each kind in
   `--rate` of the val boxes, no box planted twice: missing (a box removed), swapped (another class),
   mislocated (shifted so it overlaps its object at IoU 0.2-0.45), spurious (a box added where nothing is).
   OUT/dataset/ holds data.yaml (train = the source's train split, val = the planted copy), images/val,
   labels/val and manifest.json in the format of /work/shared/tools/label_error_score.py.
2. Runs `doctor audit OUT/dataset/data.yaml --predictions OUT/predictions --json OUT/audit.json`.
3. Scores it with that tool (`label_error_score.py doctor AUDIT.json flags.json`, then `score`): box-level AP of
   the ranking, recall at precision 0.5 / 0.8, recall per planted kind, image-level AP.

Real numbers need real predictions: a model trained on the CLEAN train split of the source (never on the planted
val labels), run on the source's val images at a low confidence, e.g.
    doctor train data.yaml --epochs 100
    doctor predict runs/exp/weights/best.pt data.yaml --split val --out preds --conf 0.001
    python bench/bench_label_errors.py data.yaml --out /tmp/le --predictions preds/labels
The images of the copy are the source's, so predictions on the source's val images fit it. cleanlab on the same
predictions, for comparison: `label_error_score.py cleanlab OUT/dataset OUT/predictions/val cleanlab.json`.

`--synthetic` instead makes predictions from the clean val labels with noise (objects found at 90% with jittered
boxes and confidences, some class confusion, duplicates, low-confidence background): the predictions then know
the truth, so its score says that the pipeline works end to end, NOT how well the audit finds errors with a
real detector. Do not quote it as a result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset_doctor.audit.label_errors import box_iou, find_label_errors  # noqa: E402
from dataset_doctor.dataset.index import build_index  # noqa: E402

SCORE_TOOL = Path("/work/shared/tools/label_error_score.py")
KINDS = ("missing", "swapped", "mislocated", "spurious")


def plant(data_yaml: Path, out: Path, rate: float, seed: int) -> tuple[Path, dict[str, np.ndarray], int]:
    """Write OUT/dataset (planted val copy + manifest.json); return it, the clean val boxes per image stem and the
    number of classes."""
    rng = np.random.default_rng(seed)
    index = build_index(data_yaml, progress=False)
    if "val" not in index.splits or "train" not in index.splits:
        raise SystemExit("the dataset needs a train and a val split")
    images = index.images_in("val")
    stems = [Path(image).stem for image in images["image"]]
    if len(set(stems)) != len(stems):
        raise SystemExit("val images share stems: the score tool matches by stem")
    usable = index.usable_boxes("val")
    clean = {stem: usable.loc[usable["image_id"] == image_id, ["cls", "cx", "cy", "w", "h"]].to_numpy()
             for stem, image_id in zip(stems, images["image_id"])}
    all_boxes = np.concatenate([boxes for boxes in clean.values() if len(boxes)] or [np.zeros((0, 5))])
    count = max(1, round(rate * len(all_boxes)))
    # disjoint boxes for removed / swapped / mislocated; spurious boxes go into random images
    owners = [(stem, row) for stem, boxes in clean.items() for row in range(len(boxes))]
    chosen = rng.permutation(len(owners))[: 3 * count]
    plan = {(owners[k][0], owners[k][1]): KINDS[position // count] for position, k in enumerate(chosen)}

    root = out / "dataset"
    if root.exists():
        shutil.rmtree(root)
    (root / "images/val").mkdir(parents=True)
    (root / "labels/val").mkdir(parents=True)
    manifest = []
    spurious_in = rng.choice(stems, size=count, replace=True)
    for stem, image_path in zip(stems, images["path"]):
        target = root / "images/val" / Path(image_path).name
        try:
            os.link(image_path, target)
        except OSError:
            shutil.copyfile(image_path, target)
        lines = []
        for row, (cls, cx, cy, w, h) in enumerate(clean[stem]):
            kind = plan.get((stem, row))
            if kind == "missing":
                manifest.append({"type": "missing", "image": stem, "line": None, "box": [cx, cy, w, h]})
                continue
            if kind == "swapped":
                cls = (int(cls) + int(rng.integers(1, index.nc))) % index.nc if index.nc > 1 else cls
            if kind == "mislocated":
                cx, cy = _shifted(cx, cy, w, h, rng)
            lines.append(f"{int(cls)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            if kind in ("swapped", "mislocated"):
                manifest.append({"type": kind, "image": stem, "line": len(lines), "box": [cx, cy, w, h]})
        for _ in range(int((spurious_in == stem).sum())):
            box = _empty_spot(clean[stem], all_boxes, rng)
            if box is None:
                continue
            lines.append(f"{int(rng.integers(0, index.nc))} " + " ".join(f"{v:.6f}" for v in box))
            manifest.append({"type": "spurious", "image": stem, "line": len(lines), "box": list(box)})
        (root / "labels/val" / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    train = [str(source) for source in index.config.splits["train"]]
    names = "".join(f"  - {json.dumps(name)}\n" for name in index.names)  # indented: the score tool counts them
    (root / "data.yaml").write_text(f"train: {json.dumps(train)}\nval: images/val\nnames:\n{names}")
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"planted {len(manifest)} errors in {len(stems)} val images ({len(all_boxes)} boxes): "
          + ", ".join(f"{kind} {sum(m['type'] == kind for m in manifest)}" for kind in KINDS))
    return root, clean, index.nc


def _shifted(cx: float, cy: float, w: float, h: float, rng: np.random.Generator) -> tuple[float, float]:
    """The centre moved along x or y by a fraction f of the side: IoU (1 - f) / (1 + f), here 0.2-0.45."""
    fraction = rng.uniform(0.38, 0.67)
    sign = rng.choice([-1.0, 1.0])
    if rng.random() < 0.5:
        return float(np.clip(cx + sign * fraction * w, w / 2, 1 - w / 2)), cy
    return cx, float(np.clip(cy + sign * fraction * h, h / 2, 1 - h / 2))


def _empty_spot(boxes: np.ndarray, pool: np.ndarray, rng: np.random.Generator, tries: int = 50):
    """A box of a size seen in the dataset where it overlaps no box of the image (IoU < 0.05)."""
    for _ in range(tries):
        w, h = pool[rng.integers(len(pool)), 3:5] if len(pool) else (0.1, 0.1)
        box = np.array([rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2), w, h])
        if not len(boxes) or box_iou(np.repeat(box[None], len(boxes), 0), boxes[:, 1:5]).max() < 0.05:
            return [float(v) for v in box]
    return None


def synthetic_predictions(clean: dict[str, np.ndarray], nc: int, directory: Path, seed: int) -> None:
    """Predictions that know the clean labels (smoke test only): see the module docstring."""
    rng = np.random.default_rng(seed + 1)
    directory.mkdir(parents=True, exist_ok=True)
    for stem, boxes in clean.items():
        rows = []
        for cls, cx, cy, w, h in boxes:
            if rng.random() < 0.9:
                jitter = rng.normal(0, 0.03, 4) * [w, h, w, h]
                predicted = int(cls) if rng.random() < 0.95 or nc < 2 else int(rng.integers(0, nc))
                rows.append((predicted, cx + jitter[0], cy + jitter[1], w * (1 + jitter[2] / w),
                             h * (1 + jitter[3] / h), rng.beta(5, 2)))
                if rng.random() < 0.3:  # an NMS leftover
                    rows.append((predicted, cx, cy, w * 1.05, h * 1.05, rng.uniform(0.01, 0.2)))
            rows.append((int(rng.integers(0, nc)), cx, cy, w, h, rng.uniform(0.001, 0.02)))  # other classes, low
        for _ in range(int(rng.integers(5, 25))):  # background
            w, h = rng.uniform(0.02, 0.3, 2)
            rows.append((int(rng.integers(0, nc)), rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2), w, h,
                         rng.uniform(0.001, 0.08)))
        text = "".join(f"{c} {np.clip(x, 0, 1):.6f} {np.clip(y, 0, 1):.6f} {max(bw, 1e-4):.6f} {max(bh, 1e-4):.6f} "
                       f"{conf:.5f}\n" for c, x, y, bw, bh, conf in rows)
        (directory / f"{stem}.txt").write_text(text)


def copy_predictions(source: Path, stems: list[str], directory: Path) -> None:
    """The val images' prediction files, into OUT/predictions/val/ (a stem may also be in train)."""
    directory.mkdir(parents=True, exist_ok=True)
    found = 0
    for stem in stems:
        path = source / f"{stem}.txt"
        if path.is_file():
            shutil.copyfile(path, directory / path.name)
            found += 1
    if not found:
        raise SystemExit(f"no prediction file of a val image in {source}")
    print(f"{found} of {len(stems)} val images have a prediction file")


def speed(images: int = 5000, per_image: int = 30, labels_per_image: int = 8, nc: int = 10) -> None:
    """Time the engine alone on synthetic data of the size the issue asks for (median of 3)."""
    rng = np.random.default_rng(0)
    label_image = np.repeat(np.arange(images), labels_per_image)
    labels = np.column_stack([rng.integers(0, nc, len(label_image)), rng.uniform(0.1, 0.9, (len(label_image), 2)),
                              rng.uniform(0.02, 0.2, (len(label_image), 2))])
    predictions, prediction_image = [], []
    for _ in range(3):  # three predictions per label: one confident, two anywhere in confidence
        jittered = labels.copy()
        jittered[:, 1:3] += rng.normal(0, 0.005, (len(labels), 2))
        predictions.append(np.column_stack([jittered, rng.uniform(0.001, 1, len(labels))]))
        prediction_image.append(label_image)
    extra = images * (per_image - 3 * labels_per_image)
    predictions.append(np.column_stack([rng.integers(0, nc, extra), rng.uniform(0, 1, (extra, 2)),
                                        rng.uniform(0.01, 0.3, (extra, 2)), rng.uniform(0.001, 0.3, extra)]))
    prediction_image.append(np.repeat(np.arange(images), per_image - 3 * labels_per_image))
    table, owner = np.concatenate(predictions), np.concatenate(prediction_image)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        find_label_errors(label_image, labels, owner, table, nc)
        times.append(time.perf_counter() - start)
    print(f"engine: {images} images, {len(table) / images:.0f} predictions and {labels_per_image} labels each: "
          f"{sorted(times)[1]:.2f} s (median of 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_yaml", type=Path, nargs="?")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--predictions", type=Path, help="a model's val predictions (trained on clean train)")
    parser.add_argument("--synthetic", action="store_true", help="predictions from the clean labels: smoke test")
    parser.add_argument("--rate", type=float, default=0.03, help="share of val boxes planted, per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score-tool", type=Path, default=SCORE_TOOL)
    parser.add_argument("--speed", action="store_true", help="only time the engine on 5,000 synthetic images")
    args = parser.parse_args()
    if args.speed:
        speed()
        return
    if args.data_yaml is None or args.out is None or args.synthetic == (args.predictions is not None):
        parser.error("give data.yaml, --out and one of --predictions DIR / --synthetic")
    root, clean, nc = plant(args.data_yaml, args.out, args.rate, args.seed)
    predictions = args.out / "predictions"
    if predictions.exists():
        shutil.rmtree(predictions)
    if args.synthetic:
        print("SMOKE TEST: predictions synthesized from the clean labels; the score is not a result")
        synthetic_predictions(clean, nc, predictions / "val", args.seed)
    else:
        copy_predictions(args.predictions, list(clean), predictions / "val")
    audit_json, flags = args.out / "audit.json", args.out / "flags.json"
    doctor = [sys.executable, "-m", "dataset_doctor", "audit", str(root / "data.yaml"), "--predictions",
              str(predictions), "--json", str(audit_json), "--no-html", "--review-csv", str(args.out / "review.csv")]
    start = time.perf_counter()
    finished = subprocess.run(doctor, capture_output=True, text=True)
    if finished.returncode not in (0, 1):
        raise SystemExit(finished.stdout + finished.stderr)
    print(f"doctor audit --predictions: {time.perf_counter() - start:.1f} s")
    subprocess.run([sys.executable, str(args.score_tool), "doctor", str(audit_json), str(flags)], check=True)
    subprocess.run([sys.executable, str(args.score_tool), "score", str(root), str(flags), "doctor"], check=True)


if __name__ == "__main__":
    main()
