"""Task-aligned assigner on handcrafted cases: an 8 x 8 grid of anchor points at stride 8 (a 64 x 64 image)."""

from __future__ import annotations

import torch

from trainer.model.assign import TaskAlignedAssigner
from trainer.model.boxes import anchor_grid

NUM_CLASSES = 3
points_grid, strides_grid = anchor_grid([(8, 8)], [8])
ANCHORS = points_grid * strides_grid  # (64, 2) pixel centres 4, 12, ..., 60
NUM_ANCHORS = ANCHORS.shape[0]


def anchor_index(x: float, y: float) -> int:
    """Index of the anchor point at pixel centre (x, y)."""
    return int((y - 4) // 8 * 8 + (x - 4) // 8)


def assign(gt_boxes, gt_labels, pred_boxes=None, pred_scores=None, gt_mask=None, **kwargs):
    gt_boxes = torch.tensor(gt_boxes, dtype=torch.float32).reshape(1, -1, 4)
    gt_labels = torch.tensor(gt_labels, dtype=torch.long).reshape(1, -1)
    if pred_boxes is None:  # every anchor predicts the first gt exactly
        pred_boxes = gt_boxes[:, :1].expand(1, NUM_ANCHORS, 4).clone()
    if pred_scores is None:
        pred_scores = torch.full((1, NUM_ANCHORS, NUM_CLASSES), 0.5)
    if gt_mask is None:
        gt_mask = torch.ones(gt_labels.shape, dtype=torch.bool)
    return TaskAlignedAssigner(NUM_CLASSES, **kwargs)(pred_scores, pred_boxes, ANCHORS, gt_labels, gt_boxes, gt_mask)


def positives(result, image: int = 0) -> set[int]:
    return set(torch.nonzero(result.foreground[image]).flatten().tolist())


def test_gt_centred_on_known_anchors_gets_exactly_those():
    # centres 20 and 28 lie strictly inside [16, 32]; 12 and 36 do not
    result = assign([[16, 16, 32, 32]], [1])
    expected = {anchor_index(x, y) for x in (20, 28) for y in (20, 28)}
    assert positives(result) == expected
    assert (result.labels[0, list(expected)] == 1).all()
    assert torch.equal(result.boxes[0, anchor_index(20, 20)], torch.tensor([16.0, 16.0, 32.0, 32.0]))
    # perfect boxes, equal scores: normalised target = 1 * max IoU (1) / max metric -> 1 on class 1 only
    assert torch.allclose(result.scores[0, list(expected)], torch.tensor([0.0, 1.0, 0.0]).expand(4, 3))
    background = [i for i in range(NUM_ANCHORS) if i not in expected]
    assert result.scores[0, background].eq(0).all()


def test_anchor_centre_on_the_gt_edge_is_not_a_candidate():
    result = assign([[20, 20, 36, 36]], [0])  # centres at x = 20 and y = 20 sit on the edge
    assert positives(result) == {anchor_index(28, 28)}


def test_topk_keeps_the_best_aligned_candidates():
    gt = [0.0, 0.0, 64.0, 64.0]  # every anchor is a candidate
    pred_boxes = torch.zeros(1, NUM_ANCHORS, 4)
    # predicted box (0, 0, 64, 64 q) has IoU q with the gt: give each anchor its own q, best for the highest index
    quality = torch.linspace(0.2, 0.95, NUM_ANCHORS)
    pred_boxes[0, :, 2] = 64.0
    pred_boxes[0, :, 3] = 64.0 * quality
    result = assign([gt], [2], pred_boxes=pred_boxes)
    assert positives(result) == set(range(NUM_ANCHORS - 10, NUM_ANCHORS))  # the default top-k: 10
    result = assign([gt], [2], pred_boxes=pred_boxes, topk=3)
    assert positives(result) == {61, 62, 63}


def test_alignment_metric_combines_score_and_iou():
    """t = s^0.5 * u^6: a good box with a poor score can lose to a decent box with a decent score."""
    gt = [0.0, 0.0, 64.0, 64.0]
    pred_boxes = torch.tensor(gt).expand(1, NUM_ANCHORS, 4).clone()
    pred_boxes[0, :, 3] = 64.0 * 0.5  # IoU 0.5 everywhere ...
    pred_scores = torch.full((1, NUM_ANCHORS, NUM_CLASSES), 0.05)
    pred_boxes[0, 0, 3] = 64.0  # ... anchor 0: perfect box (IoU 1), class score 0.1 -> t = 0.316
    pred_scores[0, 0, 1] = 0.1
    pred_boxes[0, 1, 3] = 64.0 * 0.9  # anchor 1: IoU 0.9, class score 0.9 -> t = 0.949 * 0.531 = 0.504
    pred_scores[0, 1, 1] = 0.9
    result = assign([gt], [1], pred_boxes=pred_boxes, pred_scores=pred_scores, topk=1)
    assert positives(result) == {1}
    # the single positive holds the gt's max IoU among its positives (0.9) as its soft target
    assert abs(result.scores[0, 1, 1].item() - 0.9) < 1e-5


def test_soft_targets_normalised_per_gt():
    gt = [0.0, 0.0, 64.0, 64.0]
    pred_boxes = torch.tensor(gt).expand(1, NUM_ANCHORS, 4).clone()
    pred_boxes[0, :, 3] = 64.0 * 0.3
    pred_boxes[0, 5, 3] = 64.0 * 0.8  # best anchor: IoU 0.8
    pred_boxes[0, 9, 3] = 64.0 * 0.6  # second: IoU 0.6
    result = assign([gt], [0], pred_boxes=pred_boxes, topk=2)
    assert positives(result) == {5, 9}
    best, second = result.scores[0, 5, 0].item(), result.scores[0, 9, 0].item()
    assert abs(best - 0.8) < 1e-5  # the best-aligned anchor gets the gt's max IoU
    assert abs(second / best - (0.6 / 0.8) ** 6) < 1e-5  # same score: metric ratio = IoU ratio ^ beta
    assert result.scores[0, [5, 9], 1:].eq(0).all()


def test_overlapping_gts_resolved_by_iou():
    gt_a, gt_b = [0.0, 0.0, 32.0, 32.0], [8.0, 8.0, 40.0, 40.0]  # anchors with centres 12, 20, 28 lie in both
    pred_boxes = torch.tensor(gt_a).expand(1, NUM_ANCHORS, 4).clone()
    toward_b = [anchor_index(20, 20), anchor_index(28, 12)]
    pred_boxes[0, toward_b] = torch.tensor(gt_b)
    result = assign([gt_a, gt_b], [0, 2], pred_boxes=pred_boxes, topk=NUM_ANCHORS)  # all candidates positive
    in_a = {anchor_index(x, y) for x in (4, 12, 20, 28) for y in (4, 12, 20, 28)}
    in_b = {anchor_index(x, y) for x in (12, 20, 28, 36) for y in (12, 20, 28, 36)}
    assert positives(result) == in_a | in_b
    for index in in_a & in_b:
        expected_gt = 1 if index in toward_b else 0
        assert result.gt_index[0, index].item() == expected_gt, index
        assert result.labels[0, index].item() == (2 if expected_gt else 0)
    for index in in_b - in_a:
        assert result.gt_index[0, index].item() == 1
    # each anchor has exactly one non-zero class target
    assert (result.scores[0, sorted(in_a | in_b)] > 0).sum(dim=-1).eq(1).all()


def test_empty_and_padded_gts_give_all_background():
    pred_scores = torch.rand(2, NUM_ANCHORS, NUM_CLASSES)
    pred_boxes = torch.rand(2, NUM_ANCHORS, 4) * 32 + torch.tensor([0.0, 0.0, 32.0, 32.0])
    assigner = TaskAlignedAssigner(NUM_CLASSES)
    empty = assigner(pred_scores, pred_boxes, ANCHORS, torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, 4),
                     torch.zeros(2, 0, dtype=torch.bool))
    masked = assigner(pred_scores, pred_boxes, ANCHORS, torch.zeros(2, 1, dtype=torch.long),
                      torch.tensor([[[0.0, 0.0, 64.0, 64.0]], [[0.0, 0.0, 64.0, 64.0]]]),
                      torch.zeros(2, 1, dtype=torch.bool))
    for result in (empty, masked):
        assert not result.foreground.any()
        assert result.scores.shape == (2, NUM_ANCHORS, NUM_CLASSES) and result.scores.eq(0).all()
        assert result.boxes.shape == (2, NUM_ANCHORS, 4) and result.boxes.eq(0).all()


