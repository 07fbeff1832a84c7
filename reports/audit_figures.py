"""The audit report's plotly figures, built from AuditResult tables (and the index's image table).

Size stays bounded whatever the dataset: distributions are drawn from the percentiles the audit already
computed (box plots take q1 / median / q3 / fences directly), the centre heatmap, objects-per-image and image
sizes are aggregated here, and only the per-box scatter carries individual boxes, subsampled to
`max_points` per split with a note saying so.

Every user string placed in a figure (class names, file names) goes through `plot_text`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dataset_doctor.audit.box_stats import ALL_CLASSES, COCO_MEDIUM_AREA, COCO_SMALL_AREA
from dataset_doctor.audit.result import AuditResult
from reports.html import plot_text

SPLIT_COLOURS = {"train": "#2b6cb0", "val": "#dd6b20", "test": "#38a169"}
_OTHER_COLOURS = ("#805ad5", "#d53f8c", "#718096")
SIZE_COLOURS = {"small": "#e53e3e", "medium": "#ecc94b", "large": "#48bb78"}
SHIFT_FILL = "rgba(200, 30, 30, 0.09)"
SIDE_TICKS = [1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000]
ASPECT_TICKS = [0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1, 1.5, 2, 3, 5, 10, 20, 50]
HEATMAP_BINS = (8, 40)  # cells per side, fewest and most: about 5 boxes per cell on average in between
MAX_OBJECTS_BIN = 30  # objects-per-image bars go 0..29, then one bar for 30 or more
_LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 60}, "height": 420,
           "legend": {"orientation": "h", "y": -0.18}}


@dataclass(frozen=True)
class Figure:
    """A figure with the caption that explains how to read it."""

    figure: go.Figure
    caption: str


def split_colour(split: str, position: int) -> str:
    return SPLIT_COLOURS.get(split, _OTHER_COLOURS[position % len(_OTHER_COLOURS)])


def class_labels(names: list[str]) -> list[str]:
    """Escaped class names for a category axis, made unique (a repeated name gets its id appended)."""
    seen = Counter(names)
    return [plot_text(name if seen[name] == 1 else f"{name} (id {k})") for k, name in enumerate(names)]


def class_distribution(result: AuditResult) -> Figure:
    """Instances and images per class for every split; buttons switch the measure and a log scale."""
    labels = class_labels(result.classes)
    order = np.arange(len(labels))
    many = len(labels) > MANY_CLASSES
    if many:  # sorted by train instances (most first), so the long tail reads left to right
        sort_split = "train" if "train" in result.splits else result.splits[0]
        train = result.class_counts[result.class_counts["split"] == sort_split]["instances"].to_numpy()
        order = np.argsort(-train, kind="stable")
    labels = [labels[k] for k in order]
    figure = go.Figure()
    measures = ("instances", "images")
    for measure in measures:
        for position, split in enumerate(result.splits):
            counts = result.class_counts[result.class_counts["split"] == split]
            figure.add_bar(x=labels, y=counts[measure].to_numpy()[order], name=plot_text(split),
                           marker_color=split_colour(split, position), visible=measure == "instances",
                           hovertemplate=f"%{{x}}<br>{plot_text(split)}: %{{y:,}} {measure}<extra></extra>")
    count = len(result.splits)
    buttons = [{"label": label, "method": "update",
                "args": [{"visible": [m == measure for m in measures for _ in range(count)]},
                         {"yaxis.title.text": label}]}
               for measure, label in zip(measures, ("instances (usable boxes)", "images holding the class"))]
    scales = [{"label": "linear scale", "method": "relayout", "args": [{"yaxis.type": "linear"}]},
              {"label": "log scale", "method": "relayout", "args": [{"yaxis.type": "log"}]}]
    figure.update_layout(
        **_LAYOUT, barmode="group", title="Classes per split", yaxis_title="instances (usable boxes)",
        updatemenus=[_menu(buttons, 0.0), _menu(scales, 0.42)])
    figure.update_layout(margin={"t": 110}, title={"y": 0.97, "yanchor": "top"})
    if many:  # wide enough that every class keeps its label; the figure's box scrolls sideways
        figure.update_layout(width=wide_chart_width(len(labels), len(result.splits)),
                             xaxis={"type": "category", "tickangle": -60, "automargin": True})
    caption = ("Usable boxes (lines without an error, on readable images) per class. The buttons switch to images "
               "holding the class, and to a log scale for long-tailed datasets.")
    if many:
        caption += (f" {len(labels)} classes, sorted by {sort_split} instances (most first); scroll "
                    "sideways, and filter the table below by class name.")
    return Figure(figure, caption)


MANY_CLASSES = 25  # above this, per-class charts are sorted and wide enough to keep every label


def wide_chart_width(classes: int, bars_per_class: int) -> int:
    """Pixels for a bar chart of many classes: every label readable, the page scrolls the figure sideways."""
    return int(120 + classes * max(14, 7 * bars_per_class))


def box_distribution(result: AuditResult, measure: str) -> Figure:
    """Per class, box plots of box side (sqrt of area at imgsz) or aspect ratio, one box per split side by
    side, from the audit's percentiles: box from the 25th to the 75th, line at the median, whiskers at the 5th
    and 95th. Classes with a scale shift get a red band."""
    stats = result.box_stats[result.box_stats["class_id"] != ALL_CLASSES]
    labels = class_labels(result.classes)
    if measure == "side":
        # sqrt is monotonic, so percentiles of the area give those of the side (up to interpolation)
        values = {p: np.sqrt(stats[f"area_imgsz_p{p}"].to_numpy()) for p in (5, 25, 50, 75, 95)}
        title = f"Box size per class (side = sqrt(area) in px at --imgsz {result.options.imgsz})"
        axis, ticks = "box side, px at --imgsz (log)", SIDE_TICKS
    else:
        values = {p: stats[f"aspect_p{p}"].to_numpy() for p in (5, 25, 50, 75, 95)}
        title = "Box aspect ratio per class (width / height in pixels)"
        axis, ticks = "width / height (log)", ASPECT_TICKS
    figure = go.Figure()
    for position, split in enumerate(result.splits):
        chosen = ((stats["split"] == split) & (stats["instances"] > 0)).to_numpy()
        if not chosen.any():
            continue
        ids = stats["class_id"].to_numpy()[chosen]
        figure.add_box(
            x=[labels[k] for k in ids], q1=values[25][chosen], median=values[50][chosen], q3=values[75][chosen],
            lowerfence=values[5][chosen], upperfence=values[95][chosen], name=plot_text(split),
            marker_color=split_colour(split, position), boxpoints=False, hoverinfo="x+y+name")
    figure.update_layout(**_LAYOUT, title=title, boxmode="group",
                         yaxis={"type": "log", "title": axis, "tickvals": ticks},
                         xaxis={"categoryorder": "array", "categoryarray": labels})
    flagged = result.scale_shift.loc[result.scale_shift["flagged"], "class_id"].tolist()
    _shade_classes(figure, flagged, "scale shift")
    shift_note = (f" Red bands: classes whose val boxes differ in size from train (scale-shift: "
                  f"{', '.join(result.classes[k] for k in flagged)})." if flagged and measure == "side" else
                  " Red bands: classes with a scale shift." if flagged else "")
    if measure == "side":
        caption = ("Boxes span the 25th to 75th percentile, the line is the median, whiskers reach the 5th and "
                   f"95th. 32 px and 96 px at the original size are COCO's small / medium limits.{shift_note}")
    else:
        caption = ("1 is square, above 1 wider than tall. Same percentiles as above; the extreme-aspect check "
                   f"flags boxes beyond {result.options.max_aspect:g}:1 either way.{shift_note}")
    return Figure(figure, caption)


def box_scatter(result: AuditResult, max_points: int = 4000, seed: int = 0) -> Figure:
    """Width against height of individual boxes at imgsz (log-log), per split, subsampled for big datasets.

    SVG markers rather than WebGL: WebGL is missing in headless browsers and some remote desktops, and
    `max_points` keeps SVG fast."""
    geometry = result.box_geometry
    figure = go.Figure()
    rng = np.random.default_rng(seed)
    sampled = []
    names = np.asarray([plot_text(name) for name in result.classes] + [""], dtype=object)
    for position, split in enumerate(result.splits):
        rows = np.flatnonzero((geometry["split"].astype(str) == split).to_numpy())
        if not len(rows):
            continue
        if len(rows) > max_points:
            sampled.append(f"{max_points:,} of {len(rows):,} {split} boxes")
            rows = np.sort(rng.choice(rows, max_points, replace=False))
        part = geometry.iloc[rows]
        cls = part["cls"].to_numpy()
        where = [plot_text(f"{image}:{line}") for image, line in zip(part["image"], part["line"])]
        figure.add_scatter(
            x=part["width_imgsz"].to_numpy(), y=part["height_imgsz"].to_numpy(), mode="markers",
            name=plot_text(split), marker={"size": 4, "opacity": 0.5, "color": split_colour(split, position)},
            customdata=np.stack([names[np.clip(cls, 0, len(names) - 1)], np.asarray(where, dtype=object)], axis=1),
            hovertemplate="%{customdata[0]}<br>%{x:.1f} x %{y:.1f} px<br>%{customdata[1]}<extra></extra>")
    tiny = result.options.tiny_box_px
    figure.update_layout(**_LAYOUT, title=f"Every box: width and height in px at --imgsz {result.options.imgsz}",
                         xaxis={"type": "log", "title": "width, px (log)", "tickvals": SIDE_TICKS},
                         yaxis={"type": "log", "title": "height, px (log)", "tickvals": SIDE_TICKS})
    figure.add_vline(x=tiny, line={"dash": "dot", "color": "#c81e1e", "width": 1})
    figure.add_hline(y=tiny, line={"dash": "dot", "color": "#c81e1e", "width": 1})
    note = f" Subsampled at random: {'; '.join(sampled)}." if sampled else ""
    return Figure(figure, f"Dotted lines: the tiny-box limit ({tiny:g} px). Hover a point for its class and "
                          f"label line.{note}")


def size_categories(result: AuditResult) -> Figure:
    """COCO small / medium / large counts per class, stacked; a menu picks the split and the scale."""
    stats = result.box_stats[result.box_stats["class_id"] != ALL_CLASSES]
    labels = class_labels(result.classes)
    figure = go.Figure()
    views = []
    for split in result.splits:
        for suffix, scale in (("", "original size"), ("_imgsz", f"at --imgsz {result.options.imgsz}")):
            views.append(f"{split}, {scale}")
            rows = stats[stats["split"] == split]
            for size in ("small", "medium", "large"):
                figure.add_bar(x=labels, y=rows[f"{size}{suffix}"].to_numpy(), name=size,
                               marker_color=SIZE_COLOURS[size], visible=len(views) == 1, legendgroup=size,
                               showlegend=True,
                               hovertemplate=f"%{{x}}: %{{y:,}} {size} boxes<extra>{plot_text(views[-1])}</extra>")
    buttons = [{"label": plot_text(view), "method": "update",
                "args": [{"visible": [trace // 3 == position for trace in range(3 * len(views))]}]}
               for position, view in enumerate(views)]
    menu = {**_menu(buttons, 0.0), "type": "dropdown", "direction": "down"}
    figure.update_layout(**_LAYOUT, barmode="stack", title="Small / medium / large boxes per class (COCO sizes)",
                         yaxis_title="boxes", updatemenus=[menu])
    figure.update_layout(margin={"t": 110}, title={"y": 0.97, "yanchor": "top"})
    return Figure(figure, f"COCO's size classes: small below {int(COCO_SMALL_AREA ** 0.5)}² px of area, medium "
                          f"below {int(COCO_MEDIUM_AREA ** 0.5)}² px, large above. At the original size they say "
                          "how hard the photos are; at --imgsz, what the model sees after resizing.")


def centre_heatmap(result: AuditResult) -> Figure:
    """Where box centres fall in the image, per split, as the share of the split's boxes per cell."""
    splits = [s for s in result.splits if (result.box_geometry["split"].astype(str) == s).any()] or result.splits
    figure = make_subplots(rows=1, cols=len(splits), subplot_titles=[plot_text(s) for s in splits],
                           horizontal_spacing=0.06)
    parts = [result.box_geometry[(result.box_geometry["split"].astype(str) == split).to_numpy()] for split in splits]
    smallest = min((len(part) for part in parts if len(part)), default=0)
    bins = int(np.clip(np.sqrt(smallest / 5), *HEATMAP_BINS))
    edges = np.linspace(0, 1, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    shares = []
    for part in parts:
        counts, _, _ = np.histogram2d(np.clip(part["cy"].to_numpy(), 0, 1), np.clip(part["cx"].to_numpy(), 0, 1),
                                      bins=[edges, edges])
        shares.append(counts / max(counts.sum(), 1) * 100)
    top = max((float(share.max()) for share in shares), default=1.0) or 1.0
    for column, share in enumerate(shares, 1):
        figure.add_heatmap(z=share, x=centres, y=centres, colorscale="Viridis", zmin=0, zmax=top,
                           showscale=column == len(splits), colorbar={"title": "% of boxes"}, row=1, col=column,
                           hovertemplate="x %{x:.2f}, y %{y:.2f}: %{z:.2f}% of boxes<extra></extra>")
        figure.update_xaxes(range=[0, 1], constrain="domain", row=1, col=column, title_text="x (0 = left)")
        figure.update_yaxes(range=[1, 0], scaleanchor=f"x{column if column > 1 else ''}", row=1, col=column,
                            title_text="y (0 = top)" if column == 1 else None)
    figure.update_layout(**{**_LAYOUT, "height": 400}, title="Box centres in the image (share of boxes per cell)")
    return Figure(figure, f"Normalised centre positions, as the image is seen (top at the top), {bins} x {bins} "
                          "cells on one colour scale. Train and val should look alike; a hot spot in one only is a "
                          "sign of a different camera or crop.")


def objects_per_image(result: AuditResult, images: pd.DataFrame) -> Figure:
    """Share of each split's readable images holding 0, 1, 2, ... usable boxes."""
    counts = np.bincount(result.box_geometry["image_id"].to_numpy(), minlength=len(images))
    readable = images["readable"].to_numpy()
    figure = go.Figure()
    for position, split in enumerate(result.splits):
        in_split = (images["split"].astype(str) == split).to_numpy() & readable
        if not in_split.any():
            continue
        per_image = np.minimum(counts[in_split], MAX_OBJECTS_BIN)
        histogram = np.bincount(per_image, minlength=MAX_OBJECTS_BIN + 1)
        top = int(per_image.max()) + 1
        share = histogram[:top] / in_split.sum() * 100
        ticks = [str(k) for k in range(top)]
        if top == MAX_OBJECTS_BIN + 1:
            ticks[-1] = f"{MAX_OBJECTS_BIN}+"
        figure.add_bar(x=ticks, y=share, name=plot_text(split), marker_color=split_colour(split, position),
                       customdata=histogram[:top],
                       hovertemplate=f"{plot_text(split)}: %{{customdata:,}} images with %{{x}} boxes "
                                     "(%{y:.1f}%)<extra></extra>")
    figure.update_layout(**_LAYOUT, barmode="group", title="Boxes per image",
                         xaxis={"title": "usable boxes in the image", "type": "category"},
                         yaxis_title="% of the split's readable images")
    return Figure(figure, "0 is background images (no usable box). Crowded images in one split only make the two "
                          "splits hard to compare.")


def image_sizes(result: AuditResult, images: pd.DataFrame) -> Figure:
    """Image width against height, one marker per distinct size and split, its area by the image count."""
    readable = images[images["readable"].to_numpy()]
    figure = go.Figure()
    grouped = (readable.assign(split=readable["split"].astype(str))
               .groupby(["split", "width", "height"], observed=True).size().rename("count").reset_index())
    for position, split in enumerate(result.splits):
        part = grouped[grouped["split"] == split]
        if part.empty:
            continue
        figure.add_scatter(
            x=part["width"].to_numpy(), y=part["height"].to_numpy(), mode="markers", name=plot_text(split),
            marker={"size": np.clip(6 * np.sqrt(part["count"].to_numpy()), 6, 40), "opacity": 0.55,
                    "color": split_colour(split, position)},
            customdata=part["count"].to_numpy(),
            hovertemplate="%{x} x %{y} px: %{customdata:,} images<extra>" + plot_text(split) + "</extra>")
    figure.update_layout(**_LAYOUT, title="Image sizes", xaxis_title="width, px", yaxis_title="height, px")
    return Figure(figure, f"Each marker is one size (area grows with the number of images). Training letterboxes "
                          f"every image to --imgsz {result.options.imgsz} on its long side.")


def _menu(buttons: list[dict], x: float) -> dict:
    return {"type": "buttons", "direction": "right", "buttons": buttons, "x": x, "xanchor": "left", "y": 1.16,
            "yanchor": "top", "showactive": True, "pad": {"r": 4, "t": 0}}


def _shade_classes(figure: go.Figure, class_ids: list[int], text: str) -> None:
    """A band behind each listed class on a category x axis (category k sits at position k)."""
    for k in class_ids:
        figure.add_vrect(x0=k - 0.5, x1=k + 0.5, fillcolor=SHIFT_FILL, line_width=0, layer="below",
                         annotation_text=text, annotation_position="top", annotation_font_color="#c81e1e",
                         annotation_font_size=11)
