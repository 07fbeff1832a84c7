"""Instance copy-paste for box labels: one rare-class box crop pasted into another train picture.

Why: when the frequent class is in every picture (blood cells, traffic), copying a whole image to add one rare
box adds twenty common ones. Pasting the rare object alone adds it without its neighbours (Ghiasi et al.,
"Simple Copy-Paste is a Strong Data Augmentation Method for Instance Segmentation", CVPR 2021). Their method
needs masks; with boxes only, the crop is the box plus a small margin of context, blended at the edges.

One implementation serves `doctor rebalance --method paste|auto` (offline, written files) and
`doctor train --copy-paste P` (online, in the trainer's data pipeline). Every step is a pure function of its
inputs and a numpy Generator, so a seed fixes the result:

1. crop: the source box grown by CONTEXT_MARGIN of its side on every side (clipped to the source image);
2. scale: a box drawn from the class's own train box sizes (normalised area), the crop resized so the pasted
   box has that area with the source's aspect ratio: pasted sizes follow train's, so no scale shift appears;
3. optional horizontal flip and colour jitter (contrast gain and brightness offset) of the patch;
4. placement: PLACEMENT_TRIES random positions, keeping the first one that hides at most `max_occlusion` of
   every labelled host box, else (a dense scene) the one hiding the least;
5. labels: the patch carries its own labels, every source box inside it clipped to it, kept when at least
   `min_visibility` of it is inside; every host box the patch hides beyond `1 - min_visibility` is dropped,
   one the patch cuts on a full side is clipped to what is left, so no visible object is unlabelled and no
   hidden one stays labelled;
6. blend: feathered alpha (a ramp of FEATHER_SHARE of the margin, so the object itself is pasted unchanged), or
   OpenCV's seamlessClone (Poisson blending, Perez et al. 2003) as an option.
Boxes here are pixel x1 y1 x2 y2 (float) in the image they belong to.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CONTEXT_MARGIN = 0.1  # crop margin around the box, as a share of its side: a little context to blend into
MIN_MARGIN_PX = 2  # at least this many pixels of margin, so a feathered edge exists even for tiny boxes
MAX_OCCLUSION = 0.25  # a paste may hide at most this share of any labelled host box (sparse scenes)
MIN_VISIBILITY = 0.4  # a box (host or carried) less visible than this is dropped (augment.MIN_VISIBILITY)
PLACEMENT_TRIES = 30  # random positions tried before accepting the least occluding one
BLEND_MODES = ("feather", "seamless")
JITTER_CONTRAST = 0.1  # contrast gain drawn from 1 +/- this
JITTER_BRIGHTNESS = 12.0  # brightness offset drawn from +/- this (0-255 scale)
MIN_PASTED_SIDE = 2.0  # pixels: a smaller pasted box is no object; the scale draw is repeated


@dataclass(frozen=True)
class PasteOptions:
    """How pastes look and where they may go."""

    max_occlusion: float = MAX_OCCLUSION
    min_visibility: float = MIN_VISIBILITY
    blend: str = "feather"  # or "seamless"
    flip: bool = True  # horizontal flip with probability 0.5
    jitter: bool = True  # colour jitter of the patch


@dataclass(frozen=True)
class PasteSource:
    """One instance to paste: its image (HxWx3 uint8), the index of its box, and all the image's boxes."""

    image: np.ndarray
    boxes: np.ndarray  # (n, 4) pixel x1 y1 x2 y2 of every usable box in the source image
    classes: np.ndarray  # (n,)
    index: int  # which box is the instance


