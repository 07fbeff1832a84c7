"""Task-aligned label assignment (Feng et al., "TOOD: Task-aligned One-stage Object Detection", ICCV 2021).

Which anchor points learn which ground-truth box, decided from the network's own current predictions:
  1. candidates: anchor points whose centre lies inside the gt box;
  2. alignment metric t = s^alpha * u^beta per (gt, candidate), s = predicted probability of the gt's class,
     u = IoU of the predicted box with the gt. High t needs both a good score and a good box, so training
     pulls classification and localisation towards the same anchors (the paper's "task alignment");
  3. the top-k candidates by t become positives of that gt;
  4. an anchor that is a positive of several gts keeps the one its predicted box overlaps most (highest IoU);
  5. soft targets: the classification target of a positive is t normalised per gt so that the gt's best
     anchor gets that gt's largest IoU among its positives (paper eq. 10: t_hat = t * u_max / t_max), and
     every other class gets 0. Negatives get all zeros.

All tensors are batched with gts padded to the largest count in the batch (a mask marks the real ones); the
work is a few (B, M, A) tensor ops, no Python loop over anchors or boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from trainer.boxes import iou


@dataclass
class Assignment:
    labels: Tensor  # (B, A) long: class of the assigned gt (0 where background; use `foreground`)
    boxes: Tensor  # (B, A, 4) xyxy of the assigned gt, same units as the gt boxes given (0 where background)
    scores: Tensor  # (B, A, C) soft classification targets: normalised alignment on the gt's class, else 0
    foreground: Tensor  # (B, A) bool: the anchor point is a positive of some gt
    gt_index: Tensor  # (B, A) long: index of the assigned gt within its image (0 where background)


class TaskAlignedAssigner:
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

        # 2. alignment metric on candidates (zero elsewhere).
        overlaps = iou(gt_boxes[:, :, None, :], pred_boxes[:, None, :, :]).clamp(min=0) * candidates  # (B, M, A)
        labels_index = gt_labels.long().clamp(0, num_classes - 1)[:, :, None].expand(-1, -1, num_anchors)
        class_scores = pred_scores.transpose(1, 2).gather(1, labels_index)  # (B, M, A): score of the gt's class
        alignment = class_scores.pow(self.alpha) * overlaps.pow(self.beta) * candidates

        # 3. top-k candidates per gt. Non-candidates rank below every candidate (-1 < 0 <= t), so a gt with
        # fewer than k candidates takes all of them and never an anchor outside its box.
        k = min(self.topk, num_anchors)
        top_index = alignment.masked_fill(~candidates, -1.0).topk(k, dim=-1).indices  # (B, M, k)
        in_topk = torch.zeros_like(candidates).scatter_(-1, top_index, True)
        positives = in_topk & candidates  # (B, M, A)

        # 4. an anchor positive for several gts keeps the gt with the highest IoU among them.
        contested = positives.sum(dim=1, keepdim=True) > 1  # (B, 1, A)
        best_gt = overlaps.masked_fill(~positives, -1.0).argmax(dim=1, keepdim=True)  # (B, 1, A)
        best_only = torch.zeros_like(positives).scatter_(1, best_gt, True)
        positives = torch.where(contested, best_only & positives, positives)

        foreground = positives.any(dim=1)  # (B, A)
        gt_index = positives.to(torch.uint8).argmax(dim=1)  # (B, A); 0 for background, masked by foreground
        labels = gt_labels.long().gather(1, gt_index)
        boxes = gt_boxes.gather(1, gt_index[..., None].expand(-1, -1, 4))

        # 5. soft targets, normalised per gt: t_hat = t * max_IoU(gt) / max_t(gt), over that gt's positives.
        alignment = alignment * positives
        max_alignment = alignment.amax(dim=-1, keepdim=True)  # (B, M, 1)
        max_overlap = (overlaps * positives).amax(dim=-1, keepdim=True)
        normalised = (alignment * max_overlap / (max_alignment + self.eps)).amax(dim=1)  # (B, A)
        scores = F.one_hot(labels.clamp(0, num_classes - 1), num_classes).to(pred_scores.dtype)
        scores = scores * (normalised * foreground)[..., None]
        labels = labels * foreground
        boxes = boxes * foreground[..., None]
        return Assignment(labels, boxes, scores, foreground, gt_index * foreground)

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
