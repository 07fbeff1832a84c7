"""The training report of a classifier run (trainer/classify_loop.py's run directory) as one self-contained page.

Read from the run's files only (results.csv, metrics.json, val_predictions.csv), so it can be rebuilt any time:
- a verdict: design.md section 5's reading of train against val, both measured the same way, for accuracy:
  high / high fine; high train, low val: overfitting or a train / val shift (the audit's size-shift and leak
  findings are the first things to check); low / low: wrong labels, too few images, or a model too small or
  trained too short; and per class the same reading on per-class recall (the class's own accuracy);
- the run's settings (class weights on or off, sampler, label smoothing: weights and sampler compound);
- loss and train / val top-1 and top-5 per epoch;
- per-class train vs val accuracy (recall), precision and images;
- the most confused class pairs of val, with an example image of each;
- the most confident wrong val predictions: label-error suspects (the classification counterpart of the
  model-assisted label audit): a confident model that disagrees with the folder is often right.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from reports.html import Page, thumbnail_figure
from reports.thumbnails import encode_jpeg, load_thumbnail, placeholder

REPORT_FILE = "report.html"
GOOD, LOW = 0.8, 0.5  # top-1 / per-class accuracy read as high at or above GOOD, low below LOW... between: fair
GAP = 0.15  # train - val accuracy above this: the model does better on what it trained on
SUSPECTS_SHOWN = 12
PAIRS_SHOWN = 6


def classify_diagnosis(train: float, val: float) -> tuple[str, str]:
    """(verdict, advice) for a train and a val accuracy measured the same way (design.md section 5)."""
    if train >= GOOD and val >= GOOD and train - val <= GAP:
        return "fine", "train and val agree and are high; if results in use are poor, val is not representative"
    if train - val > GAP:
        return ("overfitting or shift", "train is learnt but val is not: more or more varied train images, "
                "stronger augmentation, or check for a train/val shift (doctor audit: size-shift, split-leak)")
    if train < LOW:
        return ("underfitting", "train itself is not learnt: check the labels (doctor audit, the wrong-but-sure "
                "list below), add images, train longer or use a larger --model")
    return "fair", "neither clearly fine nor clearly failing: train longer and compare again"


def write_classify_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    return build_classify_report(run_dir).write(run_dir / REPORT_FILE)


def build_classify_report(run_dir: Path) -> Page:
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    results = pd.read_csv(run_dir / "results.csv")
    names = metrics["classes"]
    train, val = metrics["train"], metrics["val"]
    page = Page(f"Classifier training: {run_dir.name}",
                subtitle=f"{run_dir} · {len(names)} classes · {len(results)} epochs")
    verdict, advice = classify_diagnosis(train["top1"], val["top1"])
    page.section("Verdict", "verdict")
    page.paragraph(f"{verdict}: train top-1 {train['top1']:.3f}, val top-1 {val['top1']:.3f} "
                   f"(top-5 {val['top5']:.3f}); {advice}.")
    weights = metrics["class_weights"]
    page.paragraph(f"Settings: class weights {'on' if weights['on'] else 'off'} ({weights['method']}), sampler "
                   f"{metrics['sampler']}, label smoothing {metrics['label_smoothing']:g}. Class weights and the "
                   "balanced sampler both favour rare classes; together they compound.", note=True)

    page.section("Curves", "curves")
    figure = go.Figure()
    for column in ("train_top1", "val_top1", "train_top5", "val_top5"):
        figure.add_scatter(x=results["epoch"], y=results[column], mode="lines+markers", name=column)
    figure.update_layout(title="Accuracy per epoch", xaxis_title="epoch", yaxis_title="accuracy",
                         yaxis_range=[0, 1.02])
    page.figure(figure)
    loss = go.Figure()
    loss.add_scatter(x=results["epoch"], y=results["train_loss"], mode="lines+markers", name="train loss")
    loss.update_layout(title="Training loss", xaxis_title="epoch", yaxis_title="cross-entropy")
    page.figure(loss)

    page.section("Per class", "classes")
    table = _per_class_table(names, train, val, weights["weights"])
    bars = go.Figure()
    bars.add_bar(x=names, y=table["train accuracy"], name="train")
    bars.add_bar(x=names, y=table["val accuracy"], name="val")
    bars.update_layout(barmode="group", title="Accuracy per class (recall: its images classified right)",
                       yaxis_range=[0, 1.02])
    page.figure(bars)
    page.table(table, float_format="{:.3f}")

    predictions = _read_predictions(run_dir)
    page.section("Most confused pairs", "confused")
    confusion = np.asarray(val["confusion"], dtype=np.int64)
    pairs = _confused_pairs(confusion, PAIRS_SHOWN)
    if not pairs:
        page.paragraph("No val image is misclassified.")
    else:
        cells = []
        for true, predicted, count in pairs:
            example = next((row for row in predictions if row["true"] == names[true]
                            and row["class1"] == names[predicted]), None)
            caption = f"{count} '{names[true]}' taken for '{names[predicted]}'"
            cells.append(_thumbnail(example["image"] if example else None, caption))
        page.html(f'<div class="gallery">{"".join(cells)}</div>')

    page.section("Most confident wrong val predictions", "suspects")
    wrong = sorted((row for row in predictions if row["class1"] != row["true"]), key=lambda r: -float(r["prob1"]))
    if not wrong:
        page.paragraph("None: every val image is classified as its folder says.")
    else:
        page.paragraph("Label-error suspects first: a confident model that disagrees with the class folder is "
                       "often right. Check these images before blaming the model.", note=True)
        page.html('<div class="gallery">' + "".join(
            _thumbnail(row["image"], f"folder '{row['true']}', model '{row['class1']}' {float(row['prob1']):.2f}")
            for row in wrong[:SUSPECTS_SHOWN]) + "</div>")
    return page


def _per_class_table(names: list[str], train: dict, val: dict, weights: list[float]) -> pd.DataFrame:
    rows = []
    for k, name in enumerate(names):
        t, v = train["per_class"][k], val["per_class"][k]
        verdict = classify_diagnosis(t["recall"], v["recall"])[0] if v["support"] and t["support"] else \
            "not measured" if not v["support"] else "no train images"
        rows.append({"class": name, "train images": t["support"], "val images": v["support"],
                     "train accuracy": t["recall"], "val accuracy": v["recall"], "val precision": v["precision"],
                     "class weight": weights[k], "diagnosis": verdict})
    return pd.DataFrame(rows)


def _confused_pairs(confusion: np.ndarray, count: int) -> list[tuple[int, int, int]]:
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(-off, axis=None, kind="stable")[:count]
    return [(int(i), int(j), int(off[i, j])) for i, j in zip(*np.unravel_index(order, off.shape)) if off[i, j] > 0]


def _read_predictions(run_dir: Path) -> list[dict]:
    path = run_dir / "val_predictions.csv"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _thumbnail(path: str | None, caption: str) -> str:
    image = load_thumbnail(path, 160) if path else None
    if image is None:
        image = placeholder("no image", (160, 120))
    return thumbnail_figure(encode_jpeg(image, 85), caption)