@dataclass(frozen=True)
class PasteResult:
    """The host after one paste, and what was done (for manifests and tests)."""

    image: np.ndarray
    boxes: np.ndarray  # (m, 4) the host's kept (possibly clipped) boxes, then the pasted ones
    classes: np.ndarray  # (m,)
    host_kept: np.ndarray  # (n_host,) bool: which host boxes survive (in order, first in `boxes`)
    pasted: np.ndarray  # (k, 4) boxes added by the paste; pasted[0] is the instance itself
    pasted_classes: np.ndarray  # (k,)
    patch_box: tuple[int, int, int, int]  # x1 y1 x2 y2 of the patch in the host
    patch: np.ndarray  # the transformed crop before blending (what the host shows away from the edge)
    feather: int  # width in pixels of the blended edge of the patch
    scale: float
    flipped: bool
    occlusion: float  # the largest share of a host box the patch covers
    dense: bool  # no position met max_occlusion: host boxes were clipped or dropped

    @property
    def describe(self) -> str:
        parts = [f"paste(scale={self.scale:.3g}"]
        if self.flipped:
            parts.append("flip")
        if self.dense:
            parts.append(f"dense, hides {self.occlusion:.2f}")
        return ", ".join(parts) + ")"


def crop_box(source: PasteSource) -> tuple[int, int, int, int]:
    """The instance's box grown by the context margin, in whole pixels, clipped to the source image."""
    height, width = source.image.shape[:2]
    x1, y1, x2, y2 = source.boxes[source.index]
    margin_x = max(CONTEXT_MARGIN * (x2 - x1), MIN_MARGIN_PX)
    margin_y = max(CONTEXT_MARGIN * (y2 - y1), MIN_MARGIN_PX)
    return (max(0, int(np.floor(x1 - margin_x))), max(0, int(np.floor(y1 - margin_y))),
            min(width, int(np.ceil(x2 + margin_x))), min(height, int(np.ceil(y2 + margin_y))))


def draw_scale(rng: np.random.Generator, box_wh: tuple[float, float], host_wh: tuple[int, int],
               size_pool: np.ndarray, crop_wh: tuple[int, int]) -> float:
    """The resize factor of the crop so the pasted box's normalised area is one drawn from `size_pool`.

    `size_pool` holds the class's normalised box areas (w * h) in train. The patch must fit in the host; a
    draw that does not (or gives a box under MIN_PASTED_SIDE) is repeated, then the fitting extreme is used.
    """
    box_w, box_h = box_wh
    host_w, host_h = host_wh
    fit = min(host_w / max(crop_wh[0], 1), host_h / max(crop_wh[1], 1))
    smallest = MIN_PASTED_SIDE / max(min(box_w, box_h), 1e-6)
    scale = 1.0
    for _ in range(8):
        area = float(size_pool[rng.integers(len(size_pool))]) if len(size_pool) else box_w * box_h / (host_w * host_h)
        scale = float(np.sqrt(area * host_w * host_h / max(box_w * box_h, 1e-9)))
        if smallest <= scale <= fit:
            return scale
    return float(np.clip(scale, min(smallest, fit), fit))


def transformed_patch(source: PasteSource, scale: float, flip: bool, contrast: float,
                      brightness: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the crop resized, flipped and jittered; the source boxes in patch pixels; their visible share).

    A box's visible share is its area inside the crop over its whole area (1 for the instance itself).
    """
    cx1, cy1, cx2, cy2 = crop_box(source)
    crop = source.image[cy1:cy2, cx1:cx2]
    out_w, out_h = max(1, round((cx2 - cx1) * scale)), max(1, round((cy2 - cy1) * scale))
    patch = cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    boxes = source.boxes.astype(np.float64)
    clipped = np.column_stack([np.clip(boxes[:, 0], cx1, cx2), np.clip(boxes[:, 1], cy1, cy2),
                               np.clip(boxes[:, 2], cx1, cx2), np.clip(boxes[:, 3], cy1, cy2)])
    visible = _area(clipped) / np.maximum(_area(boxes), 1e-9)
    sx, sy = out_w / (cx2 - cx1), out_h / (cy2 - cy1)
    inside = (clipped - [cx1, cy1, cx1, cy1]) * [sx, sy, sx, sy]
    if flip:
        patch = patch[:, ::-1]
        inside = np.column_stack([out_w - inside[:, 2], inside[:, 1], out_w - inside[:, 0], inside[:, 3]])
    if contrast != 1.0 or brightness != 0.0:
        mean = patch.reshape(-1, patch.shape[-1]).mean(axis=0)
        patch = np.clip((patch.astype(np.float32) - mean) * contrast + mean + brightness, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(patch), inside, visible


def coverage(boxes: np.ndarray, rect: tuple[float, float, float, float]) -> np.ndarray:
    """Share of each box's area that the rectangle covers."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    inter_w = np.clip(np.minimum(boxes[:, 2], rect[2]) - np.maximum(boxes[:, 0], rect[0]), 0, None)
    inter_h = np.clip(np.minimum(boxes[:, 3], rect[3]) - np.maximum(boxes[:, 1], rect[1]), 0, None)
    return inter_w * inter_h / np.maximum(_area(boxes), 1e-9)


