"""The "likely label errors" block of a report: the model-assisted label audit's suspects
(dataset_doctor/audit/checks_predictions.label_suspects), best score first, filterable by type and by class.

Used by the audit report (`doctor audit --predictions`) and by the training report / `doctor diagnose` (the
run's val predictions). The first `pictures` suspects get a picture; the rest are rows of a table (at most
`max_rows`), so a big dataset's report stays small; `label_review.csv` and the JSON hold every suspect.

Each picture is two panels of the same crop around the suspect, side by side: left the label (its box red, with
its line), right the model's box (blue); the image's other labels thin green. Crops, not whole images, because
a suspect is often a small box. They are drawn with the report's thumbnail code (reports/thumbnails.py) from the
index's boxes (audit_gallery.ImageLookup).

Filtering is client-side (a script of this module, no network): two selects, and a link can preselect them with
`#<anchor>?class=<id>&check=<check>` (`suspects_link`), which is how the training report's per-class diagnosis
points at a class's suspects. Every user string (class and file names, messages) is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd

from dataset_doctor.audit.label_errors import LABEL_ERROR_CHECKS
from dataset_doctor.audit.terminal import location
from dataset_doctor.dataset.images import DEFAULT_MAX_PIXELS
from reports.audit_gallery import JPEG_QUALITY, ImageLookup
from reports.html import escape, image_data_uri
from reports.thumbnails import GROUND_TRUTH, HIGHLIGHT, PREDICTION, DrawnBox, draw_boxes, encode_jpeg, load_thumbnail
from reports.thumbnails import placeholder as placeholder_tile

SUSPECT_PICTURES = 200  # suspects shown with a picture; the rest are table rows
MAX_SUSPECT_ROWS = 5000  # table rows after the pictures; label_review.csv and the JSON have them all
PANEL_SIDE = 170  # px, each of the two panels of a picture (~6-9 kB per picture as JPEG)
SOURCE_SIDE = 1024  # images are decoded at most this large before cropping (a crop of a small box stays sharp)
CONTEXT = 2.0  # the crop is this many times the suspect's boxes (their union), so the object's surroundings show
MIN_CROP_PX = 48  # ... and at least this many source pixels on a side
_CACHED_IMAGES = 8  # decoded images kept while drawing (suspects of one image are often neighbours in the ranking)
_KIND = {"missing-box": "an object nobody boxed", "wrong-class": "a box of the wrong class",
         "mislocated-box": "a box in the wrong place", "spurious-box": "a box around nothing"}

STYLE = """
.label-errors .suspect-tools { margin: 8px 0; display: flex; flex-wrap: wrap; gap: 14px; align-items: center; }
.label-errors .suspect-tools select { padding: 3px 6px; max-width: 320px; }
.label-errors .legend span { display: inline-block; margin-right: 14px; font-size: 13px; }
.label-errors .legend i { display: inline-block; width: 14px; height: 10px; margin-right: 5px; border: 2px solid; }
.label-errors .suspects { display: flex; flex-wrap: wrap; gap: 14px; margin: 10px 0; }
.label-errors .suspect { width: 340px; margin: 0; border-bottom: 1px solid var(--line); padding-bottom: 8px; }
.label-errors .suspect img { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px;
                             display: block; }
