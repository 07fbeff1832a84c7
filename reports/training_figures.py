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
    figure = go.Figure([
        go.Bar(x=labels, y=list(train_ap50), name="train AP50", marker_color=TRAIN_COLOUR),
        go.Bar(x=labels, y=list(val_ap50), name="val AP50", marker_color=VAL_COLOUR),
        go.Bar(x=labels, y=list(train_ap50_95), name="train AP50-95", marker_color=TRAIN_COLOUR, visible=False),
        go.Bar(x=labels, y=list(val_ap50_95), name="val AP50-95", marker_color=VAL_COLOUR, visible=False),
    ])
    buttons = [{"label": "AP50", "method": "update", "args": [{"visible": [True, True, False, False]}]},
               {"label": "AP50-95", "method": "update", "args": [{"visible": [False, False, True, True]}]}]
    figure.update_layout(**{**_LAYOUT, "height": 420}, barmode="group", title="Train vs val AP per class",
                         xaxis={"type": "category", "title": "class"}, yaxis={"title": "AP", "range": [0, 1.02]},
                         updatemenus=[{"type": "buttons", "direction": "right", "x": 1, "xanchor": "right", "y": 1.15,
                                       "buttons": buttons}])
    return figure


def confusion_figure(confusion: Confusion) -> go.Figure:
    """Heatmap of the val confusion matrix: colour = share of each true class (column), text = counts."""
    labels = [plot_text(label) for label in confusion.labels]
    size = len(labels)
    column_totals = [sum(confusion.counts[row][column] for row in range(size)) for column in range(size)]
    shares = [[confusion.counts[row][column] / column_totals[column] if column_totals[column] else 0.0
               for column in range(size)] for row in range(size)]
    figure = go.Figure(go.Heatmap(
        z=shares, x=labels, y=labels, customdata=confusion.counts, colorscale="Blues", zmin=0, zmax=1,
        text=[[str(count) if count else "" for count in row] for row in confusion.counts], texttemplate="%{text}",
        hovertemplate="true %{x}<br>predicted %{y}<br>%{customdata} boxes (%{z:.0%} of true %{x})<extra></extra>",
        colorbar={"title": "share of true"}))
    side = min(900, 260 + 38 * size)
    figure.update_layout(**{**_LAYOUT, "height": side, "legend": {}}, title="Confusion matrix (val)",
                         xaxis={"type": "category", "title": "true class", "side": "bottom"},
                         yaxis={"type": "category", "title": "predicted class", "autorange": "reversed"})
    return figure


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
