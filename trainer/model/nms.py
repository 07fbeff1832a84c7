"""Class-aware batched non-maximum suppression in plain torch (no torchvision), fast on CPU.

Input is the detector's raw output at inference: (B, 4 + nc, anchors), boxes as cx, cy, w, h in pixels followed by
per-class scores in [0, 1] (after the sigmoid). Output is one (n, 6) tensor per image,
[x1, y1, x2, y2, score, class], sorted by descending score: what `trainer.evaluation.evaluate_detections` takes.

The result is exactly classic greedy NMS (sort by score; keep the best box; drop boxes of the same class and
image overlapping it with IoU > threshold; repeat), computed without a Python loop over boxes:

1. Candidates of all images are sorted by (image, class, descending score), so boxes that can suppress each
   other sit in one contiguous group. Each group is compared only with itself: small groups in batches padded to
   a power-of-two size, large ones in row chunks. What comes out is the sparse upper-triangular relation S of
   pairs (i ranked above j, IoU > threshold), at the cost of the sum of squared group sizes rather than the square
   of all candidates. (The common "class offset" trick, shifting each class's boxes far apart, would also isolate
   classes, but in float32 large offsets eat the coordinates' precision, and it still costs the full square.)
2. Greedy NMS keeps box j iff no *kept* box i ranked above it has S[i, j]. That recursive definition has one
   solution, found by iterating keep <- "not suppressed by any currently kept box" from keep = all, as in
   Cluster-NMS (Zheng et al., "Enhancing Geometric Factors in Model Learning and Inference for Object Detection
   and Instance Segmentation", 2021): after each round every box whose suppressors are settled is
   settled too, so it ends in at most (longest suppression chain + 1) rounds, a handful in practice, each a
   scatter over the sparse pairs.
"""

from __future__ import annotations

import torch

from trainer.model.boxes import intersection_and_union

PAIR_BUDGET = 1 << 20  # IoU entries per tensor call (4 MB of float32): bounds memory, stays cache-friendly
_LARGEST_PADDED_GROUP = 1 << 10  # larger groups (one class, one image) are compared in row chunks


def non_max_suppression(prediction: torch.Tensor, conf_threshold: float = 0.25, iou_threshold: float = 0.45,
                        max_detections: int = 300, max_candidates: int | None = 30_000, multi_label: bool = False,
                        agnostic: bool = False) -> list[torch.Tensor]:
    """Per image, the boxes left after NMS: (n, 6) float32 [x1, y1, x2, y2, score, class], best first.

    conf_threshold: candidates need a class score > this (0.001 for mAP, ~0.25 for deployment).
    iou_threshold: a box is suppressed by a better one of its class overlapping it with IoU > this.
    max_detections: at most this many boxes per image are returned (highest scores).
    max_candidates: at most this many highest-scoring candidates per image enter NMS (None: all); bounds time
        when a weak model scores everything above a low threshold.
    multi_label: every class scoring above the threshold makes a candidate (an anchor may yield several
        classes), as usual for mAP evaluation; otherwise only each anchor's best class.
    agnostic: suppress across classes too.
    """
    if prediction.ndim != 3 or prediction.shape[1] < 5:
        raise ValueError(f"expected (batch, 4 + classes, anchors), got {tuple(prediction.shape)}")
    batch, channels, _ = prediction.shape
    num_classes = channels - 4
    outputs = prediction.detach().transpose(1, 2).float()  # (B, anchors, 4 + nc)
    class_scores = outputs[..., 4:]
    if multi_label:
        image, anchor, cls = (class_scores > conf_threshold).nonzero(as_tuple=True)
        score = class_scores[image, anchor, cls]
    else:
        best_score, best_class = class_scores.max(dim=2)
        image, anchor = (best_score > conf_threshold).nonzero(as_tuple=True)
        score, cls = best_score[image, anchor], best_class[image, anchor]
    # nonzero() lists candidates in (image, anchor, class) order: ties in score keep that order throughout.

    order = _sort_by_key_then_score(image, score)
    if max_candidates is not None:
        order = order[_rank_within(image[order], batch) < max_candidates]
    group = image[order] if agnostic else image[order] * num_classes + cls[order]
    order = order[torch.sort(group, stable=True).indices]  # (group, descending score), ties in candidate order
    image, anchor, cls, score = image[order], anchor[order], cls[order], score[order]
    boxes = cxcywh_to_xyxy(outputs[image, anchor, :4])
    group = image if agnostic else image * num_classes + cls

    kept = _greedy_keep(boxes, group, iou_threshold)
    image, cls, score, boxes = image[kept], cls[kept], score[kept], boxes[kept]
    best_first = _sort_by_key_then_score(image, score)
    best_first = best_first[_rank_within(image[best_first], batch) < max_detections]
    image = image[best_first]
    table = torch.cat([boxes[best_first], score[best_first, None], cls[best_first, None].float()], dim=1)
    return list(torch.split(table, torch.bincount(image, minlength=batch).tolist()))


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre, width, height -> corners."""
    centre, size = boxes[..., :2], boxes[..., 2:]
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def _overlaps(first: torch.Tensor, second: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """IoU > threshold, tested as intersection > threshold * union: no division, same answer up to rounding."""
    intersection, union = intersection_and_union(first[..., :, None, :], second[..., None, :, :], eps=0.0)
    return intersection > union.mul_(iou_threshold)


def _sort_by_key_then_score(key: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """Indices ordering rows by key, then descending score, ties in row order (two stable sorts)."""
    by_score = torch.sort(score, descending=True, stable=True).indices
    return by_score[torch.sort(key[by_score], stable=True).indices]


def _rank_within(sorted_key: torch.Tensor, num_keys: int) -> torch.Tensor:
    """Position of each row within its run of equal keys (keys sorted, in [0, num_keys))."""
    counts = torch.bincount(sorted_key, minlength=num_keys)
    starts = torch.cumsum(counts, dim=0) - counts
    return torch.arange(len(sorted_key), device=sorted_key.device) - starts[sorted_key]


def _greedy_keep(boxes: torch.Tensor, group: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Boolean mask of boxes kept by greedy NMS; rows sorted by (group, descending score)."""
    suppressor, suppressed = _suppression_pairs(boxes, group, iou_threshold)
    keep = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
    if not len(suppressor):
        return keep
    # Fixed-point iteration (see module docstring); it settles in at most len(boxes) + 1 rounds.
    for _ in range(len(boxes) + 1):
        knocked_out = torch.zeros_like(keep)
        knocked_out[suppressed[keep[suppressor]]] = True
        if torch.equal(~knocked_out, keep):
            break
        keep = ~knocked_out
    return keep