def choose_place(rng: np.random.Generator, patch_wh: tuple[int, int], host_wh: tuple[int, int],
                 host_boxes: np.ndarray, max_occlusion: float) -> tuple[int, int, float]:
    """(x, y) of the patch's top-left corner and the largest share of a host box it covers.

    The first of PLACEMENT_TRIES uniform positions within the bound wins; none: the least occluding one.
    """
    free_w, free_h = host_wh[0] - patch_wh[0], host_wh[1] - patch_wh[1]
    best = (0, 0, np.inf)
    for _ in range(PLACEMENT_TRIES):
        x, y = int(rng.integers(free_w + 1)), int(rng.integers(free_h + 1))
        rect = (x, y, x + patch_wh[0], y + patch_wh[1])
        hidden = float(coverage(host_boxes, rect).max(initial=0.0))
        if hidden <= max_occlusion:
            return x, y, hidden
        if hidden < best[2]:
            best = (x, y, hidden)
    return best


def paste_instance(host: np.ndarray, host_boxes: np.ndarray, host_classes: np.ndarray, source: PasteSource,
                   size_pool: np.ndarray, rng: np.random.Generator,
                   options: PasteOptions = PasteOptions()) -> PasteResult:
    """Paste `source`'s instance into `host` (not modified) following steps 1-6 of the module docstring."""
    if options.blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {BLEND_MODES}")
    host_h, host_w = host.shape[:2]
    host_boxes = np.asarray(host_boxes, dtype=np.float64).reshape(-1, 4)
    host_classes = np.asarray(host_classes, dtype=np.int64).reshape(-1)
    cx1, cy1, cx2, cy2 = crop_box(source)
    x1, y1, x2, y2 = source.boxes[source.index]
    scale = draw_scale(rng, (x2 - x1, y2 - y1), (host_w, host_h), size_pool, (cx2 - cx1, cy2 - cy1))
    flipped = bool(options.flip and rng.random() < 0.5)
    contrast = float(1 + rng.uniform(-JITTER_CONTRAST, JITTER_CONTRAST)) if options.jitter else 1.0
    brightness = float(rng.uniform(-JITTER_BRIGHTNESS, JITTER_BRIGHTNESS)) if options.jitter else 0.0
    patch, patch_boxes, visible = transformed_patch(source, scale, flipped, contrast, brightness)
    patch_h, patch_w = patch.shape[:2]
    if patch_w > host_w or patch_h > host_h:  # rounding at the fitting extreme
        patch = patch[:host_h, :host_w]
        patch_h, patch_w = patch.shape[:2]
        patch_boxes = np.minimum(patch_boxes, [patch_w, patch_h, patch_w, patch_h])
    x, y, hidden = choose_place(rng, (patch_w, patch_h), (host_w, host_h), host_boxes, options.max_occlusion)
    rect = (x, y, x + patch_w, y + patch_h)
    dense = hidden > options.max_occlusion

    # 5. labels: the patch's own boxes (the instance first), then the host's that stay visible.
    carried = visible >= options.min_visibility
    carried[source.index] = True
    order = np.concatenate([[source.index], np.flatnonzero(carried & (np.arange(len(carried)) != source.index))])
    pasted = patch_boxes[order] + [x, y, x, y]
    pasted_classes = source.classes[order].astype(np.int64)
    side_ok = (pasted[:, 2] - pasted[:, 0] >= 1) & (pasted[:, 3] - pasted[:, 1] >= 1)
    side_ok[0] = True
    pasted, pasted_classes = pasted[side_ok], pasted_classes[side_ok]
    kept_boxes, kept = _visible_host_boxes(host_boxes, rect, options.min_visibility) if dense else (
        host_boxes, np.ones(len(host_boxes), dtype=bool))

    feather = _feather_width(patch_w, patch_h, scale, (x2 - x1, y2 - y1), (cx2 - cx1, cy2 - cy1))
    image = _blend(host, patch, x, y, feather, options.blend)
    boxes = np.concatenate([kept_boxes, pasted]) if len(kept_boxes) else pasted
    classes = np.concatenate([host_classes[kept], pasted_classes])
    return PasteResult(image, boxes, classes, kept, pasted, pasted_classes, rect, patch, feather, scale, flipped,
                       hidden, dense)