.label-errors .suspect p { margin: 3px 0; font-size: 12px; word-break: break-all; }
.label-errors .suspect .score { font-weight: 700; }
"""

_SCRIPT = """
(function () {
  document.querySelectorAll('div.label-errors').forEach(function (box) {
    var check = box.querySelector('select.suspect-check'), cls = box.querySelector('select.suspect-class'),
        count = box.querySelector('.suspect-count'), items = Array.from(box.querySelectorAll('.suspect-item'));
    function apply() {
      var shown = 0;
      items.forEach(function (item) {
        var ok = (!check.value || item.dataset.check === check.value) &&
                 (!cls.value || item.dataset.classes.split(' ').indexOf(cls.value) >= 0);
        item.style.display = ok ? '' : 'none';
        if (ok) { shown += 1; }
      });
      count.textContent = shown + ' of ' + items.length + ' shown';
    }
    function choose(select, value) {
      var known = value !== null && Array.from(select.options).some(function (o) { return o.value === value; });
      select.value = known ? value : '';
    }
    function fromHash() {
      var hash = location.hash.slice(1), at = hash.indexOf('?');
      if (at < 0 || decodeURIComponent(hash.slice(0, at)) !== box.dataset.anchor) { return; }
      var params = new URLSearchParams(hash.slice(at + 1));
      choose(check, params.get('check'));
      choose(cls, params.get('class'));
      apply();
      box.scrollIntoView();
    }
    check.addEventListener('change', apply);
    cls.addEventListener('change', apply);
    window.addEventListener('hashchange', fromHash);
    apply();
    // the scroll waits for the page's figures and pictures, which move the section down as they render
    if (document.readyState === 'complete') { fromHash(); } else { window.addEventListener('load', fromHash); }
  });
})();
"""


def suspects_link(anchor: str, class_id: int | None = None, check: str | None = None) -> str:
    """The href (within the page) that opens the block at `anchor` filtered to a class and/or a check."""
    query = "&".join(part for part in (f"class={int(class_id)}" if class_id is not None else "",
                                       f"check={check}" if check else "") if part)
    return f"#{anchor}?{query}" if query else f"#{anchor}"


def suspect_classes(suspects: pd.DataFrame) -> list[tuple[int, ...]]:
    """Per suspect, the classes it is about: the label's class and the suggested one (a wrong-class suspect is
    about both: one class's label that belongs to another)."""
    result = []
    for label_class, suggested in zip(suspects["class"], suspects["suggested_class"]):
        found = [int(value) for value in (label_class, suggested) if not pd.isna(value)]
        result.append(tuple(dict.fromkeys(found)))
    return result


def suspect_counts(suspects: pd.DataFrame, num_classes: int) -> list[int]:
    """Suspects per class id (suspect_classes: a wrong-class suspect counts for both of its classes)."""
    return _count(suspect_classes(suspects), num_classes)


def _count(classes: list[tuple[int, ...]], num_classes: int) -> list[int]:
    counts = [0] * num_classes
    for found in classes:
        for class_id in found:
            if 0 <= class_id < num_classes:
                counts[class_id] += 1
    return counts


def label_errors_html(suspects: pd.DataFrame, lookup: ImageLookup, names: Sequence[str], anchor: str, *,
                      pictures: int = SUSPECT_PICTURES, max_rows: int = MAX_SUSPECT_ROWS) -> str:
    """The block's markup (a <style>, the controls, pictures, the table of the rest, its script): our own markup,
    every user string escaped. `suspects` has checks_predictions.SUSPECT_COLUMNS."""
    if suspects.empty:
        return '<p class="note">No label looks wrong to the model: no suspect of any type.</p>'
    ordered = suspects.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    classes = suspect_classes(ordered)
    ordered = ordered.rename(columns={"class": "label_class"})  # `class` cannot be a namedtuple field
    pictures = max(int(pictures), 0)
    cards, cache = [], {}
    for position, row in enumerate(ordered.head(pictures).itertuples(index=False)):
        cards.append(_card(row, classes[position], lookup, names, cache))
    rest = ordered.iloc[pictures:pictures + max(int(max_rows), 0)]
    parts = [f"<style>{STYLE}</style>", f'<div class="label-errors" data-anchor="{escape(anchor)}">',
             _controls(ordered, classes, names), _legend()]
    if cards:
        parts.append(f'<div class="suspects">{"".join(cards)}</div>')
    if not rest.empty:
        parts.append(_rest_table(rest, classes[pictures:pictures + len(rest)], names))
    notes = []
    if len(ordered) > pictures:
        notes.append(f"The best {min(pictures, len(ordered)):,} suspects have a picture; the next "
                     f"{len(rest):,} are rows of the table.")
    if len(ordered) > pictures + len(rest):
        notes.append(f"{len(ordered) - pictures - len(rest):,} more are left out here; label_review.csv and the "
                     "JSON hold every suspect.")
    if notes:
        parts.append(f'<p class="note">{escape(" ".join(notes))}</p>')
    parts.append(f"</div><script>{_SCRIPT}</script>")
    return "".join(parts)


