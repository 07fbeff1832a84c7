"""Box geometry: conversions, anchor grid, IoU and CIoU against hand-computed values and their symmetries."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.model.boxes import (
    anchor_grid,
    boxes_to_distances,
    complete_iou,
    cxcywh_to_xyxy,
    distances_to_boxes,
    iou,
    pairwise_iou,
    xyxy_to_cxcywh,
)


def test_conversions_round_trip_and_values():
    xyxy = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert torch.equal(xyxy_to_cxcywh(xyxy), torch.tensor([[20.0, 40.0, 20.0, 40.0]]))
    assert torch.equal(cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy)), xyxy)


def test_distance_encoding_round_trip():
    points = torch.tensor([[4.5, 2.5], [0.5, 0.5]])
    boxes = torch.tensor([[1.0, 1.0, 9.0, 3.0], [0.0, 0.0, 2.0, 5.0]])
    distances = boxes_to_distances(points, boxes)
    assert torch.equal(distances[0], torch.tensor([3.5, 1.5, 4.5, 0.5]))
    assert torch.equal(distances_to_boxes(points, distances), boxes)


def test_anchor_grid_levels_order_and_strides():
    points, strides = anchor_grid([(2, 3), (1, 2)], [8, 16])
    assert points.shape == (8, 2) and strides.shape == (8, 1)
    # level 0 row-major: (x, y) = (0.5, 0.5), (1.5, 0.5), (2.5, 0.5), (0.5, 1.5), ...
    assert torch.equal(points[:4], torch.tensor([[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [0.5, 1.5]]))
    assert torch.equal(points[6:], torch.tensor([[0.5, 0.5], [1.5, 0.5]]))
    assert strides[:6].eq(8).all() and strides[6:].eq(16).all()


def test_iou_hand_computed():
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    assert iou(a, torch.tensor([1.0, 1.0, 3.0, 3.0])).item() == pytest.approx(1 / 7, abs=1e-6)  # 1 / (4 + 4 - 1)
    assert iou(a, a).item() == pytest.approx(1.0, abs=1e-6)
    assert iou(a, torch.tensor([2.0, 0.0, 4.0, 2.0])).item() == 0.0  # touching edges
    assert iou(a, torch.tensor([5.0, 5.0, 6.0, 6.0])).item() == 0.0
    assert iou(a, torch.tensor([0.5, 0.5, 1.5, 1.5])).item() == pytest.approx(1 / 4, abs=1e-6)  # contained


def test_pairwise_iou_matrix():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 4.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [10.0, 10.0, 11.0, 11.0]])
    matrix = pairwise_iou(a, b)
    assert matrix.shape == (2, 3)
    expected = torch.tensor([[1 / 7, 1.0, 0.0], [2 / 10, 0.5, 0.0]])  # (0,0,4,2) vs (1,1,3,3): 2 / (8 + 4 - 2)
    assert torch.allclose(matrix, expected, atol=1e-6)
    assert torch.allclose(pairwise_iou(b, a), matrix.T)


def test_ciou_same_aspect_is_iou_minus_distance_term():
    a, b = torch.tensor([0.0, 0.0, 2.0, 2.0]), torch.tensor([1.0, 1.0, 3.0, 3.0])
    # IoU 1/7; enclosing box (0,0)-(3,3): c^2 = 18; centres (1,1) and (2,2): rho^2 = 2; equal aspect: v = 0
    assert complete_iou(a, b).item() == pytest.approx(1 / 7 - 2 / 18, abs=1e-6)


def test_ciou_aspect_term_hand_computed():
    a, b = torch.tensor([0.0, 0.0, 4.0, 2.0]), torch.tensor([0.0, 0.0, 2.0, 2.0])
    overlap = 0.5  # 4 / (8 + 4 - 4)
    distance = 1.0 / 20.0  # centres (2,1), (1,1): rho^2 = 1; enclosing (0,0)-(4,2): c^2 = 16 + 4
    v = 4 / math.pi**2 * (math.atan(2.0) - math.atan(1.0)) ** 2
    alpha = v / (1 - overlap + v)
    assert complete_iou(a, b).item() == pytest.approx(overlap - distance - alpha * v, abs=1e-6)


def test_ciou_identical_is_one_and_far_apart_is_negative():
    a = torch.tensor([3.0, 4.0, 9.0, 7.0])
    assert complete_iou(a, a).item() == pytest.approx(1.0, abs=1e-6)
    far = complete_iou(a, torch.tensor([100.0, 100.0, 106.0, 103.0])).item()
    assert -1.0 < far < 0.0  # no overlap: only the (negative) distance term remains, close to -1


def test_ciou_has_gradient_without_overlap():
    """The distance term is what makes CIoU a usable loss for disjoint boxes (IoU is flat at 0 there)."""
    pred = torch.tensor([10.0, 10.0, 12.0, 12.0], requires_grad=True)
    target = torch.tensor([0.0, 0.0, 2.0, 2.0])
    (1 - complete_iou(pred, target)).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # moving the box toward the target lowers the loss: the gradient points away from the target
    assert pred.grad[0] > 0 and pred.grad[1] > 0


boxes_strategy = st.tuples(
    st.floats(0, 100), st.floats(0, 100), st.floats(0.5, 50), st.floats(0.5, 50)
).map(lambda t: torch.tensor([t[0], t[1], t[0] + t[2], t[1] + t[3]], dtype=torch.float64))


@settings(max_examples=60, deadline=None)
@given(boxes_strategy, boxes_strategy)
def test_iou_and_ciou_symmetric_and_bounded(a, b):
    forward, backward = iou(a, b), iou(b, a)
    assert torch.allclose(forward, backward)
    assert 0.0 <= forward.item() <= 1.0 + 1e-9
    complete = complete_iou(a, b)
    assert torch.allclose(complete, complete_iou(b, a))
    # each penalty is >= 0, rho^2 / c^2 < 1 and alpha * v <= 1/2, hence the bounds
    assert -1.5 < complete.item() <= forward.item() + 1e-9


def test_broadcasting_over_leading_dimensions():
    gts = torch.rand(2, 3, 1, 4).sort(dim=-1).values  # sorted so x2 > x1 and y2 > y1 hold loosely
    gts = torch.cat((gts[..., :2], gts[..., :2] + 0.5), dim=-1)
    preds = torch.cat((torch.rand(2, 1, 5, 2), torch.rand(2, 1, 5, 2) + 1.0), dim=-1)
    assert iou(gts, preds).shape == (2, 3, 5)
    assert complete_iou(gts, preds).shape == (2, 3, 5)