def _visible_host_boxes(boxes: np.ndarray, rect: tuple[int, int, int, int],
                        min_visibility: float) -> tuple[np.ndarray, np.ndarray]:
    """Host boxes after the patch covers `rect`: mostly hidden ones dropped, ones cut on a full side clipped."""
    covered = coverage(boxes, rect)
    keep = covered <= 1 - min_visibility
    out = boxes.copy()
    rx1, ry1, rx2, ry2 = rect
    for i in np.flatnonzero(keep & (covered > 0)):
        bx1, by1, bx2, by2 = out[i]
        spans_y = ry1 <= by1 and ry2 >= by2  # the patch covers the box's whole height: cut it left or right
        spans_x = rx1 <= bx1 and rx2 >= bx2
        if spans_y and rx1 <= bx1 < rx2:
            out[i, 0] = rx2
        elif spans_y and rx1 < bx2 <= rx2:
            out[i, 2] = rx1
        elif spans_x and ry1 <= by1 < ry2:
            out[i, 1] = ry2
        elif spans_x and ry1 < by2 <= ry2:
            out[i, 3] = ry1
    return out[keep], keep


def _feather_width(patch_w: int, patch_h: int, scale: float, box_wh: tuple[float, float],
                   crop_wh: tuple[int, int]) -> int:
    """The blend ramp: most of the (scaled) margin, so the object's own pixels are pasted unchanged."""
    margin = min((crop_wh[0] - box_wh[0]) / 2, (crop_wh[1] - box_wh[1]) / 2) * scale
    return int(max(1, min(np.floor(margin * FEATHER_SHARE), patch_w // 2, patch_h // 2)))


FEATHER_SHARE = 0.8  # the ramp covers this share of the margin


def feather_mask(width: int, height: int, feather: int) -> np.ndarray:
    """Alpha (HxW float32): 0 outside, rising linearly over `feather` pixels to 1 inside."""
    ramp_x = np.minimum(np.arange(width) + 0.5, width - np.arange(width) - 0.5) / feather
    ramp_y = np.minimum(np.arange(height) + 0.5, height - np.arange(height) - 0.5) / feather
    return np.clip(np.minimum(ramp_y[:, None], ramp_x[None, :]), 0, 1).astype(np.float32)


def _blend(host: np.ndarray, patch: np.ndarray, x: int, y: int, feather: int, mode: str) -> np.ndarray:
    patch_h, patch_w = patch.shape[:2]
    if mode == "seamless" and patch_w >= 4 and patch_h >= 4 and patch.ndim == 3:
        mask = np.zeros((patch_h, patch_w), dtype=np.uint8)
        mask[1:-1, 1:-1] = 255
        center = (x + patch_w // 2, y + patch_h // 2)
        try:
            return cv2.seamlessClone(patch, np.ascontiguousarray(host), mask, center, cv2.NORMAL_CLONE)
        except cv2.error:  # a patch at the very border: fall back to feathering
            pass
    out = host.copy()
    alpha = feather_mask(patch_w, patch_h, feather)
    alpha = alpha[..., None] if patch.ndim == 3 else alpha
    region = out[y:y + patch_h, x:x + patch_w].astype(np.float32)
    out[y:y + patch_h, x:x + patch_w] = np.round(region + alpha * (patch.astype(np.float32) - region)).astype(np.uint8)
    return out


def _area(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