def _suppression_pairs(boxes: torch.Tensor, group: torch.Tensor,
                       iou_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(i, j) with i ranked above j in the same group and IoU > threshold; rows sorted by group.

    Groups are compared only with themselves. Small groups go in batches padded to a power-of-two size (at
    most 4x wasted work, a few dozen tensor calls in all); groups too large for one block go in row chunks.
    """
    sizes = torch.unique_consecutive(group, return_counts=True)[1]
    starts = torch.cumsum(sizes, dim=0) - sizes
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    large = sizes > _LARGEST_PADDED_GROUP
    for start, size in zip(starts[large].tolist(), sizes[large].tolist()):
        pairs.extend(_pairs_in_large_group(boxes, start, size, iou_threshold))
    small = (sizes >= 2) & ~large
    padded_size = 2 ** torch.ceil(torch.log2(sizes.clamp(min=2).double())).long()
    for size in torch.unique(padded_size[small]).tolist():
        member = small & (padded_size == size)
        group_starts, group_sizes = starts[member], sizes[member]
        per_batch = max(1, PAIR_BUDGET // (size * size))
        for first in range(0, len(group_starts), per_batch):
            pairs.append(_pairs_in_padded_groups(boxes, group_starts[first:first + per_batch],
                                                 group_sizes[first:first + per_batch], size, iou_threshold))
    if not pairs:
        empty = torch.zeros(0, dtype=torch.long, device=boxes.device)
        return empty, empty
    return torch.cat([i for i, _ in pairs]), torch.cat([j for _, j in pairs])


def _pairs_in_padded_groups(boxes: torch.Tensor, starts: torch.Tensor, sizes: torch.Tensor, size: int,
                            iou_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    offsets = torch.arange(size, device=boxes.device)
    present = offsets[None, :] < sizes[:, None]  # (G, size)
    rows = torch.where(present, starts[:, None] + offsets[None, :], starts[:, None])  # padding repeats row 0
    block = boxes[rows]  # (G, size, 4)
    above = offsets[:, None] < offsets[None, :]  # i ranks above j
    overlapping = _overlaps(block, block, iou_threshold) & above & present[:, None, :]
    which, row, column = overlapping.nonzero(as_tuple=True)
    return starts[which] + row, starts[which] + column


def _pairs_in_large_group(boxes: torch.Tensor, start: int, size: int,
                          iou_threshold: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    end = start + size
    chunk_rows = max(1, PAIR_BUDGET // size)
    pairs = []
    for first in range(start, end, chunk_rows):
        last = min(end, first + chunk_rows)
        positions = torch.arange(first, end, device=boxes.device)
        above = positions[: last - first, None] < positions[None, :]
        overlapping = _overlaps(boxes[first:last], boxes[first:end], iou_threshold) & above
        row, column = overlapping.nonzero(as_tuple=True)
        pairs.append((row + first, column + first))
    return pairs