def test_batch_images_are_independent_and_padding_ignored():
    gt_boxes = torch.tensor([[[16.0, 16.0, 32.0, 32.0], [40.0, 40.0, 56.0, 56.0]],
                             [[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 64.0, 64.0]]])  # image 1: second gt is padding
    gt_labels = torch.tensor([[0, 1], [2, 0]])
    gt_mask = torch.tensor([[True, True], [True, False]])
    pred_boxes = gt_boxes[:, :1].expand(2, NUM_ANCHORS, 4).clone()
    pred_scores = torch.full((2, NUM_ANCHORS, NUM_CLASSES), 0.5)
    result = TaskAlignedAssigner(NUM_CLASSES)(pred_scores, pred_boxes, ANCHORS, gt_labels, gt_boxes, gt_mask)
    first = {anchor_index(x, y) for x in (20, 28) for y in (20, 28)}
    second = {anchor_index(x, y) for x in (44, 52) for y in (44, 52)}
    assert positives(result, 0) == first | second
    assert positives(result, 1) == {anchor_index(x, y) for x in (4, 12) for y in (4, 12)}
    assert result.labels[1, list(positives(result, 1))].eq(2).all()


def test_gt_without_an_anchor_centre_inside_gets_no_positive():
    """A box smaller than the stride that falls between anchor centres is not learned (a known limit)."""
    result = assign([[21, 21, 27, 27]], [0])
    assert not result.foreground.any()
