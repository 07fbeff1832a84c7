"""Task-aligned label assignment (Feng et al., "TOOD: Task-aligned One-stage Object Detection", ICCV 2021).

Which anchor points learn which ground-truth box, decided from the network's own current predictions:
  1. candidates: anchor points whose centre lies inside the gt box;
  2. alignment metric t = s^alpha * u^beta per (gt, candidate), s = predicted probability of the gt's class,
     u = IoU of the predicted box with the gt. High t needs both a good score and a good box, so training
     pulls classification and localisation towards the same anchors (the paper's "task alignment");
  3. the top-k candidates by t become positives of that gt;
  4. an anchor that is a positive of several gts keeps the one its predicted box overlaps most (highest IoU);
  5. soft targets: the classification target of a positive is t normalised per gt so that the gt's best
     anchor gets that gt's largest IoU among its positives (the paper's task-aligned loss: t_hat = t * u_max / t_max),
     and every other class gets 0. Negatives get all zeros.

All tensors are batched with gts padded to the largest count in the batch (a mask marks the real ones). Only
the candidate test, the top-k and the per-anchor choice touch dense (B, M, A) tensors; the arithmetic runs on the
sparse candidate and positive pairs. No Python loop over anchors or boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.model.boxes import iou


@dataclass
class Assignment:
    labels: Tensor  # (B, A) long: class of the assigned gt (0 where background; use `foreground`)
    boxes: Tensor  # (B, A, 4) xyxy of the assigned gt, same units as the gt boxes given (0 where background)
    scores: Tensor  # (B, A, C) soft classification targets: normalised alignment on the gt's class, else 0
    foreground: Tensor  # (B, A) bool: the anchor point is a positive of some gt
    gt_index: Tensor  # (B, A) long: index of the assigned gt within its image (0 where background)


class TaskAlignedAssigner:
    """TOOD's assigner with its published defaults (top-k 10, alpha 0.5, beta 6.0); see the module docstring."""

    def __init__(self, num_classes: int, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9):
        self.num_classes, self.topk, self.alpha, self.beta, self.eps = num_classes, topk, alpha, beta, eps

    @torch.no_grad()
    def __call__(self, pred_scores: Tensor, pred_boxes: Tensor, anchor_points: Tensor, gt_labels: Tensor,
                 gt_boxes: Tensor, gt_mask: Tensor) -> Assignment:
        """Assign gts to anchor points.

        pred_scores (B, A, C) class probabilities (after sigmoid); pred_boxes (B, A, 4) xyxy; anchor_points
        (A, 2) xy; gt_labels (B, M) long; gt_boxes (B, M, 4) xyxy; gt_mask (B, M) bool, True for real gts.
        Boxes and points in one unit (input pixels in the loss).
        """
        batch, num_anchors, num_classes = pred_scores.shape
        num_gts = gt_boxes.shape[1]
        if num_gts == 0:
            return self._empty(batch, num_anchors, num_classes, pred_scores)

        # 1. candidates: anchor centre strictly inside a real gt box.
        # Four boolean (B, M, A) comparisons rather than one (B, M, A, 4) float tensor: it is the biggest array here.
        xs, ys = anchor_points[:, 0], anchor_points[:, 1]
        x1, y1, x2, y2 = (gt_boxes[:, :, i, None] for i in range(4))
        inside = (xs - x1 > self.eps) & (ys - y1 > self.eps) & (x2 - xs > self.eps) & (y2 - ys > self.eps)
        candidates = inside & gt_mask[:, :, None]

        # 2. alignment metric, computed on the (batch, gt, anchor) candidate pairs only: a box covers a few dozen
        # anchor points out of thousands, so this is far cheaper than dense (B, M, A) arithmetic.
        pair_image, pair_gt, pair_anchor = candidates.nonzero(as_tuple=True)
        pair_overlap = iou(gt_boxes[pair_image, pair_gt], pred_boxes[pair_image, pair_anchor]).clamp(min=0)
        pair_labels = gt_labels[pair_image, pair_gt].long().clamp(0, num_classes - 1)
        pair_score = pred_scores[pair_image, pair_anchor, pair_labels]  # predicted probability of the gt's class
        pair_alignment = pair_score.pow(self.alpha) * pair_overlap.pow(self.beta)
        overlaps = torch.zeros(candidates.shape, dtype=pair_overlap.dtype, device=candidates.device)
        overlaps[pair_image, pair_gt, pair_anchor] = pair_overlap

        # 3. top-k candidates per gt. Non-candidates rank at -1, below every candidate (t >= 0), so a gt with
        # fewer than k candidates takes all of them and never an anchor outside its box.
        ranking = torch.full(candidates.shape, -1.0, dtype=pair_alignment.dtype, device=candidates.device)
        ranking[pair_image, pair_gt, pair_anchor] = pair_alignment
        top_index = ranking.topk(min(self.topk, num_anchors), dim=-1).indices  # (B, M, k)
        positives = torch.zeros_like(candidates).scatter_(-1, top_index, True) & candidates  # (B, M, A)

        # 4. each anchor keeps one gt: among the gts it is a positive of, the one with the highest IoU (a sole
        # positive gt wins by default: every other gt is masked to -1).
        foreground = positives.any(dim=1)  # (B, A)
        gt_index = overlaps.masked_fill(~positives, -1.0).argmax(dim=1) * foreground  # (B, A)
        labels = gt_labels.long().gather(1, gt_index) * foreground
        boxes = gt_boxes.gather(1, gt_index[..., None].expand(-1, -1, 4)) * foreground[..., None]

        # 5. soft targets, normalised per gt over its final positives: t_hat = t * max_IoU(gt) / max_t(gt).
        pos_image, pos_anchor = foreground.nonzero(as_tuple=True)
        pos_gt = gt_index[pos_image, pos_anchor]
        pos_alignment = ranking[pos_image, pos_gt, pos_anchor]
        pos_overlap = overlaps[pos_image, pos_gt, pos_anchor]
        gt_flat = pos_image * num_gts + pos_gt
        per_gt = torch.zeros(batch * num_gts, dtype=pos_alignment.dtype, device=pos_alignment.device)
        max_alignment = per_gt.scatter_reduce(0, gt_flat, pos_alignment, "amax", include_self=False)
        max_overlap = per_gt.scatter_reduce(0, gt_flat, pos_overlap, "amax", include_self=False)
        normalised = torch.zeros(batch, num_anchors, dtype=pred_scores.dtype, device=pred_scores.device)
        normalised[pos_image, pos_anchor] = (pos_alignment * max_overlap[gt_flat] / (max_alignment[gt_flat] + self.eps)
                                             ).to(pred_scores.dtype)
        scores = F.one_hot(labels.clamp(0, num_classes - 1), num_classes).to(pred_scores.dtype) * normalised[..., None]
        return Assignment(labels, boxes, scores, foreground, gt_index)

    @staticmethod
    def _empty(batch: int, num_anchors: int, num_classes: int, like: Tensor) -> Assignment:
        device = like.device
        return Assignment(
            labels=torch.zeros(batch, num_anchors, dtype=torch.long, device=device),
            boxes=torch.zeros(batch, num_anchors, 4, dtype=like.dtype, device=device),
            scores=torch.zeros(batch, num_anchors, num_classes, dtype=like.dtype, device=device),
            foreground=torch.zeros(batch, num_anchors, dtype=torch.bool, device=device),
            gt_index=torch.zeros(batch, num_anchors, dtype=torch.long, device=device),
        )
