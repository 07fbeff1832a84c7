"""The plotly figures of the training report. Every class name goes through `plot_text` (plotly renders some
HTML in text), and class axes are categorical, so classes named "1" or "2024" are not read as numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from reports.html import plot_text
from reports.training_run import Confusion

TRAIN_COLOUR, VAL_COLOUR = "#9fb3c8", "#2b6cb0"
LOSS_COLOURS = {"box_loss": "#c05621", "cls_loss": "#2b6cb0", "dfl_loss": "#2f855a"}
_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "height": 380,
           "legend": {"orientation": "h", "y": -0.2}}


def loss_figure(results: Sequence[dict[str, Any]]) -> go.Figure:
    """Mean training losses per epoch (before their gains), one line each."""
    epochs = [row["epoch"] for row in results]
    figure = go.Figure([go.Scatter(x=epochs, y=[row.get(column) for row in results], mode="lines+markers",
                                   name=column.replace("_loss", " loss"), line={"color": colour})
                        for column, colour in LOSS_COLOURS.items()])
    figure.update_layout(**_LAYOUT, title="Training losses per epoch", xaxis=_epoch_axis(epochs), yaxis_title="loss")
    return figure


def map_figure(results: Sequence[dict[str, Any]], best_epoch: int | None) -> go.Figure:
    """Train (dashed) and val (solid) mAP50 and mAP50-95 on the same axes: a widening gap is overfitting."""
    rows = [row for row in results if row.get("val_map50") is not None]
    epochs = [row["epoch"] for row in rows]
    traces = []
    for split, colour, dash in (("train", TRAIN_COLOUR, "dash"), ("val", VAL_COLOUR, "solid")):
        for metric, label, width in (("map50", "mAP50", 2.5), ("map50_95", "mAP50-95", 1.5)):
            traces.append(go.Scatter(x=epochs, y=[row.get(f"{split}_{metric}") for row in rows], mode="lines+markers",
                                     name=f"{split} {label}", line={"color": colour, "dash": dash, "width": width},
                                     marker={"symbol": "circle" if metric == "map50" else "square"}))
    figure = go.Figure(traces)
    if best_epoch is not None:
        figure.add_vline(x=best_epoch, line={"color": "#2f855a", "dash": "dot"},
                         annotation_text=f"best epoch {best_epoch}", annotation_position="top left")
    figure.update_layout(**_LAYOUT, title="Train vs val mAP per evaluated epoch", xaxis=_epoch_axis(epochs),
                         yaxis={"title": "mAP", "range": [0, 1.02]})
    return figure


def _epoch_axis(epochs: Sequence[int]) -> dict[str, Any]:
    """Whole epochs only on the axis (a 3-epoch run shows 1, 2, 3, not 1.5)."""
    return {"title": "epoch", "tick0": 1, "dtick": max(1, math.ceil(len(epochs) / 12))}


def per_class_ap_figure(classes: Sequence[str], train_ap50: Sequence[float | None], val_ap50: Sequence[float | None],
                        train_ap50_95: Sequence[float | None], val_ap50_95: Sequence[float | None]) -> go.Figure:
    """Grouped bars of train vs val AP per class; buttons switch between AP50 and AP50-95."""
    labels = [plot_text(name) for name in classes]
    order = list(range(len(labels)))
    many = len(labels) > MANY_CLASSES
    if many:  # sorted by val AP50, best first and unmeasured last: the weak tail reads at the right end
        order.sort(key=lambda k: (val_ap50[k] is None, -(val_ap50[k] or 0.0)))

    def ordered(values: Sequence[Any]) -> list[Any]:
        return [values[k] for k in order]

    labels = ordered(labels)
    figure = go.Figure([
        go.Bar(x=labels, y=ordered(train_ap50), name="train AP50", marker_color=TRAIN_COLOUR),
        go.Bar(x=labels, y=ordered(val_ap50), name="val AP50", marker_color=VAL_COLOUR),
        go.Bar(x=labels, y=ordered(train_ap50_95), name="train AP50-95", marker_color=TRAIN_COLOUR, visible=False),
        go.Bar(x=labels, y=ordered(val_ap50_95), name="val AP50-95", marker_color=VAL_COLOUR, visible=False),
    ])
    buttons = [{"label": "AP50", "method": "update", "args": [{"visible": [True, True, False, False]}]},
               {"label": "AP50-95", "method": "update", "args": [{"visible": [False, False, True, True]}]}]
    figure.update_layout(**{**_LAYOUT, "height": 420}, barmode="group", title="Train vs val AP per class",
                         xaxis={"type": "category", "title": "class"}, yaxis={"title": "AP", "range": [0, 1.02]},
                         updatemenus=[{"type": "buttons", "direction": "right", "x": 1, "xanchor": "right", "y": 1.15,
                                       "buttons": buttons}])
    if many:
        figure.update_layout(width=int(120 + 16 * len(labels)), title="Train vs val AP per class (sorted by val AP50)",
                             xaxis={"type": "category", "title": "class", "tickangle": -60, "automargin": True})
    return figure


def confusion_figure(confusion: Confusion) -> go.Figure:
    """Heatmap of the val confusion matrix: colour = share of each true class (column), text = counts."""
    labels = [plot_text(label) for label in confusion.labels]
    size = len(labels)
    column_totals = [sum(confusion.counts[row][column] for row in range(size)) for column in range(size)]
    shares = [[confusion.counts[row][column] / column_totals[column] if column_totals[column] else 0.0
               for column in range(size)] for row in range(size)]
    many = size > MANY_CLASSES
    # Counts printed in every cell only while they fit; with a hundred classes they are in the hover.
    text = None if many else [[str(count) if count else "" for count in row] for row in confusion.counts]
    figure = go.Figure(go.Heatmap(
        z=shares, x=labels, y=labels, customdata=confusion.counts, colorscale="Blues", zmin=0, zmax=1,
        text=text, texttemplate=None if many else "%{text}", xgap=1 if many else 0, ygap=1 if many else 0,
        hovertemplate="true %{x}<br>predicted %{y}<br>%{customdata} boxes (%{z:.0%} of true %{x})<extra></extra>",
        colorbar={"title": "share of true"}))
    side = min(900, 260 + 38 * size) if not many else 260 + 14 * size  # 14 px a row: labels stay readable
    axis = {"type": "category", "tickfont": {"size": 10}, "automargin": True, "dtick": 1} if many else {}
    figure.update_layout(**{**_LAYOUT, "height": side, "legend": {}}, title="Confusion matrix (val)",
                         xaxis={"type": "category", "title": "true class", "side": "bottom", **axis,
                                **({"tickangle": -90} if many else {})},
                         yaxis={"type": "category", "title": "predicted class", "autorange": "reversed", **axis})
    if many:
        figure.update_layout(width=side + 120)
    return figure


MANY_CLASSES = 25  # above this, per-class charts are sorted and widened, the heatmap drops its cell texts


def most_confused_pairs(confusion: Confusion, count: int = 20) -> list[dict[str, Any]]:
    """The largest off-diagonal cells between two classes (background left out): true, predicted, boxes, and the
    share of the true class's val boxes, most boxes first. What a reader of a 100 x 100 matrix looks for."""
    labels, counts = confusion.labels, confusion.counts
    size = len(labels)
    classes = range(size - 1)  # the last label is background
    column_totals = [sum(counts[row][column] for row in range(size)) for column in range(size)]
    pairs = [(counts[predicted][true], true, predicted) for true in classes for predicted in classes
             if predicted != true and counts[predicted][true]]
    pairs.sort(key=lambda item: (-item[0], item[1], item[2]))
    return [{"true class": labels[true], "predicted as": labels[predicted], "boxes": int(boxes),
             "share of true": boxes / column_totals[true] if column_totals[true] else 0.0}
            for boxes, true, predicted in pairs[:count]]


def pr_figure(pr_curves: dict[str, Any], ap50: dict[str, float | None]) -> go.Figure:
    """Precision-recall curve per class at IoU 0.5 (val), AP50 in the legend."""
    recall = pr_curves.get("recall", [])
    traces = []
    for name, precision in pr_curves.get("precision", {}).items():
        value = ap50.get(name)
        label = f"{name} (AP50 {value:.2f})" if value is not None else name
        traces.append(go.Scatter(x=recall, y=precision, mode="lines", name=plot_text(label)))
    figure = go.Figure(traces)
    figure.update_layout(**{**_LAYOUT, "height": 440, "legend": {"orientation": "v"}},
                         title="Precision-recall per class (val, IoU 0.5)",
                         xaxis={"title": "recall", "range": [0, 1]}, yaxis={"title": "precision", "range": [0, 1.02]})
    return figure
