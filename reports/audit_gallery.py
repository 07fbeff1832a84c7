"""Pictures for the audit report: a finding's image with its boxes and the offending one highlighted, and
duplicate / leaked images side by side with their match.

A finding names its label file and line; the index's box table holds every parsed line with its line number,
so line -> box is a lookup. Lines that could not be parsed have no box: the caption says so. Images that
cannot be decoded, and label files without an image, get a grey tile that says why.
All markup comes from reports.html (escaped); labels drawn into the pictures go through OpenCV (ASCII only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dataset_doctor.audit.label_errors import LABEL_ERROR_CHECKS
from dataset_doctor.audit.result import AuditResult
from dataset_doctor.audit.terminal import location
from dataset_doctor.dataset.images import DEFAULT_MAX_PIXELS
from dataset_doctor.dataset.index import DatasetIndex
from reports.html import escape, thumbnail_figure
from reports.thumbnails import (
    GROUND_TRUTH,
    HIGHLIGHT,
    DrawnBox,
    class_colour,
    draw_boxes,
    encode_jpeg,
    load_thumbnail,
    pad_to_fit,
    placeholder,
)

THUMBNAIL_SIDE = 300  # px, the gallery's display width: sharp on screen, ~15-25 kB as JPEG
JPEG_QUALITY = 75
MARK_BELOW_PX = 6  # a highlighted box smaller than this on the thumbnail also gets a ring around it
CAPTION_CHARS = 180
PAIR_CHECKS = ("duplicate-image", "split-leak")
LINE_CHECKS = ("malformed-line", "class-out-of-range", "out-of-bounds", "degenerate-box", "duplicate-box", "tiny-box",
               "extreme-aspect")  # shown as pairs in the comparison section, not one by one


@dataclass(frozen=True)
class Picture:
    """One picture with its caption (plain text; escaped when rendered)."""

    jpeg: bytes
    caption: str

    def html(self) -> str:
        return thumbnail_figure(self.jpeg, self.caption)


class ImageLookup:
    """Image rows and boxes of the index, by (split, relative image path) or image id."""

    def __init__(self, index: DatasetIndex):
        self.index = index
        images = index.images
        self._rows = {(str(split), image): row for row, (split, image)
                      in enumerate(zip(images["split"].astype(str), images["image"]))}
        self._box_ids = index.boxes["image_id"].to_numpy()

    def image_id(self, split: str | None, image: str | None) -> int | None:
        if image is None or (isinstance(image, float) and pd.isna(image)):
            return None
        return self._rows.get((str(split), image))

    def boxes_of(self, image_id: int) -> pd.DataFrame:
        start, stop = np.searchsorted(self._box_ids, [image_id, image_id + 1])  # the box table is by image id
        return self.index.boxes.iloc[start:stop]

    def render(self, image_id: int, highlight_lines: set[int] | frozenset[int] = frozenset(),
               highlight_polygons: bool = False, class_colours: bool = False) -> np.ndarray:
        """The image with every parsed box, highlighted lines thick in red and labelled with line and class;
        the other boxes thin, in green (or in their class colours, to compare two labellings)."""
        row = self.index.images.iloc[image_id]
        image = load_thumbnail(str(row["path"]), THUMBNAIL_SIDE) if row["readable"] else None
        if image is None:
            too_large = int(row["width"]) * int(row["height"]) > DEFAULT_MAX_PIXELS
            reason = str(row["image_error"] or ("too many pixels to decode for a picture" if too_large
                                                else "cannot decode the image"))
            return placeholder(reason, (THUMBNAIL_SIDE, THUMBNAIL_SIDE * 2 // 3))
        names, boxes = self.index.names, []
        height, width = image.shape[:2]
        for box in self.boxes_of(image_id).itertuples(index=False):
            cls = int(box.cls)
            hot = int(box.line) in highlight_lines or (highlight_polygons and bool(box.polygon))
            if hot:
                known = 0 <= cls < len(names)
                small = min(abs(box.w) * width, abs(box.h) * height) < MARK_BELOW_PX
                label = f"line {int(box.line)}: " + (str(names[cls]) if known else f"class {cls}?")
                boxes.append(DrawnBox(box.cx, box.cy, box.w, box.h, label, HIGHLIGHT, 2, marker=small))
            else:
                colour = class_colour(max(cls, 0)) if class_colours else GROUND_TRUTH
                boxes.append(DrawnBox(box.cx, box.cy, box.w, box.h, colour=colour))
        boxes.sort(key=lambda b: b.colour == HIGHLIGHT)  # the highlighted box on top
        image, boxes = pad_to_fit(image, boxes)
        return draw_boxes(image, boxes)


def finding_pictures(result: AuditResult, lookup: ImageLookup, per_check: int) -> dict[str, list[Picture]]:
    """For each check whose findings are about an image or a label file, pictures of its first `per_check`
    (not the label-error checks: their section draws the label and the model's box side by side)."""
    pictures: dict[str, list[Picture]] = {}
    findings = result.findings
    located = findings[findings["image"].notna() | findings["label"].notna()]
    for check, group in located.groupby("check", sort=False):
        if check in PAIR_CHECKS or check in LABEL_ERROR_CHECKS:
            continue
        pictures[check] = [_finding_picture(finding, lookup) for finding in group.head(per_check).itertuples()]
    return pictures


def _finding_picture(finding, lookup: ImageLookup) -> Picture:
    where = location(finding.image, finding.label, finding.line)
    caption = _shorten(f"{where}: {finding.message}")
    image_id = lookup.image_id(finding.split, finding.image)
    if image_id is None:
        tile = placeholder("no image for this label file" if finding.check == "orphan-label" else "no image")
        return Picture(encode_jpeg(tile, JPEG_QUALITY), caption)
    line = None if pd.isna(finding.line) else int(finding.line)
    lines = {line} if line is not None else set()
    polygons = finding.check in ("mixed-label-types", "segment-label")  # the finding is about every polygon
    picture = lookup.render(image_id, set() if polygons else lines, highlight_polygons=polygons)
    if line is not None and not (lookup.boxes_of(image_id)["line"] == line).any():
        caption = _shorten(f"{where}: line {line} holds no box to draw. {finding.message}")
    return Picture(encode_jpeg(picture, JPEG_QUALITY), caption)


def pair_pictures(result: AuditResult, lookup: ImageLookup, per_check: int) -> list[tuple[str, Picture, Picture]]:
    """(check, earlier image, later image) for the first `per_check` pairs of duplicate-image and split-leak."""
    pairs = []
    for check in PAIR_CHECKS:
        selected = result.duplicate_pairs[result.duplicate_pairs["check"] == check].head(per_check)
        for row in selected.itertuples(index=False):
            how = "same bytes" if row.match == "exact" else (
                "same file" if row.match == "same file" else f"near-identical, {row.distance} hash bits differ")
            first = Picture(encode_jpeg(lookup.render(int(row.image_id_a), class_colours=True), JPEG_QUALITY),
                            f"{row.split_a}: {row.image_a}")
            second = Picture(encode_jpeg(lookup.render(int(row.image_id_b), class_colours=True), JPEG_QUALITY),
                             f"{row.split_b}: {row.image_b} ({how})")
            pairs.append((check, first, second))
    return pairs


def highlight_note(check: str) -> str:
    """What the red marks in a check's pictures mean."""
    if check in ("mixed-label-types", "segment-label"):
        return "Red: the boxes converted from polygons; green: the other boxes."
    if check in LINE_CHECKS:
        return "Red: the box on the finding's line (lines that hold no box are named in the caption); green: the " \
               "image's other boxes."
    if check in ("missing-label", "empty-label"):
        return "No box: these images train as background."
    return ""


def gallery_html(pictures: list[Picture]) -> str:
    return f'<div class="gallery">{"".join(p.html() for p in pictures)}</div>'


def pairs_html(pairs: list[tuple[str, Picture, Picture]]) -> str:
    """Each pair in one row: earlier image left, the repeat right."""
    rows = [f'<div class="pair-row"><p class="note">{escape(check)}</p>'
            f'<div class="pair" data-check="{escape(check)}">{first.html()}{second.html()}</div></div>'
            for check, first, second in pairs]
    return f'<div class="pairs">{"".join(rows)}</div>'


def _shorten(text: str) -> str:
    return text if len(text) <= CAPTION_CHARS else text[: CAPTION_CHARS - 1] + "…"