def _controls(suspects: pd.DataFrame, classes: list[tuple[int, ...]], names: Sequence[str]) -> str:
    checks = suspects["check"].value_counts()
    check_options = "".join(f'<option value="{escape(check)}">{escape(check)} ({int(checks[check]):,})</option>'
                            for check in LABEL_ERROR_CHECKS if check in checks.index)
    counts = _count(classes, max([len(names), *(c + 1 for found in classes for c in found)]))
    class_options = "".join(f'<option value="{class_id}">{escape(_class_name(class_id, names))} ({count:,})</option>'
                            for class_id, count in enumerate(counts) if count)
    return ('<div class="suspect-tools">'
            f'<label>type <select class="suspect-check" aria-label="filter by type"><option value="">all types'
            f"</option>{check_options}</select></label>"
            f'<label>class <select class="suspect-class" aria-label="filter by class"><option value="">all classes'
            f"</option>{class_options}</select></label>"
            f'<span class="suspect-count note">{len(suspects):,} suspects</span></div>')


def _legend() -> str:
    def swatch(colour: tuple[int, int, int], text: str) -> str:
        b, g, r = colour
        return f'<span><i style="border-color: rgb({r},{g},{b})"></i>{escape(text)}</span>'

    return ('<p class="legend">' + swatch(HIGHLIGHT, "left: the label (its line)")
            + swatch(PREDICTION, "right: the model's box") + swatch(GROUND_TRUTH, "the image's other labels")
            + '</p><p class="note">Best score first (0-1: how likely the label is really wrong). missing-box: an '
              "object nobody boxed (nothing red on the left); wrong-class: the model sees another class in the same "
              "place; mislocated-box: the model puts the object elsewhere; spurious-box: the model sees nothing "
              "there (nothing blue on the right).</p>")


def _card(row, classes: tuple[int, ...], lookup: ImageLookup, names: Sequence[str], cache: dict) -> str:
    where = _where(row)
    picture = _picture(row, lookup, names, cache)
    alt = f"{row.check} at {where}"
    return (f'<figure class="suspect suspect-item" data-check="{escape(row.check)}" '
            f'data-classes="{" ".join(str(c) for c in classes)}" data-score="{float(row.score):.4f}">'
            f'<img src="{image_data_uri(encode_jpeg(picture, JPEG_QUALITY))}" alt="{escape(alt)}" '
            f'width="{picture.shape[1]}" height="{picture.shape[0]}" loading="lazy">'
            f'<figcaption><p><span class="score">{float(row.score):.2f}</span> <b>{escape(row.check)}</b> '
            f"({escape(_KIND.get(row.check, ''))}) <code>{escape(where)}</code></p>"
            f"<p>{escape(_classes_text(row, names))}</p><p>{escape(row.message)}</p></figcaption></figure>")


