"""Detection loss: class-weighted BCE (optionally focal) + CIoU + Distribution Focal Loss, on task-aligned targets.

    total = batch_size * (box_gain * L_box + cls_gain * L_cls + dfl_gain * L_dfl)

Every term is normalised by the sum of the soft classification targets (the assigner's normalised alignment
metrics), so an image with many well-aligned objects does not outweigh one with a few, and each positive's box
and DFL terms are weighted by its own target score: well-aligned anchors drive localisation most.

Class weights (`LossConfig.class_weights`, from `doctor weights`): a vector w of length num_classes multiplies
each class column of the elementwise BCE, L_cls = sum_{anchor, c} w_c * BCE(logit_{anchor,c}, target_{anchor,c}).
So a class's positives AND negatives are scaled together. We chose this over weighting positives only because
weighting positives only would push every logit of a rare class up (recall bought with false positives), while
scaling the whole column keeps the balance between a class's positives and negatives, i.e. the class's own
calibration, and raises only the share that class takes of the gradient. With the default weights (mean 1 over
train instances) the loss stays on the same scale as unweighted training.

Batch contract (trainer/data/dataset.py): targets (N, 6) float rows [image_index, class_id, cx, cy, w, h], box
normalised to the network input (letterboxed H, W). The anchor grid and the pixel scale come from the shapes of
the feature maps, so multi-scale and rectangular batches need nothing special.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dataset_doctor.errors import DoctorError
from trainer.model.assign import TaskAlignedAssigner
from trainer.model.boxes import anchor_grid, boxes_to_distances, complete_iou, cxcywh_to_xyxy, distances_to_boxes
from trainer.model.detector import STRIDES, Detector, dfl_expectation


@dataclass
class LossConfig:
    box_gain: float = 7.5  # weight of the CIoU box term in the total
    cls_gain: float = 0.5  # weight of the classification (BCE) term
    dfl_gain: float = 1.5  # weight of the Distribution Focal Loss term
    focal_gamma: float = 0.0  # focal modulation |target - p|^gamma on the BCE (0 = plain BCE; 1.5-2 is usual)
    class_weights: list[float] | None = None  # per-class multipliers of the BCE, length num_classes; None = all 1
    topk: int = 10  # assigner: positives per gt (TOOD)
    alpha: float = 0.5  # assigner: exponent of the class score in the alignment metric
    beta: float = 6.0  # assigner: exponent of the IoU in the alignment metric


def targets_to_padded(targets: Tensor, batch_size: int, image_height: int, image_width: int
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """(N, 6) batch targets -> per-image padded labels (B, M) long, boxes (B, M, 4) xyxy pixels, mask (B, M) bool.

    M is the largest box count of an image in the batch (0 when the batch has no box at all).
    """
    device = targets.device
    image_index = targets[:, 0].long()
    counts = torch.bincount(image_index, minlength=batch_size)
    max_count = int(counts.max()) if targets.shape[0] else 0
    labels = torch.zeros(batch_size, max_count, dtype=torch.long, device=device)
    boxes = torch.zeros(batch_size, max_count, 4, dtype=torch.float32, device=device)
    mask = torch.zeros(batch_size, max_count, dtype=torch.bool, device=device)
    if max_count:
        order = torch.argsort(image_index, stable=True)
        image_index = image_index[order]
        first_of_image = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(order), device=device) - first_of_image[image_index]
        scale = torch.tensor([image_width, image_height, image_width, image_height], device=device,
                             dtype=torch.float32)
        labels[image_index, slot] = targets[order, 1].long()
        boxes[image_index, slot] = cxcywh_to_xyxy(targets[order, 2:6].float()) * scale
        mask[image_index, slot] = True
    return labels, boxes, mask


def distribution_focal_loss(box_logits: Tensor, target_distances: Tensor) -> Tensor:
    """DFL (Li et al., "Generalized Focal Loss", NeurIPS 2020, eq. 6), mean over the 4 sides: shape (N,).

    box_logits (N, 4, reg_max); target_distances (N, 4) in bin units, within [0, reg_max - 1). A continuous
    target y between bins y_l = floor(y) and y_r = y_l + 1 puts its mass on exactly those two bins, each weighted
    by its closeness: -((y_r - y) log S_l + (y - y_l) log S_r). Minimised when the expectation equals y and the
    distribution is concentrated near it, which sharpens box edges without fixing them to bin centres.
    """
    reg_max = box_logits.shape[-1]
    left = target_distances.long()
    right = left + 1
    weight_left = right.to(target_distances.dtype) - target_distances
    weight_right = 1 - weight_left
    log_probs = box_logits.float().log_softmax(dim=-1)
    loss_left = -log_probs.gather(-1, left[..., None]).squeeze(-1)
    loss_right = -log_probs.gather(-1, right.clamp(max=reg_max - 1)[..., None]).squeeze(-1)
    return (loss_left * weight_left + loss_right * weight_right).mean(dim=-1)


class DetectionLoss(nn.Module):
    """`loss(model_outputs, targets) -> (total, items)`; items = detached (box, cls, dfl), each before its gain.

    `total` is the weighted sum times the batch size (the usual YOLO convention: the gradient then scales with
    the number of images, which the default learning rates assume); `items` are the per-image-normalised terms
    the run directory logs (results.csv: box_loss, cls_loss, dfl_loss before gains).
    """

    def __init__(self, num_classes: int, strides: Sequence[int] = STRIDES, reg_max: int = 16,
                 config: LossConfig | None = None):
        super().__init__()
        self.config = config = config or LossConfig()
        self.num_classes, self.strides, self.reg_max = num_classes, tuple(strides), reg_max
        weights = torch.ones(num_classes) if config.class_weights is None else torch.tensor(
            [float(w) for w in config.class_weights])
        if weights.shape != (num_classes,):
            raise DoctorError(f"class weights have {weights.numel()} entries for {num_classes} classes")
        if not torch.isfinite(weights).all() or (weights < 0).any():
            raise DoctorError("class weights must be finite and non-negative")
        if config.focal_gamma < 0:
            raise DoctorError("focal gamma must be >= 0")
        self.register_buffer("class_weights", weights, persistent=False)
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32), persistent=False)
        self.assigner = TaskAlignedAssigner(num_classes, config.topk, config.alpha, config.beta)
        # Distributed training (set by trainer/setup.py): normalise by the mean target mass over ranks instead of
        # this rank's own, so that, with the loop's world-size loss scaling, a DDP step equals a single-process
        # step on the whole batch. Every rank must then call the loss at every step (it is a collective).
        self.average_normalizer_across_ranks = False

    @classmethod
    def for_model(cls, model: Detector, config: LossConfig | None = None) -> DetectionLoss:
        return cls(model.num_classes, model.strides, model.reg_max, config)

    def classification_loss(self, cls_logits: Tensor, target_scores: Tensor) -> Tensor:
        """Elementwise class-weighted BCE (B, A, C), with the focal factor when focal_gamma > 0; not reduced."""
        bce = F.binary_cross_entropy_with_logits(cls_logits, target_scores, reduction="none")
        gamma = self.config.focal_gamma
        if gamma > 0:
            # Focal modulation (Lin et al., ICCV 2017): (1 - p_t)^gamma down-weights examples the model already
            # gets right. With the assigner's soft targets t the factor is |t - p|^gamma, the form of Quality
            # Focal Loss (Li et al. 2020); for hard targets (t = 0 or 1) it is exactly (1 - p_t)^gamma. No alpha
            # balance term: class weights do the balancing here.
            bce = bce * (target_scores - cls_logits.sigmoid()).abs().pow(gamma)
        return bce * self.class_weights.to(bce.device, bce.dtype)

    def forward(self, outputs: list[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
        # The loss runs in float32 even when the forward ran under autocast (AMP): the assigner's metric
        # (IoU^6), CIoU's arctangents and the normalising sums lose too much in half precision.
        with torch.autocast(device_type=outputs[0].device.type, enabled=False):
            return self._forward(outputs, targets)

    def _forward(self, outputs: list[Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
        batch = outputs[0].shape[0]
        channels = 4 * self.reg_max + self.num_classes
        flat = torch.cat([o.reshape(batch, channels, -1) for o in outputs], dim=2).transpose(1, 2)  # (B, A, ch)
        box_logits, cls_logits = flat.float().split((4 * self.reg_max, self.num_classes), dim=-1)

        shapes = [(o.shape[2], o.shape[3]) for o in outputs]
        points, strides = anchor_grid(shapes, self.strides, flat.device)  # grid units, (A, 2) and (A, 1)
        image_height, image_width = shapes[0][0] * self.strides[0], shapes[0][1] * self.strides[0]
        if len(targets) and not 0 <= int(targets[:, 1].min()) <= int(targets[:, 1].max()) < self.num_classes:
            raise ValueError(f"target class ids must be in [0, {self.num_classes}); the data pipeline should have "
                             "dropped these lines")
        gt_labels, gt_boxes, gt_mask = targets_to_padded(targets.to(flat.device), batch, image_height, image_width)

        pred_distances = dfl_expectation(box_logits, self.bins)  # (B, A, 4) in strides
        pred_boxes = distances_to_boxes(points, pred_distances)  # xyxy, grid units of each anchor's level
        assignment = self.assigner(cls_logits.detach().sigmoid(), pred_boxes.detach() * strides, points * strides,
                                   gt_labels, gt_boxes, gt_mask)
        # Normaliser: total soft-target mass in the batch (>= 1 so an empty batch does not divide by ~0).
        target_sum = assignment.scores.sum().clamp(min=1.0)
        if self.average_normalizer_across_ranks:  # the whole batch's mass, clamped as a whole, shared equally
            target_sum = assignment.scores.sum().detach().clone()
            torch.distributed.all_reduce(target_sum)
            target_sum = target_sum.clamp(min=1.0) / torch.distributed.get_world_size()

        cls_loss = self.classification_loss(cls_logits, assignment.scores).sum() / target_sum

        foreground = assignment.foreground
        if foreground.any():
            weight = assignment.scores.sum(dim=-1)[foreground]  # (P,) each positive's normalised alignment
            fg_strides = strides.expand(batch, -1, -1)[foreground]  # (P, 1)
            target_boxes = assignment.boxes[foreground] / fg_strides  # grid units, like pred_boxes
            box_loss = ((1.0 - complete_iou(pred_boxes[foreground], target_boxes)) * weight).sum() / target_sum
            fg_points = points.expand(batch, -1, -1)[foreground]
            target_distances = boxes_to_distances(fg_points, target_boxes).clamp(0, self.reg_max - 1 - 0.01)
            dfl = distribution_focal_loss(box_logits[foreground].reshape(-1, 4, self.reg_max), target_distances)
            dfl_loss = (dfl * weight).sum() / target_sum
        else:
            # No positive anywhere in the batch (no gt, or only gts too small to hold an anchor centre): only the
            # classification term (all background) has something to teach. Zero terms that stay attached to the
            # graph, so backward() works the same either way.
            box_loss = dfl_loss = box_logits.sum() * 0.0

        config = self.config
        total = (config.box_gain * box_loss + config.cls_gain * cls_loss + config.dfl_gain * dfl_loss) * batch
        return total, torch.stack((box_loss, cls_loss, dfl_loss)).detach()