def _rest_table(rest: pd.DataFrame, classes: list[tuple[int, ...]], names: Sequence[str]) -> str:
    head = "".join(f"<th>{escape(column)}</th>" for column in ("score", "type", "file", "class", "suggested",
                                                               "fix"))
    rows = []
    for row, found in zip(rest.itertuples(index=False), classes):
        score = float(row.score)
        rows.append(f'<tr class="suspect-item" data-check="{escape(row.check)}" '
                    f'data-classes="{" ".join(str(c) for c in found)}"><td class="num" data-value="{score:.4f}">'
                    f"{score:.2f}</td><td>{escape(row.check)}</td><td>{escape(_where(row))}</td>"
                    f"<td>{escape(_optional_name(row.label_class, names))}</td>"
                    f"<td>{escape(_optional_name(row.suggested_class, names))}</td><td>{escape(row.message)}</td></tr>")
    return (f'<div class="table-wrap"><table class="data sortable suspect-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _where(row) -> str:
    line = None if pd.isna(row.line) else int(row.line)
    return location(row.image, row.label if line is not None else None, line) or str(row.image)


def _classes_text(row, names: Sequence[str]) -> str:
    label, suggested = _optional_name(row.label_class, names), _optional_name(row.suggested_class, names)
    if row.check == "missing-box":
        return f"the model: {suggested}"
    if row.check == "wrong-class":
        return f"labelled {label}, the model: {suggested}"
    return f"labelled {label}"


def _optional_name(value, names: Sequence[str]) -> str:
    return "" if value is None or pd.isna(value) else _class_name(int(value), names)


def _class_name(class_id: int, names: Sequence[str]) -> str:
    return str(names[class_id]) if 0 <= class_id < len(names) else f"class {class_id}"


def _picture(row, lookup: ImageLookup, names: Sequence[str], cache: dict) -> np.ndarray:
    """The label panel and the model panel of one crop, side by side (or a grey tile saying why not)."""
    size = (2 * PANEL_SIDE + 4, PANEL_SIDE)
    image_id = lookup.image_id(row.split, row.image)
    if image_id is None:
        return placeholder_tile("no image", size)
    image = _decoded(image_id, lookup, cache)
    if isinstance(image, str):
        return placeholder_tile(image, size)
    label_box = None if row.label_box is None or (isinstance(row.label_box, float)) else list(row.label_box)
    model_box = None if row.check == "spurious-box" else list(row.box)  # spurious: box is the label's own
    crop, to_crop = _crop(image, [box for box in (label_box, model_box) if box is not None])
    line = None if pd.isna(row.line) else int(row.line)
    others = [to_crop(b.cx, b.cy, b.w, b.h, colour=GROUND_TRUTH) for b in lookup.boxes_of(image_id).itertuples()
              if line is None or int(b.line) != line]
    left, right = list(others), list(others)
    if label_box is not None:
        left.append(to_crop(*label_box, colour=HIGHLIGHT, thickness=2,
                            label=f"line {line}: {_optional_name(row.label_class, names)}"))
    if model_box is not None:
        right.append(to_crop(*model_box, colour=PREDICTION, thickness=2,
                             label=f"model: {_optional_name(row.suggested_class, names)}"))
    gap = np.full((PANEL_SIDE, 4, 3), 255, dtype=np.uint8)
    return np.hstack([draw_boxes(crop, left), gap, draw_boxes(crop, right)])


def _decoded(image_id: int, lookup: ImageLookup, cache: dict) -> np.ndarray | str:
    """The image at most SOURCE_SIDE on a side, or why it cannot be shown; a few kept for the next suspects."""
    if image_id in cache:
        return cache[image_id]
    row = lookup.index.images.iloc[image_id]
    image = load_thumbnail(str(row["path"]), SOURCE_SIDE) if row["readable"] else None
    if image is None:
        too_large = int(row["width"]) * int(row["height"]) > DEFAULT_MAX_PIXELS
        image = str(row["image_error"] or ("too many pixels to decode for a picture" if too_large
                                           else "cannot decode the image"))
    if len(cache) >= _CACHED_IMAGES:
        cache.pop(next(iter(cache)))
    cache[image_id] = image
    return image


def _crop(image: np.ndarray, boxes: list[list[float]]):
    """A square crop (PANEL_SIDE px) around the boxes' union with context, and a function mapping a normalized
    image box into a DrawnBox of the crop."""
    height, width = image.shape[:2]
    x1 = min(b[0] - abs(b[2]) / 2 for b in boxes) * width
    x2 = max(b[0] + abs(b[2]) / 2 for b in boxes) * width
    y1 = min(b[1] - abs(b[3]) / 2 for b in boxes) * height
    y2 = max(b[1] + abs(b[3]) / 2 for b in boxes) * height
    side = min(max(max(x2 - x1, y2 - y1) * CONTEXT, MIN_CROP_PX), max(width, height))
    left = int(round(min(max((x1 + x2) / 2 - side / 2, 0), max(width - side, 0))))
    top = int(round(min(max((y1 + y2) / 2 - side / 2, 0), max(height - side, 0))))
    side_px = max(int(round(side)), 1)
    patch = image[top:top + side_px, left:left + side_px]
    canvas = np.full((side_px, side_px, 3), 150, dtype=np.uint8)  # grey where a crop reaches past the image
    canvas[:patch.shape[0], :patch.shape[1]] = patch
    interpolation = cv2.INTER_AREA if side_px > PANEL_SIDE else cv2.INTER_LINEAR
    crop = cv2.resize(canvas, (PANEL_SIDE, PANEL_SIDE), interpolation=interpolation)

    def to_crop(cx: float, cy: float, w: float, h: float, **style) -> DrawnBox:
        return DrawnBox((cx * width - left) / side_px, (cy * height - top) / side_px, w * width / side_px,
                        h * height / side_px, **style)

    return crop, to_crop
